//! The real `openai` Python client (from .venv, `make venv`) talks to the
//! engine: plain and streamed chat, a forced tool call (plain and streamed),
//! a json_schema answer with logprobs and extra_body extras, embeddings, models.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn openai_python_client_chats_streams_and_embeds() {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make venv` first",
        python.display()
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let base_url = format!("{}/v1", engine().url);
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&base_url)
        .output()
        .await
        .expect("run python");
    assert!(
        output.status.success(),
        "openai client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).expect("script prints JSON");
    let plain = seen["plain"].as_str().expect("plain");
    assert!(plain.contains("Paris"), "{seen}");
    assert_eq!(seen["streamed"], seen["plain"]);
    assert_eq!(seen["stream_finish"], seen["plain_finish"]);
    assert_eq!(counts(&seen["stream_usage"]), counts(&seen["plain_usage"]));
    // The client reads the prompt cache's count; the stream repeats the
    // plain request, so it reuses all of its prompt but the last token.
    let prompt_tokens = seen["plain_usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(
        seen["stream_usage"]["prompt_tokens_details"]["cached_tokens"],
        prompt_tokens - 1,
        "{seen}"
    );
    assert!(seen["stream_chunks"].as_u64().unwrap() > 1, "{seen}");
    assert_eq!(seen["embedding_dims"], serde_json::json!([384, 384]));
    assert!((seen["embedding_first"].as_f64().unwrap() + 0.034477).abs() < 1e-4);
    assert_eq!(
        seen["models"],
        serde_json::json!(["SmolLM2-135M-Instruct.Q4_1", "all-MiniLM-L6-v2"])
    );
    assert_eq!(seen["tool_finish"], "tool_calls", "{seen}");
    assert_eq!(seen["tool_name"], "get_weather");
    assert!(seen["tool_arguments"]["city"].is_string(), "{seen}");
    assert_eq!(seen["tool_streamed_arguments"], seen["tool_arguments"]);
    let color = seen["structured"]["color"].as_str().unwrap_or_default();
    assert!(["red", "green", "blue"].contains(&color), "{seen}");
    // One entry per token, less the end-of-turn token.
    assert_eq!(
        seen["structured_logprobs"].as_u64().unwrap() + 1,
        seen["structured_tokens"].as_u64().unwrap(),
        "{seen}"
    );
}
