//! The broker and proofs of model: an upstream without proofs registers as
//! `none` and its answers flow with a zero proofDigest; a proof method its
//! upstream does not produce, or one nobody knows, is refused at start; in
//! front of an upstream that names a proof per answer, each receipt binds
//! it and the broker serves it by request id (SQLite and PostgreSQL), plain
//! and streamed; an answer whose proof can't be fetched is free. (The real
//! engine's proofs, verified, are the client's tests.)

mod common;

use axum::{
    Json, Router,
    body::Body,
    extract::Path,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use bytes::Bytes;
use common::*;
use serde_json::{Value, json};
use zg_core::{B256, U256, keccak256, proof_digest, verifiability};
use zg_provider::StartError;

/// The broker's config in front of `upstream` with `method` registered.
fn with_verifiability(env: &Env, db: &str, upstream: &str, method: &str) -> String {
    let mut plan = env.plan(db, upstream, "m", B256::repeat_byte(1), "1");
    plan.services[0].verifiability = method.into();
    plan.toml()
}

fn proof_bytes(id: &str) -> Vec<u8> {
    format!("proof of {id}").into_bytes()
}

/// An upstream that, like the built-in engine with proofs on, lists
/// `zg-logits-v1` in its models and names a proof per answer
/// (`X-Engine-Proof-Id`), served at `/v1/proofs/{id}`. An answer to
/// "lost" names a proof it does not have.
async fn proving_upstream() -> String {
    async fn models() -> Json<Value> {
        Json(
            json!({ "object": "list", "data": [{ "id": "m", "proof_method": verifiability::ZG_LOGITS_V1 }] }),
        )
    }
    async fn chat(body: Bytes) -> axum::response::Response {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let text = v.pointer("/messages/0/content").and_then(Value::as_str);
        let id = if text == Some("lost") {
            "lost-1"
        } else {
            "c-1"
        };
        let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let body = if stream {
            Body::from(format!(
                "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                json!({ "choices": [{ "index": 0, "delta": { "content": "hi" } }] }),
                json!({ "choices": [], "usage": { "prompt_tokens": 3, "completion_tokens": 1 } })
            ))
        } else {
            Body::from(
                json!({
                    "choices": [{ "index": 0, "message": { "role": "assistant", "content": "hi" } }],
                    "usage": { "prompt_tokens": 3, "completion_tokens": 1 }
                })
                .to_string(),
            )
        };
        axum::response::Response::builder()
            .header(
                "content-type",
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .header(verifiability::PROOF_ID_HEADER, id)
            .body(body)
            .unwrap_or_default()
    }
    async fn proof(Path(id): Path<String>) -> axum::response::Response {
        if id == "c-1" {
            proof_bytes(&id).into_response()
        } else {
            (StatusCode::NOT_FOUND, "no such proof").into_response()
        }
    }
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/proofs/{id}", get(proof));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_proofs_registers_as_none_and_its_answers_flow() {
    let env = Env::start().await;
    let (broker, _dir) = env.scripted_broker("1").await;
    let listed = env
        .deployer
        .service(env.provider(), "chat")
        .await
        .expect("registry")
        .expect("listed");
    assert_eq!(listed.verifiability, verifiability::NONE);
    let (key, _) = env.user(2, U256::from(10u64).pow(U256::from(16u64))).await;
    let mut payer = Payer::new(key, &env, &broker.url());
    let a = payer
        .send("/v1/chat/completions", &chat_body("chat", "hi", 5))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let receipt = a.receipt.expect("receipt");
    check_receipt(&env, &receipt, a.digest, &a.body).await;
    assert_eq!(receipt.receipt.proof_digest, B256::ZERO);
    let id = a.request_id.expect("request id");
    let proof = payer
        .http
        .get(format!("{}/v1/proofs/{id}", broker.url()))
        .send()
        .await
        .expect("broker reachable");
    assert_eq!(proof.status(), 404);
    broker.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_method_the_upstream_does_not_produce_is_refused() {
    let env = Env::start().await;
    let upstream = format!("http://{}/v1", scripted_upstream().await);
    let (db, _dir) = sqlite_url();
    let text = with_verifiability(&env, &db, &upstream, verifiability::ZG_LOGITS_V1);
    let config = zg_provider::Config::parse(&text, "test", std::iter::empty()).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    match zg_provider::start(config, listener).await {
        Err(e @ StartError::Verifiability { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("\"chat\"") && text.contains("zg-logits-v1"),
                "{text}"
            );
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a proof method in front of an upstream without proofs was accepted"),
    }
    let listed = env
        .deployer
        .service(env.provider(), "chat")
        .await
        .expect("registry");
    assert!(listed.is_none(), "nothing was registered");

    // A method nobody knows is refused when the config is read.
    let text = with_verifiability(&env, &db, &upstream, "tee");
    let e = zg_provider::Config::parse(&text, "test", std::iter::empty())
        .expect_err("an unknown method is refused");
    let text = e.to_string();
    assert!(
        text.contains("\"chat\"") && text.contains("\"tee\""),
        "{text}"
    );
}

/// Plain and streamed answers of a proof service on `db`: each receipt
/// binds the proof the upstream named, the broker serves it by request id,
/// and an answer whose proof can't be fetched is delivered free.
async fn proofs_are_bound_kept_and_served(env: &Env, db: &str) {
    let upstream = proving_upstream().await;
    let text = with_verifiability(env, db, &upstream, verifiability::ZG_LOGITS_V1);
    let config = zg_provider::Config::parse(&text, "test", std::iter::empty()).expect("config");
    let broker = env.broker(config).await;
    let (key, _) = env.user(2, U256::from(10u64).pow(U256::from(16u64))).await;
    let mut payer = Payer::new(key, env, &broker.url());
    let http = reqwest::Client::new();
    let fetch = async |id: &str| {
        let r = http
            .get(format!("{}/v1/proofs/{id}", broker.url()))
            .send()
            .await
            .expect("broker reachable");
        (r.status().as_u16(), r.bytes().await.unwrap_or_default())
    };

    let a = payer
        .send("/v1/chat/completions", &chat_body("chat", "hi", 5))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let receipt = a.receipt.expect("receipt");
    assert_eq!(
        receipt.receipt.proof_digest,
        proof_digest(&proof_bytes("c-1"))
    );
    let id = a.request_id.clone().expect("request id");
    assert_eq!(fetch(&id).await, (200, Bytes::from(proof_bytes("c-1"))));
    payer.owed = receipt.receipt.owed;

    let stream = json!({ "model": "chat", "messages": [{ "role": "user", "content": "hi" }], "stream": true });
    let s = payer.send("/v1/chat/completions", &stream).await;
    assert_eq!(s.status, 200);
    let id = s.request_id.clone().expect("request id");
    let receipt = payer.receipt(&id).await;
    assert_eq!(receipt.receipt.response_digest, keccak256(&s.body));
    assert_eq!(
        receipt.receipt.proof_digest,
        proof_digest(&proof_bytes("c-1"))
    );
    assert_eq!(fetch(&id).await.0, 200);
    payer.owed = receipt.receipt.owed;

    // The proof is lost: the answer still comes, with no receipt, free.
    let owed = env_owed(&broker, &payer).await;
    let lost = payer
        .send("/v1/chat/completions", &chat_body("chat", "lost", 5))
        .await;
    assert_eq!(lost.status, 200);
    assert!(lost.receipt.is_none(), "no receipt without its proof");
    assert_eq!(fetch(lost.request_id.as_deref().expect("id")).await.0, 404);
    let mut lost_stream = stream.clone();
    lost_stream["messages"][0]["content"] = json!("lost");
    let s = payer.send("/v1/chat/completions", &lost_stream).await;
    assert!(String::from_utf8_lossy(&s.body).ends_with("data: [DONE]\n\n"));
    let receipt = payer
        .http
        .get(format!(
            "{}/v1/receipts/{}",
            broker.url(),
            s.request_id.expect("id")
        ))
        .send()
        .await
        .expect("broker reachable");
    assert_eq!(receipt.status(), 404, "a stream without its proof is free");
    assert_eq!(env_owed(&broker, &payer).await, owed, "nothing was charged");
    broker.shutdown().await.expect("shutdown");
}

/// What the broker says the payer owes.
async fn env_owed(broker: &zg_provider::Running, payer: &Payer) -> U256 {
    broker
        .broker()
        .tab(payer.key.address())
        .await
        .expect("store")
        .map_or(U256::ZERO, |t| t.owed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_are_bound_kept_and_served_on_sqlite() {
    let env = Env::start().await;
    let (db, _dir) = sqlite_url();
    proofs_are_bound_kept_and_served(&env, &db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_are_bound_kept_and_served_on_postgres() {
    let env = Env::start().await;
    let (db, name) = pg_url().await;
    proofs_are_bound_kept_and_served(&env, &db).await;
    drop_pg(&name).await;
}
