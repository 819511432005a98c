//! Two brokers on one PostgreSQL database, many parallel requests of one
//! user whose escrow covers only some of their worst cases: together they
//! never admit more than the escrow.

mod common;

use common::*;
use zg_core::U256;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_brokers_on_postgres_never_overspend() {
    let env = Env::start().await;
    let upstream = scripted_upstream().await;
    let (db, name) = pg_url().await;
    let up = format!("http://{upstream}/v1");
    let mut a_config = env.config(&db, &up, "scripted", Default::default(), "1");
    a_config.replica = "a".into();
    let mut b_config = a_config.clone();
    b_config.replica = "b".into();
    let a = env.broker(a_config).await;
    let b = env.broker(b_config).await;

    // Worst case per request: (body + 256) x 1e9 + 64 x 2e9 neuron, about
    // 4.8e11; the escrow covers 5 of them in flight.
    // The upstream holds each answer 2 s, so all 40 are in flight together.
    let body = chat_body("chat", "slow", 64);
    let len = serde_json::to_vec(&body).unwrap().len() as u64;
    let worst = U256::from((len + 256) * INPUT_PRICE + 64 * OUTPUT_PRICE);
    let escrow = worst * U256::from(5u64);
    let (key, _) = env.user(2, escrow).await;

    // Every voucher at cumulative 0: credit is not what limits here.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let base = if i % 2 == 0 { a.url() } else { b.url() };
        let payer = Payer::new(key.clone(), &env, &base);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let bytes = serde_json::to_vec(&body).unwrap();
            let (h, _) = payer.headers(&bytes, U256::ZERO);
            payer.send_raw("/v1/chat/completions", bytes, &h).await
        }));
    }
    let mut ok = 0u64;
    let mut refused = 0u64;
    let mut fees = U256::ZERO;
    for t in tasks {
        let answer = t.await.unwrap();
        match answer.status {
            200 => {
                ok += 1;
                fees += answer.receipt.unwrap().receipt.fee;
            }
            402 => refused += 1,
            other => panic!("unexpected {other}: {:?}", answer.json),
        }
    }
    assert_eq!(
        (ok, refused),
        (5, 35),
        "exactly the escrow's worth of requests in flight"
    );
    let account = a.broker().tab(key.address()).await.unwrap().unwrap();
    assert_eq!(account.reserved, U256::ZERO);
    assert_eq!(account.owed, fees);
    assert!(
        account.owed <= escrow,
        "owed {} > escrow {escrow}",
        account.owed
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    drop_pg(&name).await;
}
