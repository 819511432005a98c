//! Prices under the listed ceilings, through real parts: real brokers with
//! a pricing policy in front of the real engine on the real model, the
//! SDK taking a quote before each voucher. The price rises while the
//! service is loaded and falls back when it is idle; a long prompt pays its
//! tier; a repeated chat prefix is billed at the cached price and the
//! receipt says so; settlement pays exactly the sum of the receipts.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{Market, chat_body, engine, neuron};
use std::time::Duration;
use zg_client::{AckPolicy, Payer, pay::fetch_quote};
use zg_core::{Prices, Service, U256};

/// The base tier's prices a fresh quote of `service` names now.
async fn quoted(payer: &Payer, service: &Service) -> Prices {
    let taken = fetch_quote(payer.http(), &payer.domain(), service)
        .await
        .unwrap()
        .expect("the broker serves quotes");
    taken.quote.tiers[0].prices
}

async fn chat(payer: &Payer, service: &Service, body: serde_json::Value) -> zg_client::PaidReceipt {
    let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
    let answer = payer
        .send(service, "/v1/chat/completions", bytes)
        .await
        .unwrap();
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.receipt.unwrap()
}

/// A broker (dev account 1) on the engine at 1e-9 / 2e-9 0G per token with
/// its service changed by `change`, a user (dev account 2) with 0.1 0G of
/// escrow at it, the user's payer, and the service as listed.
async fn priced(
    market: &mut Market,
    ack: AckPolicy,
    change: impl FnOnce(&mut zg_devnet::ServicePlan),
) -> (
    common::Provider,
    zg_core::SigningKey,
    zg_chain::ChainClient,
    Payer,
    Service,
) {
    let e = engine();
    let provider = market
        .broker_with(
            1,
            &e.url,
            &e.model,
            e.digest,
            ("0.000000001", "0.000000002"),
            change,
        )
        .await;
    let (key, chain) = market.user(2, neuron("0.1"), &[provider.address()]).await;
    let (payer, _) = market.payer(&key, ack).await;
    let service = chain
        .service(provider.address(), "chat")
        .await
        .unwrap()
        .unwrap();
    (provider, key, chain, payer, service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_price_follows_the_load_and_settlement_pays_the_receipts() {
    let mut market = Market::start().await;
    let (provider, key, chain, payer, service) = priced(&mut market, AckPolicy::Immediate, |s| {
        s.pricing = Some("floor = 0.5\npeak = 1.0\ncapacity = 2\nsmoothing_secs = 0.5".into());
    })
    .await;
    let e = engine();
    let ceiling = service.prices;

    let idle = quoted(&payer, &service).await;
    assert_eq!(
        idle.input,
        ceiling.input / U256::from(2u64),
        "idle pays the floor"
    );
    assert_eq!(idle.output, ceiling.output / U256::from(2u64));

    // Four long answers at once load the two-request capacity twice over.
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (payer, service) = (payer.clone(), service.clone());
            let body = chat_body(
                &e.model,
                &format!("Write a long story about the number {i}."),
                160,
            );
            tokio::spawn(async move { chat(&payer, &service, body).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let loaded = quoted(&payer, &service).await;
    assert!(
        loaded.input > idle.input && loaded.input <= ceiling.input,
        "loaded {loaded:?}, idle {idle:?}, ceiling {ceiling:?}"
    );
    let mut receipts = Vec::new();
    for task in load {
        receipts.push(task.await.unwrap());
    }
    // Idle again, the price falls back to the floor.
    let mut fell = false;
    for _ in 0..40 {
        if quoted(&payer, &service).await == idle {
            fell = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(fell, "the price never fell back to the floor");

    // Every receipt was checked (quote and ceilings) and paid; settlement
    // pays their sum, whatever price each was served at.
    receipts.push(chat(&payer, &service, chat_body(&e.model, "Hi.", 8)).await);
    let sum = receipts.iter().fold(U256::ZERO, |a, r| a + r.fee);
    assert!(
        receipts
            .iter()
            .all(|r| r.signed.receipt.prices().within(&ceiling))
    );
    let round = provider
        .running
        .broker()
        .settler()
        .settle_now()
        .await
        .unwrap();
    assert_eq!(round.settled, 1);
    let account = chain
        .account(key.address(), provider.address())
        .await
        .unwrap();
    assert_eq!(account.settled, sum);
    assert_eq!(
        payer.book().tab(provider.address()).await.unwrap().owed,
        sum
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_prompt_pays_its_tier_and_a_repeated_prefix_the_cached_price() {
    let mut market = Market::start().await;
    let (_provider, _, _, payer, service) = priced(&mut market, AckPolicy::Never, |s| {
        s.cached_input_price = Some("0.0000000002".into());
        s.pricing = Some(
            "floor = 0.5\npeak = 0.5\n[[services.pricing.tiers]]\nmin_prompt_tokens = 300\nmultiplier = 2"
                .into(),
        );
    })
    .await;
    let e = engine();
    let ceiling = service.prices;
    let half = |p: U256| p / U256::from(2u64);

    let short = chat(&payer, &service, chat_body(&e.model, "Say hi.", 8)).await;
    let r = &short.signed.receipt;
    assert_eq!(
        (r.input_price, r.output_price),
        (half(ceiling.input), half(ceiling.output))
    );

    // A prompt over 300 tokens pays the long-prompt tier: the ceilings.
    let long_text = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let first = serde_json::json!({
        "model": e.model,
        "messages": [{ "role": "user", "content": long_text }],
        "max_tokens": 8,
        "temperature": 0
    });
    let long = chat(&payer, &service, first).await;
    let r = &long.signed.receipt;
    assert!(r.input_tokens > U256::from(300u64), "{r:?}");
    assert_eq!(
        (r.input_price, r.output_price),
        (ceiling.input, ceiling.output)
    );

    // The second turn resends the first: the engine reads it from its
    // prompt cache and the broker bills those tokens at the cached price.
    let second = serde_json::json!({
        "model": e.model,
        "messages": [
            { "role": "user", "content": long_text },
            { "role": "assistant", "content": "I see." },
            { "role": "user", "content": "Say it again." }
        ],
        "max_tokens": 8,
        "temperature": 0
    });
    let again = chat(&payer, &service, second).await;
    let r = &again.signed.receipt;
    assert!(
        r.cached_tokens > U256::from(300u64) && r.cached_tokens <= r.input_tokens,
        "the repeated prefix came from the cache: {r:?}"
    );
    assert_eq!(
        r.cached_price, ceiling.cached,
        "the tier doubles the half-price cache"
    );
    let uncached = r.input_tokens - r.cached_tokens;
    assert_eq!(
        again.fee,
        uncached * r.input_price
            + r.cached_tokens * r.cached_price
            + r.output_tokens * r.output_price
    );
    assert!(again.fee < r.input_tokens * r.input_price + r.output_tokens * r.output_price);
}
