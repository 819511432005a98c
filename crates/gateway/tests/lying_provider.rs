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

use bytes::Bytes;
use common::{
    Market, chat_body,
    fake::{Fake, PROOF, fake_broker},
    neuron, start_gateway,
};
use zg_client::{AckPolicy, ClientError};
use zg_core::{B256, Prices, Receipt, SigningKey, U256, proof_digest, verifiability};
use zg_gateway::GatewayConfig;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Lie {
    InflatedFee,
    WrongSigner,
    WrongModelDigest,
    WrongOwed,
    /// proofDigest of other bytes than the proof served.
    WrongProofDigest,
    /// proofDigest zero.
    NoProof,
    /// Charges the listed ceilings after quoting less.
    AboveQuote,
}

impl Lie {
    /// Makes `fake` tell this lie in its next receipts.
    fn tell(self, fake: &Fake) {
        *fake.tamper.lock().unwrap() =
            Box::new(move |r: &mut Receipt, key: &mut SigningKey| self.apply(r, key));
    }

    fn apply(self, receipt: &mut Receipt, key: &mut SigningKey) {
        match self {
            Lie::InflatedFee => {
                let owed_before = receipt.owed - receipt.fee;
                receipt.fee *= U256::from(3u64);
                receipt.owed = owed_before + receipt.fee;
            }
            Lie::WrongSigner => *key = SigningKey::random(),
            Lie::WrongModelDigest => receipt.model_digest = B256::repeat_byte(0xee),
            Lie::WrongOwed => receipt.owed += U256::from(1_000_000u64),
            Lie::WrongProofDigest => receipt.proof_digest = proof_digest(b"another proof"),
            Lie::NoProof => receipt.proof_digest = B256::ZERO,
            Lie::AboveQuote => {
                let owed_before = receipt.owed - receipt.fee;
                let (input, output) = (
                    receipt.input_price * U256::from(2u64),
                    receipt.output_price * U256::from(2u64),
                );
                receipt.input_price = input;
                receipt.output_price = output;
                receipt.fee = receipt.input_tokens * input + receipt.output_tokens * output;
                receipt.owed = owed_before + receipt.fee;
            }
        }
    }
}

const ANSWER: &str = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;

/// A fake broker for dev account 1 listing model `liar-1` with `verifiability`.
async fn liar(market: &Market, verifiability: &str) -> std::sync::Arc<Fake> {
    fake_broker(market, 1, ANSWER, |s| {
        s.model = "liar-1".into();
        s.model_digest = B256::repeat_byte(0x11);
        s.prices = Prices::new(neuron("0.000000001"), neuron("0.000000002"));
        s.verifiability = verifiability.into();
    })
    .await
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
        lie.tell(fake);
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
    fake.honest();
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
    let fake = liar(&market, verifiability::NONE).await;
    let lies = [
        (Lie::InflatedFee, "wrong_fee"),
        (Lie::WrongSigner, "wrong_signer"),
        (Lie::WrongModelDigest, "wrong_model_digest"),
        (Lie::WrongOwed, "wrong_owed"),
    ];
    let (_, user, chain) = catch_each(&mut market, &fake, &lies).await;

    // Through the gateway: the answer is delivered, the receipt refused, and
    // the provider gets no further requests.
    Lie::InflatedFee.tell(&fake);
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
    let fake = liar(&market, verifiability::ZG_LOGITS_V1).await;
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

/// A broker that quotes under its ceilings is held to its quote: a receipt
/// at the listed ceilings (within them, above the quote the request went
/// out under) is refused by name and adds nothing to the next voucher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_above_the_quote_is_not_paid() {
    let mut market = Market::start().await;
    let fake = fake_broker(&market, 1, ANSWER, |s| {
        s.model = "liar-1".into();
        s.model_digest = B256::repeat_byte(0x11);
        s.prices = Prices::new(neuron("0.000000002"), neuron("0.000000004"));
    })
    .await;
    *fake.quoted.lock().unwrap() = Some(Prices::new(neuron("0.000000001"), neuron("0.000000002")));
    catch_each(
        &mut market,
        &fake,
        &[
            (Lie::AboveQuote, "price_above_quote"),
            (Lie::InflatedFee, "wrong_fee"),
        ],
    )
    .await;
}
