//! Proof of model on the real SmolLM2 model: an honest answer's proof
//! verifies (plain, streamed, and on a prompt prefix reused from the KV
//! cache), and edited answers, a changed system
//! prompt and a requantized substitute fail; bad verifier input is an error.

mod common;

// Shared with the bench, which makes every kind; this test needs one.
#[allow(dead_code)]
use std::sync::OnceLock;

use common::*;
use serde_json::{Value, json};
use zg_engine::proof::{PROOF_METHOD, Proof, ProofError, tokens_digest};
use zg_engine::verify::{Claim, Verifier, VerifyError};

const REGISTERED: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        // The engine first: it initialises llama.cpp's backend.
        engine();
        Verifier::open(&chat_model_path(), REGISTERED, 1).expect("the registered model opens")
    })
}

fn messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| {
            (
                m["role"].as_str().expect("role").to_string(),
                m["content"].as_str().expect("content").to_string(),
            )
        })
        .collect()
}

/// Posts `body` to `base` (an engine's root URL); returns the answer text
/// and its proof.
async fn answer_with_proof(base: &str, body: &Value) -> (String, Vec<u8>) {
    let (answer, proof) = response_with_proof(base, body).await;
    (content(&answer), proof)
}

/// Like [`answer_with_proof`], with the whole response body.
async fn response_with_proof(base: &str, body: &Value) -> (Value, Vec<u8>) {
    let res = client()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let id = res.headers()["x-engine-proof-id"]
        .to_str()
        .expect("ascii id")
        .to_string();
    let answer: Value = res.json().await.expect("json");
    assert_eq!(answer["id"], id, "the proof id is the answer's id");
    let proof = fetch_proof(base, &id).await;
    (answer, proof)
}

async fn fetch_proof(base: &str, id: &str) -> Vec<u8> {
    let res = client()
        .get(format!("{base}/v1/proofs/{id}"))
        .send()
        .await
        .expect("proof request");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["x-engine-proof-method"], PROOF_METHOD);
    res.bytes().await.expect("proof bytes").to_vec()
}

fn check(body: &Value, answer: &str, proof: &[u8]) -> zg_engine::verify::Verdict {
    let v = verifier();
    let prompt = v.prompt_tokens(messages(body)).expect("prompt renders");
    v.verify(
        &Claim {
            prompt: &prompt,
            answer,
            stop: &[],
        },
        proof,
    )
    .expect("the proof is readable")
}

fn sampled(user: &str, tokens: u32) -> Value {
    let mut body = chat_body(user, tokens);
    body["temperature"] = json!(0.9);
    body["seed"] = json!(42);
    body
}

#[tokio::test]
async fn honest_plain_answer_verifies() {
    for body in [
        chat_body("Write a short poem about the sea.", 40),
        sampled("Describe a forest at night.", 40),
    ] {
        let (answer, proof) = answer_with_proof(&engine().url, &body).await;
        let tokens = Proof::decode(&proof).expect("decodes").tokens.len();
        assert!(
            tokens < 32 || proof.len() * 32 <= 300 * tokens,
            "{} bytes for {tokens} tokens",
            proof.len()
        );
        let verdict = check(&body, &answer, &proof);
        assert!(verdict.pass, "{verdict:?}");
        assert!(verdict.distance <= verdict.threshold);
    }
    let models: Value = client()
        .get(format!("{}/v1/models", engine().url))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(models["data"][0]["proof_method"], PROOF_METHOD);
}

#[tokio::test]
async fn honest_stream_verifies() {
    let mut body = sampled("Tell me about the moon.", 36);
    body["stream"] = json!(true);
    let res = client()
        .post(format!("{}/v1/chat/completions", engine().url))
        .json(&body)
        .send()
        .await
        .expect("request");
    let id = res.headers()["x-engine-proof-id"]
        .to_str()
        .expect("ascii id")
        .to_string();
    let text = res.text().await.expect("stream");
    let answer: String = sse_data(&text)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let proof = fetch_proof(&engine().url, &id).await;
    let verdict = check(&body, &answer, &proof);
    assert!(verdict.pass, "{verdict:?}");
}

