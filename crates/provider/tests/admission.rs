//! Every admission refusal through a real broker on a real chain and SQLite
//! file: missing and garbage headers, forged, cross-chain and cross-provider
//! vouchers, a tampered body, replay, stale and inflated cumulatives, credit
//! limit, short escrow (and its refresh after a top-up), unknown models,
//! garbage bodies; and a delegated signer accepted.

mod common;

use common::*;
use serde_json::json;
use zg_core::{Address, Domain, Nonce, PaymentHeaders, SigningKey, U256, Voucher, request_digest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admission_refusal() {
    let env = Env::start().await;
    // Fixed answer: 10 x 1e9 + 5 x 2e9 = 2e10 neuron. Worst case with
    // max_tokens 64: (body + 256) x 1e9 + 64 x 2e9, about 5e11.
    let (broker, _dir) = env.scripted_broker("0.00000003").await;
    let (key, user_chain) = env.user(2, U256::from(10u64).pow(U256::from(15u64))).await;
    let mut payer = Payer::new(key.clone(), &env, &broker.url());
    let body = chat_body("chat", "hi", 64);
    let bytes = serde_json::to_vec(&body).unwrap();

    // No headers at all.
    let r = payer
        .http
        .post(format!("{}/v1/chat/completions", broker.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "voucher_invalid");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-zg-user")
    );

    // Garbage header values.
    for (name, value) in [
        ("x-zg-cumulative", "-1"),
        ("x-zg-nonce", "xyz"),
        ("x-zg-signature", "0x1234"),
    ] {
        let (headers, _) = payer.headers(&bytes, U256::ZERO);
        let mut req = payer
            .http
            .post(format!("{}/v1/chat/completions", broker.url()))
            .body(bytes.clone());
        for (n, v) in headers.encode() {
            req = req.header(n, if n == name { value.to_string() } else { v });
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{name}");
    }

    // A good request works and gives a receipt.
    let ok = payer.send("/v1/chat/completions", &body).await;
    assert_eq!(ok.status, 200, "{:?}", ok.json);
    let fee = ok.receipt.as_ref().unwrap().receipt.fee;
    assert_eq!(fee, U256::from(20_000_000_000u64));
    payer.owed += fee;

    // Forged: signed by a stranger for this user.
    let stranger = SigningKey::random();
    let (mut h, _) = payer.headers(&bytes, payer.owed);
    let digest = request_digest(&h.nonce, &bytes);
    h.signature = Voucher {
        user: key.address(),
        provider: env.provider(),
        cumulative: payer.owed,
        request_digest: digest,
    }
    .sign(&stranger, &env.domain());
    let r = payer
        .send_raw("/v1/chat/completions", bytes.clone(), &h)
        .await;
    assert_eq!((r.status, code(&r)), (401, "voucher_invalid"));

    // Cross-chain and cross-provider vouchers don't recover to the user.
    for (domain, provider) in [
        (Domain::new(1, env.domain().contract), env.provider()),
        (
            Domain::new(env.domain().chain_id, Address::repeat_byte(9)),
            env.provider(),
        ),
        (env.domain(), Address::repeat_byte(7)),
    ] {
        let nonce = Nonce::random();
        let v = Voucher {
            user: key.address(),
            provider,
            cumulative: payer.owed,
            request_digest: request_digest(&nonce, &bytes),
        };
        let h = PaymentHeaders {
            user: key.address(),
            cumulative: payer.owed,
            nonce,
            signature: v.sign(&key, &domain),
        };
        let r = payer
            .send_raw("/v1/chat/completions", bytes.clone(), &h)
            .await;
        assert_eq!((r.status, code(&r)), (401, "voucher_invalid"));
    }

    // Tampered body: the voucher was for other bytes.
    let (h, _) = payer.headers(&bytes, payer.owed);
    let tampered = serde_json::to_vec(&chat_body("chat", "hj", 64)).unwrap();
    let r = payer.send_raw("/v1/chat/completions", tampered, &h).await;
    assert_eq!((r.status, code(&r)), (401, "voucher_invalid"));

    // Replay: the same request, byte for byte, twice.
    let (h, _) = payer.headers(&bytes, payer.owed);
    let first = payer
        .send_raw("/v1/chat/completions", bytes.clone(), &h)
        .await;
    assert_eq!(first.status, 200);
    payer.owed += first.receipt.unwrap().receipt.fee;
    let again = payer
        .send_raw("/v1/chat/completions", bytes.clone(), &h)
        .await;
    assert_eq!((again.status, code(&again)), (409, "voucher_replayed"));

    // Stale: below the newest accepted cumulative.
    let (h, _) = payer.headers(&bytes, payer.owed - fee - U256::from(1u64));
    let r = payer
        .send_raw("/v1/chat/completions", bytes.clone(), &h)
        .await;
    assert_eq!((r.status, code(&r)), (401, "voucher_stale"));

    // Above what is owed.
    let (h, _) = payer.headers(&bytes, payer.owed + U256::from(1u64));
    let r = payer
        .send_raw("/v1/chat/completions", bytes.clone(), &h)
        .await;
    assert_eq!((r.status, code(&r)), (401, "voucher_invalid"));

    // Credit: the limit is 3e10; keep the cumulative where it is while fees pile up.
    let newest = payer.owed;
    let mut credit_refused = false;
    for _ in 0..4 {
        let (h, _) = payer.headers(&bytes, newest);
        let r = payer
            .send_raw("/v1/chat/completions", bytes.clone(), &h)
            .await;
        if r.status == 429 {
            assert_eq!(code(&r), "credit_exceeded");
            credit_refused = true;
            break;
        }
        assert_eq!(r.status, 200);
        payer.owed = r.receipt.unwrap().receipt.owed;
    }
    assert!(credit_refused, "credit limit never refused");
    // An acknowledgement voucher for the newest receipt clears the credit.
    let last = payer.send("/v1/chat/completions", &body).await;
    assert_eq!(last.status, 200);
    let receipt = last.receipt.unwrap();
    let ack = Voucher {
        user: key.address(),
        provider: env.provider(),
        cumulative: receipt.receipt.owed,
        request_digest: receipt.receipt.signing_hash(&env.domain()),
    };
    let ack_body =
        json!({ "voucher": ack, "signature": ack.sign(&key, &env.domain()).to_string() });
    let r = payer
        .http
        .post(format!("{}/v1/vouchers", broker.url()))
        .json(&ack_body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = payer
        .http
        .post(format!("{}/v1/vouchers", broker.url()))
        .json(&ack_body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "an ack is a voucher too: no replay");
    payer.owed = receipt.receipt.owed;
    assert_eq!(payer.send("/v1/chat/completions", &body).await.status, 200);

    // Unknown model, garbage bodies: answered, never a panic.
    let r = payer
        .send("/v1/chat/completions", &chat_body("nope", "hi", 5))
        .await;
    assert_eq!((r.status, code(&r)), (404, "unknown_model"));
    for garbage in [
        &b"{"[..],
        b"[]",
        b"\xff\xfe",
        b"{\"model\": 5}",
        b"{\"model\":\"chat\",\"max_tokens\":-3}",
    ] {
        let (h, _) = payer.headers(garbage, payer.owed);
        let r = payer
            .send_raw("/v1/chat/completions", garbage.to_vec(), &h)
            .await;
        assert_eq!(
            (r.status, code(&r)),
            (400, "invalid_request"),
            "{garbage:?}"
        );
    }

    // Short escrow: a user with a sliver of escrow is refused, then tops up.
    let (poor_key, poor_chain) = env.user(3, U256::from(100_000_000_000u64)).await;
    let mut poor = Payer::new(poor_key, &env, &broker.url());
    let r = poor.send("/v1/chat/completions", &body).await;
    assert_eq!((r.status, code(&r)), (402, "insufficient_escrow"));
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("zg-serving user fund")
    );
    poor_chain
        .deposit(U256::from(10u64).pow(U256::from(15u64)))
        .await
        .unwrap();
    poor_chain
        .fund(env.provider(), U256::from(10u64).pow(U256::from(15u64)))
        .await
        .unwrap();
    let r = poor.send("/v1/chat/completions", &body).await;
    assert_eq!(
        r.status, 200,
        "the cached escrow is refreshed before refusing: {:?}",
        r.json
    );

    // A delegated signer's voucher is accepted for the user.
    let delegate = SigningKey::random();
    user_chain
        .set_voucher_signer(delegate.address())
        .await
        .unwrap();
    let (mut h, _) = payer.headers(&bytes, payer.owed);
    let d = request_digest(&h.nonce, &bytes);
    h.signature = Voucher {
        user: key.address(),
        provider: env.provider(),
        cumulative: payer.owed,
        request_digest: d,
    }
    .sign(&delegate, &env.domain());
    let r = payer
        .send_raw("/v1/chat/completions", bytes.clone(), &h)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    let metrics = payer
        .http
        .get(format!("{}/metrics", broker.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("zg_provider_errors_total{code=\"voucher_replayed\"}"));
    broker.shutdown().await.unwrap();
}
