//! The voucher book is rebuilt after its SQLite file is lost, from the real
//! broker's signed account statement and the chain, and paying goes on
//! where it stopped (no stale voucher, owed in step).

mod common;

use bytes::Bytes;
use common::{Market, PaidChat, chat_body, engine};
use zg_client::{AckPolicy, Book, Payer, recover};
use zg_core::U256;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn books_are_recovered_after_deleting_the_local_database() {
    let e = engine();
    let mut market = Market::start().await;
    let PaidChat {
        provider,
        key,
        chain,
        payer,
        book: path,
        service,
    } = market.one_paid_chat(AckPolicy::Immediate).await;
    let body = Bytes::from(serde_json::to_vec(&chat_body(&e.model, "Say hi.", 6)).unwrap());
    for _ in 0..3 {
        payer
            .send(&service, "/v1/chat/completions", body.clone())
            .await
            .unwrap()
            .receipt
            .unwrap();
    }
    let before = payer.book().tab(provider.address()).await.unwrap();
    assert!(
        !before.owed.is_zero() && before.authorized == before.owed,
        "acknowledged: {before:?}"
    );
    drop(payer);

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let book = Book::open(&path, key.address()).await.unwrap();
    assert_eq!(
        book.tab(provider.address()).await.unwrap().owed,
        U256::ZERO,
        "the book is gone"
    );
    let payer = Payer::new(key.clone(), chain.domain(), book, AckPolicy::Immediate);
    let recovered = recover(&payer, &chain).await.unwrap();
    assert_eq!(recovered.len(), 1);
    let after = payer.book().tab(provider.address()).await.unwrap();
    assert_eq!(
        (after.authorized, after.owed),
        (before.authorized, before.owed)
    );

    // Paying goes on: the broker accepts the next voucher and its receipt checks out.
    let paid = payer
        .send(&service, "/v1/chat/completions", body)
        .await
        .unwrap()
        .receipt
        .unwrap();
    assert_eq!(paid.owed, before.owed + paid.fee);
}
