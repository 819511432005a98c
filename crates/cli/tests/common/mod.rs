//! What the CLI's tests share: the real model, and the evidence of one real
//! answer of the built-in engine with its receipt signed as a broker would.

use std::path::PathBuf;

use serde_json::json;
use zg_core::{
    Address, B128, B256, Domain, Evidence, Nonce, Receipt, SigningKey, U256,
    headers::SignedReceipt, keccak256, proof_digest, request_digest, service_id,
};

pub(crate) fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// One answer of a real engine on the real model, as evidence of `provider`'s
/// service `service`, the receipt signed by `signer` under `domain`.
pub(crate) async fn real_evidence(
    provider: Address,
    service: &str,
    signer: &SigningKey,
    domain: &Domain,
) -> Evidence {
    let mut config = zg_engine::EngineConfig::new(model());
    config.threads = 1;
    config.parallel = 1;
    config.ctx = 1024;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let engine = zg_engine::spawn(config, listener)
        .await
        .expect("engine starts (run `make model` first)");
    let digest: B256 = format!("0x{}", engine.engine().models()[0].sha256)
        .parse()
        .expect("sha256");
    let request = json!({
        "model": "chat",
        "messages": [{ "role": "user", "content": "Name three colours." }],
        "max_tokens": 16,
        "temperature": 0
    })
    .to_string();
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/chat/completions", engine.base_url()))
        .header("content-type", "application/json")
        .body(request.clone())
        .send()
        .await
        .expect("engine answers");
    let id = answer.headers()["x-engine-proof-id"]
        .to_str()
        .expect("ascii id")
        .to_owned();
    let response = answer.text().await.expect("answer body");
    let proof = http
        .get(format!("{}/proofs/{id}", engine.base_url()))
        .send()
        .await
        .expect("engine serves the proof")
        .bytes()
        .await
        .expect("proof bytes");
    let nonce = Nonce([9; 16]);
    let receipt = Receipt {
        user: Address::repeat_byte(1),
        provider,
        service: service_id(service),
        model_digest: digest,
        request_digest: request_digest(&nonce, request.as_bytes()),
        response_digest: keccak256(response.as_bytes()),
        input_tokens: U256::from(10u64),
        output_tokens: U256::from(16u64),
        input_price: U256::ZERO,
        output_price: U256::ZERO,
        cached_tokens: U256::ZERO,
        cached_price: U256::ZERO,
        fee: U256::from(1000u64),
        owed: U256::from(1000u64),
        proof_digest: proof_digest(&proof),
        issued_at: zg_core::now_unix(),
    };
    let signature = receipt.sign(signer, domain);
    Evidence {
        receipt: SignedReceipt::new(receipt, &signature),
        nonce: B128::from(nonce.0),
        request,
        response,
        proof: proof.into(),
    }
}

/// `evidence` with its answer's text edited after generation and the receipt
/// signed again by `signer`: what a provider that edits answers signs.
pub(crate) fn edited(evidence: &Evidence, signer: &SigningKey, domain: &Domain) -> Evidence {
    let mut response: serde_json::Value =
        serde_json::from_str(&evidence.response).expect("a JSON answer");
    let text = response["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    response["choices"][0]["message"]["content"] = format!("{text} Also, purple.").into();
    let mut edited = evidence.clone();
    edited.response = response.to_string();
    let mut receipt = edited.receipt.receipt.clone();
    receipt.response_digest = keccak256(edited.response.as_bytes());
    edited.receipt = SignedReceipt::new(receipt.clone(), &receipt.sign(signer, domain));
    edited
}
