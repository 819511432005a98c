//! A provider that lies in its receipts is caught and not paid: a scripted
//! fake broker, listed on a real chain, answers with receipts that inflate
//! the fee, are signed by the wrong key, name the wrong model digest, or
//! claim the wrong owed, or (for a service that registered a proof method)
//! bind no proof or another proof than the one it serves. Each is refused
//! by name, kept as evidence, and adds nothing to what the user authorizes;
//! the gateway stops using it.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use axum::{
    Router,
    extract::State,
    http::HeaderMap,
    response::IntoResponse,
    routing::{get, post},
};
use bytes::Bytes;
use common::{Market, chat_body, neuron, start_gateway};
use std::sync::{Arc, Mutex};
use zg_client::{AckPolicy, ClientError};
use zg_core::{
    B256, Domain, PaymentHeaders, Prices, Receipt, Service, SigningKey, U256,
    headers::SignedReceipt, keccak256, proof_digest, request_digest, service_id, verifiability,
};
use zg_gateway::GatewayConfig;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Lie {
    None,
    InflatedFee,
    WrongSigner,
    WrongModelDigest,
    WrongOwed,
    /// proofDigest of other bytes than the proof served.
    WrongProofDigest,
    /// proofDigest zero.
    NoProof,
}

/// The proof the fake serves for every answer.
const PROOF: &[u8] = b"the fake's proof of model";

struct Fake {
    domain: Domain,
    signer: SigningKey,
    service: Service,
    lie: Mutex<Lie>,
    /// What the fake thinks it is owed (honest part).
    owed: Mutex<U256>,
    /// Cumulative of every voucher received, in order.
    vouchers: Mutex<Vec<U256>>,
}

const ANSWER: &str = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;

async fn chat(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let payment = PaymentHeaders::decode(|name| headers.get(name).and_then(|v| v.to_str().ok()))
        .expect("paid request");
    fake.vouchers.lock().unwrap().push(payment.cumulative);
    let prices = fake.service.prices;
    let fee = prices.input * U256::from(10u64) + prices.output * U256::from(5u64);
    let owed_before = *fake.owed.lock().unwrap();
    let mut receipt = Receipt {
        user: payment.user,
        provider: fake.service.provider,
        service: service_id(&fake.service.name),
        model_digest: fake.service.model_digest,
        request_digest: request_digest(&payment.nonce, &body),
        response_digest: keccak256(ANSWER.as_bytes()),
        input_tokens: U256::from(10u64),
        output_tokens: U256::from(5u64),
        input_price: prices.input,
        output_price: prices.output,
        fee,
        owed: owed_before + fee,
        proof_digest: match fake.service.verifiability.as_str() {
            verifiability::NONE => B256::ZERO,
            _ => proof_digest(PROOF),
        },
    };
    let lie = *fake.lie.lock().unwrap();
    let mut key = fake.signer.clone();
    match lie {
        Lie::None => {}
        Lie::InflatedFee => {
            receipt.fee = fee * U256::from(3u64);
            receipt.owed = owed_before + receipt.fee;
        }
        Lie::WrongSigner => key = SigningKey::random(),
        Lie::WrongModelDigest => receipt.model_digest = B256::repeat_byte(0xee),
        Lie::WrongOwed => receipt.owed += U256::from(1_000_000u64),
        Lie::WrongProofDigest => receipt.proof_digest = proof_digest(b"another proof"),
        Lie::NoProof => receipt.proof_digest = B256::ZERO,
    }
    *fake.owed.lock().unwrap() = receipt.owed;
    let signed = SignedReceipt::new(receipt.clone(), &receipt.sign(&key, &fake.domain));
    (
        [
            ("content-type", "application/json".to_owned()),
            ("x-zg-receipt", signed.to_header()),
            ("x-zg-request-id", "r1".to_owned()),
        ],
        ANSWER,
    )
}

async fn proof() -> &'static [u8] {
    PROOF
}

