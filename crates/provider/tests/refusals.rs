//! What the broker answers to clients it must not trust or that leave: the
//! account statement only to its user, a delegate refused from the block
//! that revoked it, `X-ZG-*` headers sent twice, a client that hangs up
//! mid-request, and every refusal of every layer in OpenAI's error shape, a
//! body the model server finds too large included.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use zg_chain::ChainClient;
use zg_core::{
    Address, STATEMENT_FRESHNESS_SECS, SignedStatement, SigningKey, U256, Voucher, now_unix,
    request_digest,
};
use zg_provider::Running;

/// 0.1 0G: room for many worst cases, a 3 MiB body's included.
fn escrow() -> U256 {
    U256::from(10u64).pow(U256::from(17u64))
}

/// A broker in front of the scripted upstream, a funded user of it (its
/// payer and chain client), and the temp dir of the broker's database.
async fn setup(env: &Env) -> (Running, Payer, ChainClient, tempfile::TempDir) {
    let (broker, dir) = env.scripted_broker("1").await;
    let (key, chain) = env.user(2, escrow()).await;
    let payer = Payer::new(key, env, &broker.url());
    (broker, payer, chain, dir)
}

/// A paid chat request whose voucher `signer` signed for `payer`'s user.
async fn send_signed_by(payer: &Payer, signer: &SigningKey, text: &str) -> Answer {
    let bytes = serde_json::to_vec(&chat_body("chat", text, 8)).unwrap();
    let (mut headers, _) = payer.headers(&bytes, payer.owed);
    headers.signature = Voucher {
        user: payer.key.address(),
        provider: payer.provider,
        cumulative: payer.owed,
        request_digest: request_digest(&headers.nonce, &bytes),
    }
    .sign(signer, &payer.domain);
    payer
        .send_raw("/v1/chat/completions", bytes, &headers)
        .await
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let json: serde_json::Value = response.json().await.unwrap_or_default();
    let code = json
        .pointer("/error/code")
        .and_then(|c| c.as_str())
        .unwrap_or("not OpenAI's error shape")
        .to_owned();
    assert!(json.pointer("/error/message").is_some(), "{json}");
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_statement_is_the_users_alone() {
    let env = Env::start().await;
    let (broker, mut payer, user_chain, _db) = setup(&env).await;
    let ok = payer
        .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    payer.owed += ok.receipt.unwrap().receipt.fee;
    let user = payer.key.address();

    let anonymous = payer
        .http
        .get(format!("{}/v1/account/{user}", broker.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(anonymous).await, (401, "unauthorized".into()));
    let stranger = SigningKey::random();
    let forged = payer.statement(&stranger, now_unix()).await;
    assert_eq!(error_of(forged).await, (401, "unauthorized".into()));
    let key = payer.key.clone();
    for stale in [
        now_unix() - STATEMENT_FRESHNESS_SECS - 5,
        now_unix() + STATEMENT_FRESHNESS_SECS + 5,
    ] {
        let r = payer.statement(&key, stale).await;
        assert_eq!(error_of(r).await, (401, "unauthorized".into()), "{stale}");
    }
    // Signed for another provider: not a request to this one.
    let elsewhere = Payer {
        provider: Address::repeat_byte(7),
        ..Payer::new(key.clone(), &env, &broker.url())
    };
    let r = elsewhere.statement(&key, now_unix()).await;
    assert_eq!(error_of(r).await, (401, "unauthorized".into()));

    let r = payer.statement(&key, now_unix()).await;
    assert_eq!(r.status(), 200);
    let signed: SignedStatement = r.json().await.unwrap();
    let statement = signed.verify(env.signer_key.address()).unwrap();
    assert_eq!((statement.user, statement.owed), (user, payer.owed));

    // The user's delegated voucher signer may ask too.
    let delegate = SigningKey::random();
    user_chain
        .set_voucher_signer(delegate.address())
        .await
        .unwrap();
    assert_eq!(payer.statement(&delegate, now_unix()).await.status(), 200);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_delegate_is_refused_from_the_block_that_mined_the_revocation() {
    let env = Env::start().await;
    let (broker, mut payer, user_chain, _db) = setup(&env).await;
    let delegate = SigningKey::random();
    user_chain
        .set_voucher_signer(delegate.address())
        .await
        .unwrap();
    let ok = send_signed_by(&payer, &delegate, "hi").await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    payer.owed += ok.receipt.unwrap().receipt.fee;

    // Revoked: the next voucher of the old key is refused, with no wait.
    user_chain.set_voucher_signer(Address::ZERO).await.unwrap();
    let r = send_signed_by(&payer, &delegate, "hi").await;
    assert_eq!(
        (r.status, code(&r)),
        (401, "voucher_invalid"),
        "{:?}",
        r.json
    );
    let r = payer.statement(&delegate, now_unix()).await;
    assert_eq!(error_of(r).await, (401, "unauthorized".into()));
    // The user's own key still pays, and a new delegate is taken at once.
    let key = payer.key.clone();
    assert_eq!(send_signed_by(&payer, &key, "hi").await.status, 200);
    let tab = broker.broker().tab(key.address()).await.unwrap().unwrap();
    payer.owed = tab.owed;
    let next = SigningKey::random();
    user_chain.set_voucher_signer(next.address()).await.unwrap();
    assert_eq!(send_signed_by(&payer, &next, "hi").await.status, 200);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x_zg_header_sent_twice_is_refused() {
    let env = Env::start().await;
    let (broker, payer, _chain, _db) = setup(&env).await;
    let bytes = serde_json::to_vec(&chat_body("chat", "hi", 8)).unwrap();
    let other = SigningKey::random().address().to_string();
    for (twice, second) in [
        ("x-zg-user", other.as_str()),
        ("x-zg-cumulative", "1"),
        ("x-zg-nonce", ""),
    ] {
        let (headers, _) = payer.headers(&bytes, payer.owed);
        let mut request = payer
            .http
            .post(format!("{}/v1/chat/completions", broker.url()))
            .body(bytes.clone());
        for (name, value) in headers.encode() {
            // Sent again: with another value, or the same one.
            let again = if second.is_empty() {
                value.clone()
            } else {
                second.into()
            };
            request = request.header(name, value);
            if name == twice {
                request = request.header(name, again);
            }
        }
        let r = request.send().await.unwrap();
        assert_eq!(
            error_of(r).await,
            (400, "duplicate_header".into()),
            "{twice}"
        );
    }
    let tab = broker.broker().tab(payer.key.address()).await.unwrap();
    assert!(tab.is_none_or(|t| t.reserved.is_zero() && t.owed.is_zero()));
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_is_released_at_once() {
    let env = Env::start().await;
    let (broker, payer, _chain, _db) = setup(&env).await;
    let user = payer.key.address();
    // The upstream takes 2 s; the client leaves after 300 ms.
    let bytes = serde_json::to_vec(&chat_body("chat", "slow", 8)).unwrap();
    let (headers, _) = payer.headers(&bytes, payer.owed);
    let mut request = payer
        .http
        .post(format!("{}/v1/chat/completions", broker.url()))
        .timeout(Duration::from_millis(300))
        .body(bytes);
    for (name, value) in headers.encode() {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let sent = tokio::spawn(request.send());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let reserved = broker.broker().tab(user).await.unwrap().unwrap().reserved;
    assert!(!reserved.is_zero(), "in flight, the worst case is reserved");
    assert!(sent.await.unwrap().is_err(), "the client gave up");
    loop {
        let tab = broker.broker().tab(user).await.unwrap().unwrap();
        if tab.reserved.is_zero() {
            assert!(tab.owed.is_zero(), "no answer was delivered: free");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "still reserved {:?} after the client left, before the upstream even answered",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut payer = payer;
    let r = payer
        .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
        .await;
    assert_eq!(r.status, 200, "the same broker serves on: {:?}", r.json);
    broker.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_json_in_openais_shape() {
    let env = Env::start().await;
    let (broker, mut payer, _chain, _db) = setup(&env).await;
    let url = broker.url();
    let http = payer.http.clone();

    let refusals = [
        (http.get(format!("{url}/v1/nowhere")), 404, "not_found"),
        (
            http.get(format!("{url}/v1/chat/completions")),
            405,
            "method_not_allowed",
        ),
        (
            http.put(format!("{url}/v1/account/0x00")),
            405,
            "method_not_allowed",
        ),
        // A path id that is not UTF-8: the extractor's own refusal.
        (
            http.get(format!("{url}/v1/receipts/%FF")),
            400,
            "invalid_request",
        ),
        (
            http.get(format!("{url}/v1/models"))
                .header("x-long", "a".repeat(100 * 1024)),
            431,
            "headers_too_large",
        ),
        // Past what HTTP parsing buffers by default (about 400 KiB), where
        // it used to answer its own 431 with an empty body.
        (
            http.get(format!("{url}/v1/models"))
                .header("x-long", "a".repeat(500 * 1024)),
            431,
            "headers_too_large",
        ),
        (
            (0..8).fold(http.get(format!("{url}/v1/models")), |r, i| {
                r.header(format!("x-long-{i}"), "a".repeat(60 * 1024))
            }),
            431,
            "headers_too_large",
        ),
        (
            http.post(format!("{url}/v1/chat/completions"))
                .body(vec![b' '; 9 * 1024 * 1024]),
            413,
            "request_too_large",
        ),
    ];
    for (request, status, expected) in refusals {
        let r = zg_devnet::send_past_resets(request).await.unwrap();
        if status == 405 {
            assert!(
                r.headers().contains_key("allow"),
                "405 keeps its Allow header"
            );
        }
        assert_eq!(error_of(r).await, (status, expected.to_owned()));
    }

    // Under the broker's 8 MiB, over the model server's 2 MiB: the client's
    // mistake (413), and free. The model server answers 413 and closes; for
    // the larger body it mostly closes before the broker has written it all
    // (its 413 lost to the connection's reset).
    for mib in [3, 7] {
        let big = chat_body("chat", &"a".repeat(mib * 1024 * 1024), 8);
        let r = payer.send("/v1/chat/completions", &big).await;
        let got = (r.status, code(&r));
        assert_eq!(got, (413, "request_too_large"), "{mib} MiB: {:?}", r.json);
        let tab = broker.broker().tab(payer.key.address()).await.unwrap();
        let tab = tab.unwrap();
        assert_eq!((tab.owed, tab.reserved), (U256::ZERO, U256::ZERO));
    }
    let r = payer
        .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    broker.shutdown().await.unwrap();
}

/// A request sent under a quote pays at most the quote; a quote that is not
/// the broker's own (signed by another key, or changed after signing) or
/// that expired is refused with 409 `quote_invalid` and costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_not_its_own_or_expired_is_refused_and_costs_nothing() {
    let env = Env::start().await;
    let (broker, payer, _, _db) = setup(&env).await;
    let quote_url = format!("{}/v1/quote?model=chat", broker.url());
    let signed: zg_core::SignedQuote = payer
        .http
        .get(&quote_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(signed.quote.provider, env.provider());
    assert!(signed.quote.valid_until > now_unix());

    let send = |quote: String, owed: U256| {
        let payer = &payer;
        async move {
            let bytes = serde_json::to_vec(&chat_body("chat", "hi", 8)).unwrap();
            let (headers, _) = payer.headers(&bytes, owed);
            let mut request = payer
                .http
                .post(format!("{}/v1/chat/completions", payer.base))
                .header("content-type", "application/json")
                .header(zg_core::headers::QUOTE, quote)
                .body(bytes);
            for (name, value) in headers.encode() {
                request = request.header(name, value);
            }
            request.send().await.unwrap()
        }
    };
    let ok = send(serde_json::to_string(&signed).unwrap(), U256::ZERO).await;
    assert_eq!(ok.status(), 200);
    let receipt = zg_core::headers::SignedReceipt::from_header(
        ok.headers()["x-zg-receipt"].to_str().unwrap(),
    )
    .unwrap()
    .receipt;
    assert!(receipt.prices().within(&signed.quote.tiers[0].prices));
    let owed = receipt.fee;

    let mut cheaper = signed.clone();
    cheaper.quote.tiers[0].prices.input = U256::ZERO;
    let forged = cheaper
        .quote
        .clone()
        .sign(&SigningKey::random(), &env.domain());
    let expired = zg_core::Quote {
        issued_at: now_unix() - 120,
        valid_until: now_unix() - 60,
        ..signed.quote.clone()
    }
    .sign(&env.signer_key, &env.domain());
    for bad in [
        serde_json::to_string(&cheaper).unwrap(),
        serde_json::to_string(&forged).unwrap(),
        serde_json::to_string(&expired).unwrap(),
        "not json".to_owned(),
    ] {
        assert_eq!(
            error_of(send(bad, owed).await).await,
            (409, "quote_invalid".into())
        );
    }
    // Nothing was charged: the voucher for the same tally is still good.
    let again = send(serde_json::to_string(&signed).unwrap(), owed).await;
    assert_eq!(again.status(), 200);
    let unknown = payer
        .http
        .get(format!("{}/v1/quote?model=nope", broker.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(unknown).await, (404, "unknown_model".into()));
    let unnamed = payer
        .http
        .get(format!("{}/v1/quote", broker.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(unnamed).await.0, 400);
}
