//! Prompt-prefix KV reuse on the real SmolLM2 model: a second turn reads
//! only what the first did not leave in the KV cache, reports that as
//! `usage.prompt_tokens_details.cached_tokens`, and answers exactly as
//! without reuse (`cache_prompt: false`), alone, streamed, with `n` and
//! with two conversations at once.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};

/// A greedy first turn under a system prompt of its own, so no other test
/// leaves a long prefix of it in a slot.
fn first_turn(topic: &str) -> Value {
    json!({
        "messages": [
            {"role": "system", "content": format!(
                "You are a patient tutor of {topic}. You answer in plain words, \
                 briefly, and you never invent facts you are unsure of."
            )},
            {"role": "user", "content": format!("What is the most important idea in {topic}?")},
        ],
        "temperature": 0,
        "max_tokens": 24,
    })
}

/// `first` followed by its `answer` and a new user message.
fn second_turn(first: &Value, answer: &str, user: &str) -> Value {
    let mut body = first.clone();
    let messages = body["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": answer}));
    messages.push(json!({"role": "user", "content": user}));
    body
}

fn cached(answer: &Value) -> u64 {
    answer["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no usage.prompt_tokens_details.cached_tokens: {answer}"))
}

fn uncached(body: &Value) -> Value {
    let mut body = body.clone();
    body["cache_prompt"] = json!(false);
    body
}

async fn chat(body: &Value) -> Value {
    let (status, answer) = post("/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The tokens the first turn left in its sequence: its prompt and every
/// answer token but the last (sampled, never decoded). The second turn's
/// prompt starts with all of them.
fn left_by(first: &Value) -> u64 {
    let usage = &first["usage"];
    usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap() - 1
}

#[tokio::test]
async fn second_turn_reuses_the_first_and_answers_as_without_reuse() {
    let first_body = first_turn("astronomy");
    let first = chat(&first_body).await;
    let body = second_turn(&first_body, &content(&first), "Give me one example.");

    let reused = chat(&body).await;
    assert_eq!(cached(&reused), left_by(&first), "{reused}");
    let prompt_tokens = reused["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(cached(&reused) < prompt_tokens, "{reused}");

    let fresh = chat(&uncached(&body)).await;
    assert_eq!(cached(&fresh), 0, "{fresh}");
    assert_eq!(content(&reused), content(&fresh));
    assert_eq!(counts(&reused["usage"]), counts(&fresh["usage"]));

    // Streamed, the usage chunk carries it too; the whole prompt is now
    // cached but its last token, which is read again for the logits.
    let mut streamed = body.clone();
    streamed["stream_options"] = json!({"include_usage": true});
    let (text, _, usage, _) = stream(streamed).await;
    assert_eq!(text, content(&fresh));
    let usage = usage.expect("usage chunk");
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"],
        prompt_tokens - 1
    );
    assert_eq!(counts(&usage), counts(&fresh["usage"]));
}

#[tokio::test]
async fn a_prompt_sharing_no_prefix_reports_none() {
    // Chat prompts fill the slots; a raw completion prompt shares no first
    // token with them, then all of it but the last with itself.
    chat(&first_turn("geology")).await;
    let body = json!({
        "prompt": "Zebras in the savanna graze at dawn, and",
        "max_tokens": 4,
        "temperature": 0,
    });
    let (status, first) = post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(cached(&first), 0, "{first}");
    let (_, again) = post("/v1/completions", &body).await;
    let prompt_tokens = again["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(cached(&again), prompt_tokens - 1, "{again}");
    assert_eq!(again["choices"][0]["text"], first["choices"][0]["text"]);
    let (_, off) = post("/v1/completions", &uncached(&body)).await;
    assert_eq!(cached(&off), 0, "{off}");
}

#[tokio::test]
async fn two_conversations_at_once_each_reuse_their_own_slot() {
    let firsts = [first_turn("botany"), first_turn("music theory")];
    let mut seconds = Vec::new();
    for body in &firsts {
        let first = chat(body).await;
        let next = second_turn(body, &content(&first), "Say more about that.");
        seconds.push((next, left_by(&first)));
    }
    let running: Vec<_> = seconds
        .iter()
        .map(|(body, _)| {
            let body = body.clone();
            tokio::spawn(async move { chat(&body).await })
        })
        .collect();
    let mut reused = Vec::new();
    for handle in running {
        reused.push(handle.await.expect("join"));
    }
    for ((body, left), answer) in seconds.iter().zip(&reused) {
        assert_eq!(cached(answer), *left, "{answer}");
        let fresh = chat(&uncached(body)).await;
        assert_eq!(content(answer), content(&fresh));
    }
}

#[tokio::test]
async fn n_choices_report_the_prefix_every_choice_reused() {
    let mut body = first_turn("chemistry");
    body["n"] = json!(2);
    body["max_tokens"] = json!(8);
    let first = chat(&body).await;
    // Each choice left the prompt in its own slot.
    let again = chat(&body).await;
    let prompt_tokens = again["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(cached(&first) < prompt_tokens - 1, "{first}");
    assert_eq!(cached(&again), prompt_tokens - 1, "{again}");
    assert_eq!(again["choices"], first["choices"]);
}
