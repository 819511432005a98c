//! Bad input gets OpenAI-shaped errors, never a panic; bad model files get
//! errors that name the file and `make model`.

mod common;

use common::*;
use serde_json::{Value, json};

fn assert_openai_error(status: u16, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_bodies_get_400_in_openai_shape() {
    let url = format!("{}/v1/chat/completions", engine().url);
    for raw in [
        "",
        "not json",
        "{",
        "[]",
        "{\"messages\": \"hi\"}",
        "{\"max_tokens\": 5}",
    ] {
        let res = client()
            .post(&url)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .expect("send");
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("error is JSON");
        assert_openai_error(status, &body, 400);
    }
    let ok = chat_body("hi", 4);
    let mut cases = Vec::new();
    for (field, value) in [
        ("temperature", json!(5)),
        ("temperature", json!("hot")),
        ("top_p", json!(0)),
        ("max_tokens", json!(0)),
        ("max_tokens", json!(-3)),
        ("n", json!(99)),
        ("stop", json!(["a", "b", "c", "d", "e"])),
        ("stop", json!(7)),
        ("messages", json!([])),
        ("messages", json!([{"role": "wizard", "content": "hi"}])),
        (
            "messages",
            json!([{"role": "user", "content": "nul\u{0}byte"}]),
        ),
        (
            "messages",
            json!([{"role": "user", "content": [{"type": "image_url"}]}]),
        ),
    ] {
        let mut body = ok.clone();
        body[field] = value;
        cases.push(body);
    }
    for body in cases {
        let (status, answer) = post("/v1/chat/completions", &body).await;
        assert_openai_error(status, &answer, 400);
    }
    for body in [
        json!({}),
        json!({"input": 5}),
        json!({"input": []}),
        json!({"input": "x", "encoding_format": "hex"}),
    ] {
        let (status, answer) = post("/v1/embeddings", &body).await;
        assert_openai_error(status, &answer, 400);
    }
}

#[tokio::test]
async fn unknown_route_is_a_404_in_openai_shape() {
    let res = client()
        .get(format!("{}/v1/nothing", engine().url))
        .send()
        .await
        .expect("send");
    let status = res.status().as_u16();
    assert_openai_error(status, &res.json().await.expect("json"), 404);
}

#[test]
fn missing_model_names_the_file_and_make_model() {
    let path = std::env::temp_dir().join("zg-engine-test-no-such-model.gguf");
    let err = zg_engine::Engine::load(&zg_engine::EngineConfig::new(&path))
        .err()
        .expect("a missing model fails");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("make model"), "{message}");
}

#[test]
fn corrupt_model_names_the_file_and_make_model() {
    let dir = std::env::temp_dir().join(format!("zg-engine-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::write(&path, b"GGUF but not really").unwrap();
    let err = zg_engine::Engine::load(&zg_engine::EngineConfig::new(&path))
        .err()
        .expect("a corrupt model fails");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("make model"), "{message}");
    assert!(message.contains("sha256"), "{message}");
    // An unknown file that llama.cpp cannot read fails the same way.
    let other = dir.join("other.gguf");
    std::fs::write(&other, b"not a model").unwrap();
    let message = zg_engine::Engine::load(&zg_engine::EngineConfig::new(&other))
        .err()
        .expect("garbage fails")
        .to_string();
    assert!(
        message.contains("other.gguf") && message.contains("make model"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
