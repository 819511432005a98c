//! One engine per test binary, on the real models from `make model`,
//! serving on its own runtime so every `#[tokio::test]` can reach it.

#![allow(dead_code)]
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use zg_engine::{Engine, EngineConfig};

pub(crate) struct TestEngine {
    pub url: String,
    pub engine: Arc<Engine>,
}

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub(crate) fn chat_model_path() -> PathBuf {
    repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub(crate) fn embedding_model_path() -> PathBuf {
    repo_root().join("models/all-MiniLM-L6-v2")
}

/// Slots of the test engine; the context is small so over-long prompts are
/// cheap to make.
pub(crate) const SLOTS: u32 = 4;
pub(crate) const CTX: u32 = 2048;

/// The shared engine, started on first use.
pub(crate) fn engine() -> &'static TestEngine {
    static ENGINE: OnceLock<TestEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        for path in [
            chat_model_path(),
            embedding_model_path().join("model.safetensors"),
        ] {
            assert!(
                path.is_file(),
                "model file {} is missing: run `make model` first",
                path.display()
            );
        }
        let mut config =
            EngineConfig::new(chat_model_path()).with_embedding_model(embedding_model_path());
        config.parallel = SLOTS;
        config.ctx = CTX;
        // One thread: llama.cpp's threads spin-wait on each other, which
        // costs far more than it gains on a busy 2-core test machine.
        config.threads = 1;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("test runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let server = zg_engine::spawn(config, listener)
                    .await
                    .expect("engine starts on the real models");
                tx.send(TestEngine {
                    url: format!("http://{}", server.addr()),
                    engine: server.engine().clone(),
                })
                .expect("send");
                // Serve for the life of the test binary.
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("engine started")
    })
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs `body` to `path`, returns status and JSON.
pub(crate) async fn post(path: &str, body: &Value) -> (u16, Value) {
    let res = client()
        .post(format!("{}{path}", engine().url))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.expect("json body"))
}

pub(crate) fn chat_body(user: &str, max_tokens: u32) -> Value {
    json!({
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": user},
        ],
        "temperature": 0,
        "max_tokens": max_tokens,
    })
}

pub(crate) fn content(answer: &Value) -> String {
    answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

/// `usage` without `prompt_tokens_details`: how much of a prompt came from
/// the prompt cache depends on what ran before, so it may differ between two
/// runs of one request while the counts may not.
pub(crate) fn counts(usage: &Value) -> Value {
    let mut usage = usage.clone();
    if let Some(fields) = usage.as_object_mut() {
        fields.remove("prompt_tokens_details");
    }
    usage
}

/// The `data:` payloads of an SSE body.
pub(crate) fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|d| d.trim_start().to_string())
        .collect()
}

/// Streams `body` and returns the concatenated deltas, the finish reason,
/// the usage chunk (if any) and all payloads.
pub(crate) async fn stream(mut body: Value) -> (String, String, Option<Value>, Vec<String>) {
    body["stream"] = json!(true);
    let res = client()
        .post(format!("{}/v1/chat/completions", engine().url))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = res.text().await.expect("body");
    let payloads = sse_data(&text);
    let mut out = String::new();
    let mut finish = String::new();
    let mut usage = None;
    for payload in &payloads {
        if payload == "[DONE]" {
            continue;
        }
        let chunk: Value = serde_json::from_str(payload).expect("chunk is JSON");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        if let Some(choice) = chunk["choices"].get(0) {
            if let Some(piece) = choice["delta"]["content"].as_str() {
                out.push_str(piece);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = f.to_string();
            }
        }
        if chunk["usage"].is_object() {
            usage = Some(chunk["usage"].clone());
        }
    }
    (out, finish, usage, payloads)
}