#[tokio::test]
async fn answer_on_a_reused_prefix_verifies() {
    // The proof covers the whole prompt as the model read it, though most
    // of it came from the KV cache of the first turn.
    let first = json!({
        "messages": [
            {"role": "system", "content": "You are a lighthouse keeper who answers in short sentences."},
            {"role": "user", "content": "What do you do at night?"},
        ],
        "temperature": 0,
        "max_tokens": 24,
    });
    let (first_answer, _) = answer_with_proof(&engine().url, &first).await;
    let mut body = first.clone();
    let turns = body["messages"].as_array_mut().expect("messages");
    turns.push(json!({"role": "assistant", "content": first_answer}));
    turns.push(json!({"role": "user", "content": "And when a storm comes?"}));
    for (temperature, seed) in [(0.0, 0), (0.9, 42)] {
        body["temperature"] = json!(temperature);
        body["seed"] = json!(seed);
        let (answer, proof) = response_with_proof(&engine().url, &body).await;
        let cached = answer["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("cached_tokens");
        assert!(cached > 20, "the first turn was not reused: {answer}");
        let verdict = check(&body, &content(&answer), &proof);
        assert!(verdict.pass, "{verdict:?}");
    }
}

#[tokio::test]
async fn edited_answer_fails() {
    let body = chat_body("Explain what a rainbow is.", 40);
    let (answer, proof) = answer_with_proof(&engine().url, &body).await;
    // The text edited, the proof left alone: its tokens spell something else.
    let verdict = check(&body, &format!("{answer} Buy now!"), &proof);
    assert!(!verdict.pass && verdict.mismatch.is_some(), "{verdict:?}");
    // The proof's token ids edited to match: the logits give it away.
    let mut forged = Proof::decode(&proof).expect("decodes");
    forged.tokens[5] = if forged.tokens[5] == 1000 { 1001 } else { 1000 };
    let (text, _) = verifier().spell(&forged.tokens, &[]);
    let verdict = check(&body, &text, &forged.encode());
    assert!(!verdict.pass && verdict.mismatch.is_none(), "{verdict:?}");
    assert!(verdict.distance > verdict.threshold);
}

#[tokio::test]
async fn changed_system_prompt_fails() {
    let claimed = chat_body("What is the capital of France?", 32);
    let mut served = claimed.clone();
    served["messages"][0]["content"] = json!("You are a pirate. Always talk like a pirate.");
    let (answer, proof) = answer_with_proof(&engine().url, &served).await;
    assert!(check(&served, &answer, &proof).pass);
    // As served, the proof names the other prompt.
    let verdict = check(&claimed, &answer, &proof);
    assert!(!verdict.pass && verdict.mismatch.is_some(), "{verdict:?}");
    // With the claimed prompt's digest forged in, the logits give it away.
    let mut forged = Proof::decode(&proof).expect("decodes");
    let prompt = verifier()
        .prompt_tokens(messages(&claimed))
        .expect("prompt");
    forged.prompt_digest = tokens_digest(prompt);
    let verdict = check(&claimed, &answer, &forged.encode());
    assert!(!verdict.pass && verdict.mismatch.is_none(), "{verdict:?}");
}

#[tokio::test]
async fn substitute_model_fails() {
    verifier();
    let target = repo_root().join("target");
    let path = zg_engine::substitute::make(
        &chat_model_path(),
        &target,
        zg_engine::substitute::Kind::Q4_0,
    )
    .expect("requantized substitute");
    let mut config = zg_engine::EngineConfig::new(&path);
    config.parallel = 1;
    config.ctx = 512;
    config.threads = 1;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let cheater = zg_engine::spawn(config, listener)
        .await
        .expect("substitute loads");
    let base = format!("http://{}", cheater.addr());
    for body in [
        chat_body("Write a short poem about the sea.", 32),
        sampled("Describe a forest at night.", 32),
    ] {
        let (answer, proof) = answer_with_proof(&base, &body).await;
        let verdict = check(&body, &answer, &proof);
        assert!(!verdict.pass && verdict.mismatch.is_none(), "{verdict:?}");
    }
    // Nor does the substitute pass for the registered model.
    assert!(matches!(
        Verifier::open(&path, REGISTERED, 1),
        Err(VerifyError::WrongModel { .. })
    ));
}

#[tokio::test]
async fn bad_verifier_input_is_a_clear_error() {
    let v = verifier();
    let missing = Verifier::open(&repo_root().join("models/none.gguf"), REGISTERED, 1);
    assert!(matches!(missing, Err(VerifyError::Model(_))));
    let wrong_digest = Verifier::open(&chat_model_path(), &"00".repeat(32), 1);
    let err = wrong_digest.err().expect("refused");
    assert!(err.to_string().contains(REGISTERED), "{err}");

    let body = chat_body("Say hello.", 8);
    let (answer, proof) = answer_with_proof(&engine().url, &body).await;
    let prompt = v.prompt_tokens(messages(&body)).expect("prompt");
    let claim = Claim {
        prompt: &prompt,
        answer: &answer,
        stop: &[],
    };
    for cut in [0, 10, proof.len() - 1] {
        let err = v.verify(&claim, &proof[..cut]).expect_err("truncated");
        assert!(matches!(err, VerifyError::Proof(_)), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
    let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
    assert!(matches!(
        v.verify(&claim, &garbage),
        Err(VerifyError::Proof(ProofError::Version(_)))
    ));
    let mut outside = Proof::decode(&proof).expect("decodes");
    outside.tokens[0] = 60_000;
    let err = v.verify(&claim, &outside.encode()).expect_err("bad token");
    assert!(matches!(err, VerifyError::Token { .. }), "{err}");
    let res = client()
        .get(format!("{}/v1/proofs/chatcmpl-unknown", engine().url))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 404);
}

#[tokio::test]
async fn one_session_checks_many_answers_as_fresh_checks_do() {
    // A session keeps its context and the prefix the answers share (the
    // system prompt): a forged answer between honest ones changes nothing.
    let bodies = [
        chat_body("Name a river in Europe.", 24),
        sampled("Name a mountain in Asia.", 24),
    ];
    let mut checks = Vec::new();
    for body in &bodies {
        let (answer, proof) = answer_with_proof(&engine().url, body).await;
        let mut forged = Proof::decode(&proof).expect("decodes");
        forged.tokens[3] = if forged.tokens[3] == 1000 { 1001 } else { 1000 };
        let (forged_text, _) = verifier().spell(&forged.tokens, &[]);
        checks.push((body, answer, proof, true));
        checks.push((body, forged_text, forged.encode(), false));
    }
    checks.push(checks[0].clone());
    let mut session = verifier().session();
    for (body, answer, proof, honest) in &checks {
        let prompt = verifier().prompt_tokens(messages(body)).expect("prompt");
        let claim = Claim {
            prompt: &prompt,
            answer,
            stop: &[],
        };
        let kept = session.verify(&claim, proof).expect("readable");
        let fresh = check(body, answer, proof);
        assert_eq!(kept.pass, *honest, "{kept:?}");
        assert_eq!(fresh.pass, *honest, "{fresh:?}");
        assert!(
            (kept.distance - fresh.distance).abs() < 0.2,
            "session {kept:?} against fresh {fresh:?}"
        );
    }
}
