//! Proofs of model through real parts: a broker registered with
//! `zg-logits-v1` in front of the real engine on the real model, on a real
//! chain, and the client that pays it. Each paid answer's receipt binds the
//! proof the broker serves, the client keeps the evidence, and the
//! verifier (the registered GGUF, re-run) passes it, plain and streamed; an
//! answer edited after generation fails.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;

use bytes::Bytes;
use common::{Market, chat_body, engine};
use futures::StreamExt;
use serde_json::{Value, json};
use zg_client::AckPolicy;
use zg_core::{Evidence, keccak256, proof_digest, verifiability::ZG_LOGITS_V1};
use zg_engine::verify::{Verifier, VerifyError};

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        // The engine first: it initialises llama.cpp's backend.
        let digest = format!("{:x}", engine().digest);
        let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
        Verifier::open(&model, &digest, 2).expect("the registered model opens")
    })
}

/// What a provider that edits an answer after generation would sign: the
/// edited response with the original proof.
fn edited(evidence: &Evidence) -> Evidence {
    let mut response: Value = serde_json::from_str(&evidence.response).unwrap();
    let content = response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    response["choices"][0]["message"]["content"] = json!(format!("{content} Also, buy gold."));
    let mut edited = evidence.clone();
    edited.response = response.to_string();
    edited.receipt.receipt.response_digest = keccak256(edited.response.as_bytes());
    edited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_answers_carry_proofs_that_verify_and_edits_fail() {
    let mut market = Market::start().await;
    market.verifiability = ZG_LOGITS_V1;
    let paid = market.one_paid_chat(AckPolicy::Never).await;
    assert_eq!(paid.service.verifiability, ZG_LOGITS_V1);
    let http = reqwest::Client::new();

    // Plain: the receipt binds the proof the broker serves; the client
    // checked that and kept the evidence.
    let body = chat_body("chat", "Write one sentence about the sea.", 24);
    let answer = paid
        .payer
        .send(
            &paid.service,
            "/v1/chat/completions",
            Bytes::from(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    let receipt = answer.receipt.expect("a good receipt, paid");
    assert!(!receipt.signed.receipt.proof_digest.is_zero());
    let evidence = paid
        .payer
        .book()
        .evidence(receipt.id)
        .await
        .unwrap()
        .expect("evidence kept for a proof service");
    assert_eq!(
        proof_digest(&evidence.proof),
        receipt.signed.receipt.proof_digest
    );
    assert_eq!(evidence.response.as_bytes(), answer.body.as_ref());
    let verdict = verifier().verify_evidence(&evidence).unwrap();
    assert!(verdict.pass, "{verdict:?}");
    assert!(verdict.distance <= verdict.threshold && verdict.tokens > 0);

    // Edited after generation, with the digest re-signed to match: the
    // proof's tokens no longer spell the answer.
    let verdict = verifier().verify_evidence(&edited(&evidence)).unwrap();
    assert!(!verdict.pass, "{verdict:?}");
    assert!(verdict.mismatch.is_some(), "{verdict:?}");
    // Edited without touching the receipt: the receipt does not bind it.
    let mut unbound = evidence.clone();
    unbound.response = edited(&evidence).response;
    assert!(matches!(
        verifier().verify_evidence(&unbound),
        Err(VerifyError::Evidence(
            zg_core::EvidenceError::WrongResponse { .. }
        ))
    ));

    // Streamed and sampled: the proof is fetched after the stream ends.
    let mut body = chat_body("chat", "Tell me about the moon.", 24);
    body["stream"] = json!(true);
    body["temperature"] = json!(0.8);
    body["seed"] = json!(7);
    let mut stream = paid
        .payer
        .send_stream(
            &paid.service,
            "/v1/chat/completions",
            Bytes::from(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    let mut text = Vec::new();
    while let Some(chunk) = stream.body.next().await {
        text.extend_from_slice(&chunk.unwrap());
    }
    let receipt = stream.receipt.await.unwrap().expect("a good receipt, paid");
    let evidence = paid
        .payer
        .book()
        .evidence(receipt.id)
        .await
        .unwrap()
        .expect("evidence kept for a stream");
    assert_eq!(evidence.response.as_bytes(), text.as_slice());
    let verdict = verifier().verify_evidence(&evidence).unwrap();
    assert!(verdict.pass, "{verdict:?}");

    // Anyone can fetch the proof from the broker by the request id.
    let url = format!(
        "{}/v1/proofs/{}",
        paid.provider.running.url(),
        stream.request_id
    );
    let served = http.get(&url).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap(), evidence.proof.as_ref());
    let unknown = http
        .get(format!("{}/v1/proofs/nope", paid.provider.running.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