/// A fake broker for dev account 1, listed on chain with one chat service
/// of `verifiability`, serving answers with the receipts its `lie` says.
async fn fake_broker(market: &Market, verifiability: &str) -> Arc<Fake> {
    let provider_key = SigningKey::from_bytes(&market.chain.keys()[1]).unwrap();
    let signer = SigningKey::random();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = Service {
        provider: provider_key.address(),
        name: "chat".into(),
        kind: "chat".into(),
        url: format!("http://{}", listener.local_addr().unwrap()),
        model: "liar-1".into(),
        model_digest: B256::repeat_byte(0x11),
        hardware: "cpu".into(),
        prices: Prices::new(neuron("0.000000001"), neuron("0.000000002")),
        verifiability: verifiability.into(),
        signer: signer.address(),
        updated_at: 0,
    };
    market
        .deployer
        .with_key(&provider_key.to_bytes())
        .unwrap()
        .add_or_update_service(&service, neuron("0.1"))
        .await
        .expect("listed");
    let fake = Arc::new(Fake {
        domain: market.deployer.domain(),
        signer,
        service,
        lie: Mutex::new(Lie::None),
        owed: Mutex::default(),
        vouchers: Mutex::default(),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/proofs/{id}", get(proof))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake
}

fn honest_fee() -> U256 {
    neuron("0.000000001") * U256::from(10u64) + neuron("0.000000002") * U256::from(5u64)
}

/// Sends one answer per lie after an honest one: each lie is refused as
/// `kind` and adds nothing to the tally. Returns the payer.
async fn catch_each(
    market: &mut Market,
    fake: &Fake,
    lies: &[(Lie, &str)],
) -> (zg_client::Payer, SigningKey, zg_chain::ChainClient) {
    let service = &fake.service;
    let (user, chain) = market.user(2, neuron("0.01"), &[service.provider]).await;
    let (payer, _) = market.payer(&user, AckPolicy::Never).await;
    let body = Bytes::from(serde_json::to_vec(&chat_body("liar-1", "hi", 5)).unwrap());

    // An honest answer first: paid.
    let answer = payer
        .send(service, "/v1/chat/completions", body.clone())
        .await
        .unwrap();
    assert_eq!(answer.receipt.unwrap().fee, honest_fee());

    for &(lie, kind) in lies {
        *fake.lie.lock().unwrap() = lie;
        // The fake's own tally follows the honest one so only this lie shows.
        *fake.owed.lock().unwrap() = payer.book().tab(service.provider).await.unwrap().owed;
        let answer = payer
            .send(service, "/v1/chat/completions", body.clone())
            .await
            .unwrap();
        match answer.receipt {
            Err(ClientError::BadReceipt { fault, .. }) => {
                assert_eq!(fault.kind(), kind, "{lie:?}: {fault}")
            }
            other => panic!("{lie:?} was not caught: {other:?}"),
        }
        let account = payer.book().tab(service.provider).await.unwrap();
        assert_eq!(
            account.owed,
            honest_fee(),
            "{lie:?} added nothing to the tally"
        );
    }
    // The next voucher still authorizes only the honest fee.
    *fake.lie.lock().unwrap() = Lie::None;
    *fake.owed.lock().unwrap() = honest_fee();
    payer
        .send(service, "/v1/chat/completions", body)
        .await
        .unwrap()
        .receipt
        .unwrap();
    let vouchers = fake.vouchers.lock().unwrap().clone();
    let mut expected = vec![U256::ZERO];
    expected.resize(lies.len() + 2, honest_fee());
    assert_eq!(vouchers, expected);

    // Every refused receipt is kept as evidence, with why.
    let evidence = payer.book().receipts(None, true, 10).await.unwrap();
    assert_eq!(evidence.len(), lies.len());
    assert!(
        evidence
            .iter()
            .all(|r| r.status == "rejected" && r.fault.is_some())
    );
    (payer, user, chain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_lying_receipt_is_caught_kept_and_not_paid() {
    let mut market = Market::start().await;
    let fake = fake_broker(&market, verifiability::NONE).await;
    let lies = [
        (Lie::InflatedFee, "wrong_fee"),
        (Lie::WrongSigner, "wrong_signer"),
        (Lie::WrongModelDigest, "wrong_model_digest"),
        (Lie::WrongOwed, "wrong_owed"),
    ];
    let (_, user, chain) = catch_each(&mut market, &fake, &lies).await;

    // Through the gateway: the answer is delivered, the receipt refused, and
    // the provider gets no further requests.
    *fake.lie.lock().unwrap() = Lie::InflatedFee;
    let (url, gateway, _) =
        start_gateway(&mut market, &user, chain, GatewayConfig::default()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/chat/completions"))
        .json(&chat_body("liar-1", "hi", 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = r.headers()["x-zg-receipt-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(status.starts_with("rejected"), "{status}");
    let before = fake.vouchers.lock().unwrap().len();
    let r = http
        .post(format!("{url}/chat/completions"))
        .json(&chat_body("liar-1", "hi", 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the only provider of the model is banned");
    assert_eq!(
        fake.vouchers.lock().unwrap().len(),
        before,
        "no request reached the liar"
    );
    assert!(gateway.ranking().standings()[0].banned.is_some());
}

/// A service that registered a proof method is paid only when its receipt
/// binds the proof its broker serves: a zero proofDigest or the digest of
/// other bytes is refused like any other lie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_binds_another_proof_or_none_is_not_paid() {
    let mut market = Market::start().await;
    let fake = fake_broker(&market, verifiability::ZG_LOGITS_V1).await;
    let lies = [
        (Lie::WrongProofDigest, "wrong_proof_digest"),
        (Lie::NoProof, "missing_proof"),
    ];
    let (payer, _, _) = catch_each(&mut market, &fake, &lies).await;
    let refused = payer.book().receipts(None, true, 10).await.unwrap();
    // The refused receipt's evidence is kept with the proof the broker served.
    let kept = payer.book().evidence(refused[1].id).await.unwrap().unwrap();
    assert_eq!(kept.proof.as_ref(), PROOF);
    assert_eq!(kept.receipt, refused[1].signed);
}
