//! Serving and settling through a real broker, chain and SQLite file, with
//! the scripted upstream where the test injects faults: streams with and
//! without usage asked for, an upstream that fails (free) or dies
//! mid-stream (charged for what was delivered), settlement paying exactly
//! the sum of the receipts, and a refund requested while requests run.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use zg_core::{U256, keccak256};

fn stream_body(text: &str, usage: bool) -> serde_json::Value {
    let mut body = json!({ "model": "chat", "messages": [{ "role": "user", "content": text }], "max_tokens": 16, "stream": true });
    if usage {
        body["stream_options"] = json!({ "include_usage": true });
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_metered_and_faults_are_free_or_partial() {
    let env = Env::start().await;
    let (broker, _dir) = env.scripted_broker("1").await;
    let (key, _) = env.user(2, U256::from(10u64).pow(U256::from(16u64))).await;
    let mut payer = Payer::new(key.clone(), &env, &broker.url());

    // A stream without include_usage: the usage chunk is stripped, the fee still comes from it.
    let a = payer
        .send("/v1/chat/completions", &stream_body("hi", false))
        .await;
    assert_eq!(a.status, 200);
    let text = String::from_utf8(a.body.to_vec()).unwrap();
    assert!(!text.contains("\"usage\""), "usage chunk stripped: {text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let r = payer.receipt(a.request_id.as_deref().unwrap()).await;
    check_receipt(&env, &r, a.digest, &a.body).await;
    assert_eq!(
        (r.receipt.input_tokens, r.receipt.output_tokens),
        (U256::from(10u64), U256::from(5u64))
    );
    payer.owed = r.receipt.owed;

    // Asked for: the usage chunk stays.
    let b = payer
        .send("/v1/chat/completions", &stream_body("hi", true))
        .await;
    let text = String::from_utf8(b.body.to_vec()).unwrap();
    assert!(text.contains("\"usage\""), "{text}");
    let r = payer.receipt(b.request_id.as_deref().unwrap()).await;
    assert_eq!(r.receipt.response_digest, keccak256(&b.body));
    payer.owed = r.receipt.owed;

    // Upstream fails: 502, free, nothing reserved afterwards.
    let before = broker.broker().tab(key.address()).await.unwrap().unwrap();
    let f = payer
        .send("/v1/chat/completions", &chat_body("chat", "fail", 8))
        .await;
    assert_eq!((f.status, code(&f)), (502, "upstream_failed"));
    let after = broker.broker().tab(key.address()).await.unwrap().unwrap();
    assert_eq!(after.owed, before.owed);
    assert_eq!(after.reserved, U256::ZERO);

    // Upstream dies after 3 chunks: charged 3 output tokens, nothing for input.
    let d = payer
        .send("/v1/chat/completions", &stream_body("die 3", false))
        .await;
    assert_eq!(d.status, 200);
    let r = payer.receipt(d.request_id.as_deref().unwrap()).await;
    assert_eq!(
        (r.receipt.input_tokens, r.receipt.output_tokens),
        (U256::ZERO, U256::from(3u64))
    );
    assert_eq!(r.receipt.fee, U256::from(3u64 * OUTPUT_PRICE));
    assert_eq!(r.receipt.owed, payer.owed + r.receipt.fee);
    assert_eq!(
        r.receipt.response_digest,
        keccak256(&d.body),
        "digest of what was delivered"
    );
    let account = broker.broker().tab(key.address()).await.unwrap().unwrap();
    assert_eq!(account.owed, r.receipt.owed);
    assert_eq!(account.reserved, U256::ZERO);

    // The signed statement matches.
    let s: zg_core::SignedStatement = payer
        .statement(&key, zg_core::now_unix())
        .await
        .json()
        .await
        .unwrap();
    let statement = s.verify(env.signer_key.address()).unwrap();
    assert_eq!(statement.owed, account.owed);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_pays_exactly_the_sum_of_receipts() {
    let env = Env::start().await;
    let (broker, _dir) = env.scripted_broker("1").await;
    let mut total = U256::ZERO;
    let mut payers = Vec::new();
    for index in 2..5 {
        let (key, _) = env
            .user(index, U256::from(10u64).pow(U256::from(16u64)))
            .await;
        payers.push(Payer::new(key, &env, &broker.url()));
    }
    let mut last = vec![None; payers.len()];
    for round in 0..4 {
        for (i, payer) in payers.iter_mut().enumerate() {
            let body = if round % 2 == 0 {
                chat_body("chat", "hi", 8)
            } else {
                stream_body("hi", false)
            };
            let a = payer.send("/v1/chat/completions", &body).await;
            assert_eq!(a.status, 200);
            let r = match a.receipt {
                Some(r) => r,
                None => payer.receipt(a.request_id.as_deref().unwrap()).await,
            };
            total += r.receipt.fee;
            payer.owed = r.receipt.owed;
            last[i] = Some(r.receipt);
        }
    }
    // The last fee of each user is only covered by an acknowledgement voucher.
    for (payer, receipt) in payers.iter().zip(&last) {
        assert_eq!(payer.acknowledge(receipt.as_ref().unwrap()).await, 200);
    }
    let before = env.deployer.balance_of(env.provider()).await.unwrap();
    let round = broker.broker().settler().settle_now().await.unwrap();
    assert_eq!(round.settled, 3);
    let after = env.deployer.balance_of(env.provider()).await.unwrap();
    assert_eq!(
        after - before,
        total,
        "the provider is paid exactly the sum of the receipts"
    );
    for payer in &payers {
        let account = env
            .deployer
            .account(payer.key.address(), env.provider())
            .await
            .unwrap();
        assert_eq!(account.settled, payer.owed);
    }
    // Nothing left to settle: a second round is a no-op.
    let again = broker.broker().settler().settle_now().await.unwrap();
    assert_eq!(again.settled, 0);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_request_is_settled_before_it_unlocks() {
    let env = Env::start().await;
    let (broker, _dir) = env.scripted_broker("1").await;
    let escrow = U256::from(10u64).pow(U256::from(15u64));
    let (key, user_chain) = env.user(2, escrow).await;
    let base = broker.url();

    // Requests keep running while the refund is asked for.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runner = {
        let stop = stop.clone();
        let mut payer = Payer::new(key.clone(), &env, &base);
        tokio::spawn(async move {
            let mut served = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let a = payer
                    .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
                    .await;
                if a.status == 200 {
                    payer.owed = a.receipt.unwrap().receipt.owed;
                    served += 1;
                }
            }
            (served, payer.owed)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refund = escrow / U256::from(2u64);
    user_chain
        .request_refund(env.provider(), refund)
        .await
        .unwrap();
    // The loop sees the event and settles at once (the lock is 60 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let account = env
            .deployer
            .account(key.address(), env.provider())
            .await
            .unwrap();
        if !account.settled.is_zero() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no settlement after the refund request"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, owed) = runner.await.unwrap();
    assert!(served > 0);
    // Within the margin of the unlock, the refund no longer backs new
    // requests, and the final settlement runs: everything vouched is paid.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let newest = loop {
        let local = broker.broker().tab(key.address()).await.unwrap().unwrap();
        let chain = env
            .deployer
            .account(key.address(), env.provider())
            .await
            .unwrap();
        if chain.settled == local.cumulative() {
            break local.cumulative();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "final settlement missing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(newest <= owed);
    env.chain.advance_time(61).await.unwrap();
    user_chain.claim_refund(env.provider()).await.unwrap();
    let account = env
        .deployer
        .account(key.address(), env.provider())
        .await
        .unwrap();
    assert_eq!(
        account.escrow,
        escrow - refund - newest,
        "the provider was paid before the refund left"
    );
    broker.shutdown().await.unwrap();
}
