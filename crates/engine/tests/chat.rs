//! Chat completions on the real SmolLM2 model through HTTP.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn answer_is_nonempty_english() {
    let (status, answer) = post(
        "/v1/chat/completions",
        &chat_body("What is the capital of France?", 24),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let text = content(&answer);
    assert!(text.contains("Paris"), "unexpected answer: {text:?}");
    let letters = text.chars().filter(|c| c.is_ascii_alphabetic()).count();
    assert!(letters * 2 > text.len(), "not English prose: {text:?}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
}

#[tokio::test]
async fn usage_matches_the_tokenizer() {
    let (status, answer) = post(
        "/v1/chat/completions",
        &chat_body("Write a long story about a dragon.", 7),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // The prompt as SmolLM2's ChatML template lays it out, written by hand.
    let prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
                  <|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n\
                  <|im_start|>assistant\n";
    let expected_prompt = engine().engine.count_tokens(prompt) as u64;
    assert_eq!(answer["usage"]["prompt_tokens"], expected_prompt);
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(answer["usage"]["completion_tokens"], 7);
    assert_eq!(answer["usage"]["total_tokens"], expected_prompt + 7);
    // The seven tokens written read back as seven tokens.
    let text = content(&answer);
    assert_eq!(engine().engine.count_tokens(&text), 7, "{text:?}");
}

#[tokio::test]
async fn stream_pieces_concatenate_to_the_plain_answer() {
    let body = chat_body("Name three colors.", 40);
    let (status, plain) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    let mut with_usage = body.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let (streamed, finish, usage, payloads) = stream(with_usage).await;
    assert_eq!(streamed, content(&plain));
    assert_eq!(finish, plain["choices"][0]["finish_reason"]);
    assert_eq!(usage.as_ref().map(counts), Some(counts(&plain["usage"])));
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    // Without include_usage no chunk carries usage.
    let (again, _, usage, _) = stream(body).await;
    assert_eq!(again, streamed);
    assert!(usage.is_none());
}

#[tokio::test]
async fn greedy_repeats_exactly_alone_and_beside_other_requests() {
    let body = chat_body("Explain in two sentences why the sky is blue.", 32);
    let (_, first) = post("/v1/chat/completions", &body).await;
    let reference = content(&first);
    assert!(!reference.is_empty());
    let (_, second) = post("/v1/chat/completions", &body).await;
    assert_eq!(content(&second), reference);
    for round in 0..2 {
        // The same request while three sampled requests share the batch.
        let others = (0..3).map(|i| {
            let mut other = chat_body(&format!("Tell me a fact about the number {i}."), 32);
            other["temperature"] = json!(0.9);
            tokio::spawn(async move { post("/v1/chat/completions", &other).await })
        });
        let others: Vec<_> = others.collect();
        let (status, busy) = post("/v1/chat/completions", &body).await;
        assert_eq!(status, 200);
        assert_eq!(content(&busy), reference, "round {round}");
        for other in others {
            assert_eq!(other.await.expect("join").0, 200);
        }
    }
}

#[tokio::test]
async fn seeded_sampling_repeats() {
    let mut body = chat_body("Give me a name for a cat.", 16);
    body["temperature"] = json!(0.8);
    body["top_p"] = json!(0.9);
    body["seed"] = json!(1234);
    let (_, a) = post("/v1/chat/completions", &body).await;
    let (_, b) = post("/v1/chat/completions", &body).await;
    assert_eq!(content(&a), content(&b));
}

#[tokio::test]
async fn stop_sequences_stop() {
    let body = chat_body("Count from 1 to 10, separated by commas.", 30);
    let (_, free) = post("/v1/chat/completions", &body).await;
    let free_text = content(&free);
    let cut = free_text
        .find("5")
        .unwrap_or_else(|| panic!("expected a count: {free_text:?}"));
    let mut stopped = body.clone();
    stopped["stop"] = json!(["5", "never appears"]);
    let (status, answer) = post("/v1/chat/completions", &stopped).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(content(&answer), &free_text[..cut]);
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert!(
        answer["usage"]["completion_tokens"].as_u64() < free["usage"]["completion_tokens"].as_u64()
    );
    // A stop string streams the same way.
    let (streamed, finish, _, _) = stream(stopped).await;
    assert_eq!(streamed, &free_text[..cut]);
    assert_eq!(finish, "stop");
}

#[tokio::test]
async fn prompt_longer_than_the_context_is_a_400() {
    let long = "word ".repeat(CTX as usize);
    let (status, answer) = post("/v1/chat/completions", &chat_body(&long, 8)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "context_length_exceeded");
    assert_eq!(answer["error"]["type"], "invalid_request_error");
    assert_eq!(answer["error"]["param"], "messages");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens")
    );
}

#[tokio::test]
async fn a_client_that_disconnects_frees_its_slot() {
    let url = format!("{}/v1/chat/completions", engine().url);
    let mut open = Vec::new();
    for i in 0..SLOTS {
        let mut body = chat_body(&format!("Write a very long essay about topic {i}."), 400);
        body["stream"] = json!(true);
        let mut res = client().post(&url).json(&body).send().await.expect("send");
        // Wait until it generates.
        res.chunk().await.expect("first chunk");
        open.push(res);
    }
    drop(open);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let health: serde_json::Value = client()
            .get(format!("{}/health", engine().url))
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json");
        if health["busy_slots"] == 0 && health["waiting"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slots still busy after the clients left: {health}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
