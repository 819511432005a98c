//! The operator's commands beside a live broker: `status` and `settle`
//! (`Broker::open`, as `zg-serving provider status|settle` do) run against
//! the same database while a stream is in flight, and settle concurrently
//! with the live broker's own loop. The stream's charge and receipt land,
//! and every voucher is paid once: none lost, none submitted twice.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use std::{net::SocketAddr, time::Duration};

use axum::{Json, Router, body::Body, response::IntoResponse, routing::post};
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use zg_chain::bindings::ZgServing::ZgServingEvents;
use zg_core::U256;
use zg_provider::Broker;

/// Content chunks of the slow stream, one every `CHUNK_GAP`.
const CHUNKS: usize = 20;
const CHUNK_GAP: Duration = Duration::from_millis(100);

/// A model server whose streams take two seconds (plain answers: at once).
async fn slow_stream_upstream() -> SocketAddr {
    async fn chat(body: Bytes) -> axum::response::Response {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !v.get("stream").and_then(Value::as_bool).unwrap_or(false) {
            return Json(json!({
                "id": "c1", "object": "chat.completion", "created": 1, "model": "slow",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": "hello" }, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
            }))
            .into_response();
        }
        let usage = v
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut events: Vec<String> = (0..CHUNKS)
            .map(|i| json!({ "id": "c1", "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": { "content": format!("t{i}") } }] }).to_string())
            .collect();
        if usage {
            events.push(json!({ "id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": { "prompt_tokens": 10, "completion_tokens": CHUNKS, "total_tokens": 10 + CHUNKS } }).to_string());
        }
        events.push("[DONE]".into());
        let stream = futures::stream::iter(events).then(|e| async move {
            tokio::time::sleep(CHUNK_GAP).await;
            Ok::<_, std::io::Error>(Bytes::from(format!("data: {e}\n\n")))
        });
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap()
    }
    serve(Router::new().route("/v1/chat/completions", post(chat))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_settle_beside_a_live_stream_pay_every_voucher_once_on_sqlite() {
    let (db, _db_dir) = sqlite_url();
    beside_a_live_stream(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_settle_beside_a_live_stream_pay_every_voucher_once_on_postgres() {
    let (db, name) = pg_url().await;
    beside_a_live_stream(&db).await;
    drop_pg(&name).await;
}

/// A live broker on `db` serves a stream while two operators read and
/// settle the same books, then all three settle the stream's voucher at once.
async fn beside_a_live_stream(db: &str) {
    let env = Env::start().await;
    let upstream = format!("http://{}/v1", slow_stream_upstream().await);
    // The live loop settles whatever is unsettled on every tick (0.5 s),
    // so it races the operator's settles below.
    let mut plan = env.plan(db, &upstream, "slow", Default::default(), "1");
    plan.settlement.threshold = "0.000000000000000001".into();
    let config = plan.config().unwrap();
    let live = env.broker(config.clone()).await;
    let from_block = env.deployer.block_number().await.unwrap();
    let earnings_before = env.deployer.balance_of(env.provider()).await.unwrap();
    let (key, _) = env.user(2, U256::from(10u64).pow(U256::from(16u64))).await;
    let user = key.address();
    let mut payer = Payer::new(key.clone(), &env, &live.url());

    // Answers before the stream, so there are vouchers to settle meanwhile.
    let mut total = U256::ZERO;
    for _ in 0..3 {
        let a = payer
            .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
            .await;
        assert_eq!(a.status, 200, "{}", a.json);
        let receipt = a.receipt.unwrap().receipt;
        total += receipt.fee;
        payer.owed = receipt.owed;
    }

    let mut streamer = Payer::new(key.clone(), &env, &live.url());
    streamer.owed = payer.owed;
    let mut stream_body = chat_body("chat", "count slowly", 32);
    stream_body["stream"] = json!(true);
    let stream = tokio::spawn(async move {
        let answer = streamer.send("/v1/chat/completions", &stream_body).await;
        (streamer, answer)
    });

    // While the stream runs: the operator opens the same store twice and
    // reads and settles, concurrently, as often as the stream lasts.
    let operators = [
        Broker::open(config.clone()).await.unwrap(),
        Broker::open(config.clone()).await.unwrap(),
    ];
    let mut seen_in_flight = false;
    let mut rounds = 0;
    while !stream.is_finished() {
        let (status, settled_a, settled_b) = tokio::join!(
            operators[0].status(),
            operators[0].settler().settle_now(),
            operators[1].settler().settle_now(),
        );
        let status = status.unwrap();
        settled_a.unwrap();
        settled_b.unwrap();
        assert!(status.contains(&user.to_string()), "{status}");
        let tab = live.broker().tab(user).await.unwrap().unwrap();
        seen_in_flight |= !tab.reserved.is_zero();
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        seen_in_flight && rounds >= 3,
        "the operator's commands must run while the stream is in flight ({rounds} rounds)"
    );

    // The stream was untouched: whole, charged, its receipt served.
    let (streamer, answer) = stream.await.unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(
        answer.body.ends_with(b"data: [DONE]\n\n"),
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let receipt = streamer
        .receipt(answer.request_id.as_deref().expect("a request id"))
        .await
        .receipt;
    assert_eq!(
        (receipt.input_tokens, receipt.output_tokens),
        (U256::from(10u64), U256::from(CHUNKS))
    );
    total += receipt.fee;
    assert_eq!(
        receipt.owed, total,
        "the receipt's owed is every fee so far"
    );
    let tab = live.broker().tab(user).await.unwrap().unwrap();
    assert_eq!((tab.owed, tab.reserved), (total, U256::ZERO));

    // The stream's fee is vouched for by an acknowledgement; then the
    // operator's two settles and the live loop race to submit it.
    assert_eq!(payer.acknowledge(&receipt).await, 200);
    let (a, b) = tokio::join!(
        operators[0].settler().settle_now(),
        operators[1].settler().settle_now(),
    );
    a.unwrap();
    b.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let account = env.deployer.account(user, env.provider()).await.unwrap();
        if account.settled == total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "settled {} on chain, the receipts add up to {total}",
            account.settled
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more ticks of the live loop: nothing more may go out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let account = env.deployer.account(user, env.provider()).await.unwrap();
    assert_eq!(
        account.settled, total,
        "paid exactly the sum of the receipts"
    );
    let earnings = env.deployer.balance_of(env.provider()).await.unwrap() - earnings_before;
    assert_eq!(earnings, total, "the provider earned exactly the receipts");

    let mut paid = Vec::new();
    let mut rejected = Vec::new();
    for event in env.deployer.events(from_block).await.unwrap() {
        match event.event {
            ZgServingEvents::VoucherSettled(e) if e.user == user => paid.push(e.settled),
            ZgServingEvents::VoucherRejected(e) if e.user == user => rejected.push(e.reason),
            _ => {}
        }
    }
    let mut distinct = paid.clone();
    distinct.dedup();
    assert_eq!(distinct, paid, "each cumulative settled once: {paid:?}");
    assert!(
        rejected.is_empty(),
        "no voucher submitted twice: the contract rejected {rejected:?} (settled {paid:?})"
    );
    let local = live.broker().tab(user).await.unwrap().unwrap();
    assert_eq!(
        local.settled, total,
        "the books know what the chain settled"
    );
    live.shutdown().await.unwrap();
}
