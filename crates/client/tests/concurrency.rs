//! Many requests of one user to one provider at once, as a busy gateway
//! sends them: every voucher is accepted whatever order the requests arrive
//! in, every receipt passes its checks, and the user's tally ends equal to
//! what the real broker says it is owed.

mod common;

use bytes::Bytes;
use common::{Market, PaidChat, chat_body, engine};
use zg_client::AckPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_to_one_provider_are_all_paid_and_tallied() {
    let e = engine();
    // The market (anvil, temp dirs) lives as long as the test.
    let mut market = Market::start().await;
    let PaidChat {
        provider,
        payer,
        service,
        ..
    } = market.one_paid_chat(AckPolicy::Never).await;
    let body = Bytes::from(serde_json::to_vec(&chat_body(&e.model, "Say hi.", 4)).unwrap());
    // Two waves: the second starts a new epoch at the first's tally.
    for _ in 0..2 {
        let sends = (0..8).map(|_| payer.send(&service, "/v1/chat/completions", body.clone()));
        for answer in futures::future::join_all(sends).await {
            let answer = answer.expect("the broker accepts every voucher");
            assert_eq!(answer.status, 200);
            answer.receipt.expect("every receipt passes its checks");
        }
    }
    let tally = payer.book().tab(provider.address()).await.unwrap();
    assert_eq!(
        payer.book().receipts(None, false, 100).await.unwrap().len(),
        16
    );

    let signed = zg_client::recovery::statement(&payer, &service.url, provider.address())
        .await
        .unwrap();
    let statement = signed
        .verify(service.signer)
        .expect("signed by the service's signer");
    assert!(!tally.owed.is_zero());
    assert_eq!(
        tally.owed, statement.owed,
        "the user's tally is what the broker is owed"
    );
    assert!(
        tally.authorized < tally.owed,
        "the second wave signed the first's tally"
    );
}
