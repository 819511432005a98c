//! The OpenAI request fields beyond plain chat, on the real SmolLM2 model:
//! tools, structured outputs, logprobs, n, sampling extras, the legacy
//! completions endpoint, and refusal of fields the engine cannot honour.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};

fn weather_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 24},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
                "additionalProperties": false,
            },
        },
    })
}

fn time_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string", "maxLength": 24}},
                "required": ["timezone"],
            },
        },
    })
}

fn weather_request() -> Value {
    let mut body = chat_body("What is the weather in Paris right now?", 60);
    body["tools"] = json!([weather_tool(), time_tool()]);
    body["tool_choice"] = json!("required");
    body["parallel_tool_calls"] = json!(false);
    body
}

/// Checks one call to get_weather against its schema.
fn assert_weather_call(call: &Value) {
    assert_eq!(call["type"], "function", "{call}");
    assert!(call["id"].as_str().is_some_and(|id| id.starts_with("call")));
    assert_eq!(call["function"]["name"], "get_weather", "{call}");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {call}"));
    let fields = args.as_object().expect("arguments object");
    assert_eq!(fields.len(), 2, "{args}");
    assert!(
        args["city"]
            .as_str()
            .is_some_and(|c| c.chars().count() <= 24),
        "{args}"
    );
    assert!(
        ["celsius", "fahrenheit"].contains(&args["unit"].as_str().unwrap_or("")),
        "{args}"
    );
}

#[tokio::test]
async fn required_tool_call_always_parses_and_fits_the_schema() {
    // Three sampled choices: however the model draws, the call is valid.
    // Parallel calls allowed: a list that max_tokens cuts keeps its complete
    // calls.
    let mut body = weather_request();
    body["tools"] = json!([weather_tool()]);
    body.as_object_mut().unwrap().remove("parallel_tool_calls");
    body["temperature"] = json!(1.0);
    body["seed"] = json!(7);
    body["n"] = json!(3);
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let choices = answer["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for choice in choices {
        assert_eq!(choice["finish_reason"], "tool_calls", "{choice}");
        assert!(choice["message"]["content"].is_null(), "{choice}");
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert!(!calls.is_empty(), "{choice}");
        calls.iter().for_each(assert_weather_call);
    }
}

#[tokio::test]
async fn auto_tool_choice_answers_a_valid_call_or_plain_text() {
    // One earlier call in the history shows the model the format; sampled,
    // some choices call again and some answer in text.
    let mut body = chat_body("What is the weather in Paris?", 60);
    let messages = body["messages"].as_array_mut().unwrap();
    messages.extend([
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
            "type": "function", "function": {"name": "get_weather",
            "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "21 C, sunny"}),
        json!({"role": "assistant", "content": "It is 21 C and sunny in Paris."}),
        json!({"role": "user", "content": "What is the weather in London?"}),
    ]);
    body["tools"] = json!([weather_tool()]);
    body["temperature"] = json!(0.7);
    body["seed"] = json!(5);
    body["n"] = json!(3);
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let mut calls = 0;
    for choice in answer["choices"].as_array().unwrap() {
        if choice["finish_reason"] == "tool_calls" {
            calls += 1;
            assert!(choice["message"]["content"].is_null(), "{choice}");
            assert_weather_call(&choice["message"]["tool_calls"][0]);
        } else {
            // Once the model opens a call, the grammar makes it a valid one:
            // no half call comes back as text.
            let text = choice["message"]["content"].as_str().unwrap();
            assert!(!text.contains("<tool_call>"), "{choice}");
        }
    }
    assert!(calls > 0, "no choice called the tool: {answer}");
}

#[tokio::test]
async fn named_tool_choice_calls_that_function() {
    let mut body = weather_request();
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_time", "{call}");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap())
        .expect("arguments JSON");
    assert!(args["timezone"].is_string(), "{args}");
}

#[tokio::test]
async fn streamed_tool_call_deltas_reassemble_to_the_plain_answer() {
    let body = weather_request();
    let (status, plain) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{plain}");
    let (content, finish, _, payloads) = stream(body).await;
    assert_eq!(content, "");
    assert_eq!(finish, "tool_calls");
    // Reassemble as a client does: by index, the name once, arguments appended.
    let mut calls: Vec<Value> = Vec::new();
    for payload in payloads.iter().filter(|p| *p != "[DONE]") {
        let chunk: Value = serde_json::from_str(payload).unwrap();
        let Some(deltas) = chunk["choices"][0]["delta"]["tool_calls"].as_array() else {
            continue;
        };
        for delta in deltas {
            let i = delta["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                assert!(
                    delta["id"].is_string(),
                    "a new call starts with its id: {delta}"
                );
                calls.push(json!({
                    "id": delta["id"], "type": delta["type"],
                    "function": {"name": delta["function"]["name"], "arguments": ""},
                }));
            }
            let args = delta["function"]["arguments"].as_str().unwrap_or("");
            let so_far = calls[i]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_string();
            calls[i]["function"]["arguments"] = json!(so_far + args);
        }
    }
    let expected = plain["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap();
    assert_eq!(calls.len(), expected.len());
    for (got, want) in calls.iter().zip(expected) {
        assert_weather_call(got);
        assert_eq!(got["function"], want["function"]);
    }
}

#[tokio::test]
async fn tool_history_is_read_and_tool_choice_none_answers_in_text() {
    let mut body = chat_body("What is the weather in Paris?", 24);
    body["tools"] = json!([weather_tool()]);
    body["tool_choice"] = json!("none");
    let messages = body["messages"].as_array_mut().unwrap();
    messages.push(json!({
        "role": "assistant", "content": null,
        "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}}],
    }));
    messages
        .push(json!({"role": "tool", "tool_call_id": "call_1", "content": "21 degrees, sunny"}));
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["choices"][0]["message"].get("tool_calls").is_none());
    assert_ne!(answer["choices"][0]["finish_reason"], "tool_calls");
    // The call and its result are part of the prompt.
    let bare = chat_body("What is the weather in Paris?", 24);
    let (_, without) = post("/v1/chat/completions", &bare).await;
    assert!(
        answer["usage"]["prompt_tokens"].as_u64().unwrap()
            > without["usage"]["prompt_tokens"].as_u64().unwrap() + 20
    );
}

#[tokio::test]
async fn json_schema_answers_always_parse_and_satisfy_the_schema() {
    let mut body = chat_body("Describe a person as JSON.", 60);
    body["response_format"] = json!({
        "type": "json_schema",
        "json_schema": {"name": "person", "strict": true, "schema": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 16},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "pet": {"type": "string", "enum": ["cat", "dog", "none"]},
            },
            "required": ["name", "age", "pet"],
            "additionalProperties": false,
        }},
    });
    body["temperature"] = json!(1.0);
    body["seed"] = json!(3);
    body["n"] = json!(3);
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    for choice in answer["choices"].as_array().unwrap() {
        assert_eq!(choice["finish_reason"], "stop", "{choice}");
        let text = choice["message"]["content"].as_str().unwrap();
        let person: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
        assert_eq!(person.as_object().unwrap().len(), 3, "{person}");
        assert!(
            person["name"]
                .as_str()
                .is_some_and(|n| n.chars().count() <= 16)
        );
        assert!(person["age"].as_u64().is_some_and(|a| a <= 120), "{person}");
        assert!(["cat", "dog", "none"].contains(&person["pet"].as_str().unwrap_or("")));
    }
}

#[tokio::test]
async fn json_object_answer_is_an_object() {
    let mut body = chat_body(
        "Give the capital of France as JSON with one key, capital.",
        60,
    );
    body["response_format"] = json!({"type": "json_object"});
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let text = content(&answer);
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    assert!(value.is_object(), "{value}");
}

#[tokio::test]
async fn logprobs_have_openai_shape_plain_and_streamed() {
    let mut body = chat_body("Name a fruit.", 6);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let entries = answer["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
    assert_eq!(entries.len(), 6);
    let mut text = String::new();
    for entry in entries {
        let lp = entry["logprob"].as_f64().unwrap();
        assert!(lp <= 0.0, "{entry}");
        let token = entry["token"].as_str().unwrap();
        let bytes: Vec<u8> = serde_json::from_value(entry["bytes"].clone()).unwrap();
        assert_eq!(String::from_utf8_lossy(&bytes), token);
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy: the token is the most likely one, and the list is sorted.
        assert_eq!(top[0]["token"], token, "{entry}");
        assert!((top[0]["logprob"].as_f64().unwrap() - lp).abs() < 1e-6);
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
        assert!(top[1]["logprob"].as_f64() >= top[2]["logprob"].as_f64());
        text.push_str(token);
    }
    assert_eq!(text, content(&answer));
    // Streamed: the same entries, spread over the chunks.
    let (_, _, _, payloads) = stream(body.clone()).await;
    let streamed: Vec<Value> = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .filter_map(|p| {
            let chunk: Value = serde_json::from_str(p).unwrap();
            chunk["choices"][0]["logprobs"]["content"]
                .as_array()
                .cloned()
        })
        .flatten()
        .collect();
    assert_eq!(&streamed, entries);
    // Without logprobs the field is null.
    body["logprobs"] = json!(false);
    body.as_object_mut().unwrap().remove("top_logprobs");
    let (_, plain) = post("/v1/chat/completions", &body).await;
    assert!(plain["choices"][0]["logprobs"].is_null());
}

#[tokio::test]
async fn n_choices_are_separate_sequences_and_usage_sums() {
    let mut one = chat_body("Tell me a short fact.", 8);
    one["temperature"] = json!(0.9);
    one["seed"] = json!(11);
    let (_, single) = post("/v1/chat/completions", &one).await;
    let mut body = one.clone();
    body["n"] = json!(2);
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let choices = answer["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[1]["index"], 1);
    // Choice 0 draws with the request's seed: it is the single answer.
    assert_eq!(choices[0]["message"], single["choices"][0]["message"]);
    let completion: u64 = choices
        .iter()
        .map(|c| {
            let text = c["message"]["content"].as_str().unwrap();
            let tokens = engine().engine.count_tokens(text) as u64;
            // A choice that ended by itself also generated its end token.
            tokens + u64::from(c["finish_reason"] == "stop")
        })
        .sum();
    assert_eq!(answer["usage"]["completion_tokens"], completion);
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        single["usage"]["prompt_tokens"]
    );
    // Streamed, both choices arrive, each with its own finish.
    let (_, _, usage, payloads) = stream({
        let mut b = body.clone();
        b["stream_options"] = json!({"include_usage": true});
        b
    })
    .await;
    let finishes = payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .filter_map(|p| {
            let chunk: Value = serde_json::from_str(p).unwrap();
            let choice = chunk["choices"].get(0)?;
            choice["finish_reason"]
                .as_str()
                .map(|_| choice["index"].as_u64())
        })
        .collect::<Vec<_>>();
    assert_eq!(finishes.len(), 2, "{finishes:?}");
    assert_eq!(usage.as_ref().map(counts), Some(counts(&answer["usage"])));
}

#[tokio::test]
async fn sampling_extras_are_honoured() {
    let body = chat_body("Repeat the word dog ten times.", 24);
    let (_, greedy) = post("/v1/chat/completions", &body).await;
    // top_k 1 and min_p 1 leave only the most likely token: greedy at any
    // temperature.
    for (field, value) in [("top_k", json!(1)), ("min_p", json!(1.0))] {
        let mut narrowed = body.clone();
        narrowed["temperature"] = json!(1.5);
        narrowed[field] = value;
        let (status, answer) = post("/v1/chat/completions", &narrowed).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(content(&answer), content(&greedy), "{field}");
    }
    // Penalties change a repetitive greedy answer.
    for (field, value) in [
        ("frequency_penalty", json!(2.0)),
        ("presence_penalty", json!(2.0)),
        ("repeat_penalty", json!(2.0)),
    ] {
        let mut penalized = body.clone();
        penalized[field] = value;
        let (status, answer) = post("/v1/chat/completions", &penalized).await;
        assert_eq!(status, 200, "{answer}");
        assert_ne!(content(&answer), content(&greedy), "{field}");
    }
    // max_completion_tokens limits; beside max_tokens the smaller holds.
    for (max_completion_tokens, max_tokens, expected) in [(3, 24, 3), (30, 4, 4)] {
        let mut limited = body.clone();
        limited["max_completion_tokens"] = json!(max_completion_tokens);
        limited["max_tokens"] = json!(max_tokens);
        let (_, answer) = post("/v1/chat/completions", &limited).await;
        assert_eq!(answer["usage"]["completion_tokens"], expected);
    }
}

#[tokio::test]
async fn completions_plain_and_streamed() {
    let body = json!({
        "model": "SmolLM2-135M-Instruct.Q4_1",
        "prompt": "The capital of France is",
        "max_tokens": 8,
        "temperature": 0,
        "logprobs": 2,
    });
    let (status, plain) = post("/v1/completions", &body).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain["object"], "text_completion");
    let text = plain["choices"][0]["text"].as_str().unwrap();
    assert!(text.contains("Paris"), "{text:?}");
    let prompt_tokens = engine().engine.count_tokens("The capital of France is") as u64;
    assert_eq!(plain["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(plain["usage"]["completion_tokens"], 8);
    let logprobs = &plain["choices"][0]["logprobs"];
    assert_eq!(logprobs["tokens"].as_array().unwrap().len(), 8);
    assert_eq!(logprobs["text_offset"][0], 0);
    assert_eq!(logprobs["top_logprobs"][0].as_object().unwrap().len(), 2);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let res = client()
        .post(format!("{}/v1/completions", engine().url))
        .json(&streamed)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    let payloads = sse_data(&res.text().await.expect("body"));
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let mut joined = String::new();
    let mut usage = Value::Null;
    let mut finish = Value::Null;
    for payload in payloads.iter().filter(|p| *p != "[DONE]") {
        let chunk: Value = serde_json::from_str(payload).unwrap();
        assert_eq!(chunk["object"], "text_completion");
        if let Some(choice) = chunk["choices"].get(0) {
            joined.push_str(choice["text"].as_str().unwrap());
            if !choice["finish_reason"].is_null() {
                finish = choice["finish_reason"].clone();
            }
        } else {
            usage = chunk["usage"].clone();
        }
    }
    assert_eq!(joined, text);
    assert_eq!(finish, "length");
    assert_eq!(counts(&usage), counts(&plain["usage"]));
}

#[tokio::test]
async fn fields_the_engine_cannot_honour_are_a_400_naming_them() {
    for (path, field, value) in [
        ("/v1/chat/completions", "logit_bias", json!({"50256": -100})),
        ("/v1/chat/completions", "functions", json!([])),
        ("/v1/chat/completions", "made_up", json!(1)),
        ("/v1/completions", "best_of", json!(2)),
        ("/v1/completions", "suffix", json!("x")),
        ("/v1/embeddings", "dimensions", json!(8)),
    ] {
        let mut body = match path {
            "/v1/completions" => json!({"prompt": "Hello", "max_tokens": 2}),
            "/v1/embeddings" => json!({"input": "Hello"}),
            _ => chat_body("hi", 2),
        };
        body[field] = value;
        let (status, answer) = post(path, &body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["error"]["param"], field, "{answer}");
        assert_eq!(answer["error"]["type"], "invalid_request_error");
        assert!(answer["error"]["message"].as_str().unwrap().contains(field));
    }
    // A field sent as null asks for nothing.
    let mut body = chat_body("hi", 2);
    body["logit_bias"] = Value::Null;
    assert_eq!(post("/v1/chat/completions", &body).await.0, 200);
    // OpenAI's bookkeeping fields that clients send by default change nothing.
    let mut body = chat_body("hi", 2);
    for (field, value) in [
        ("store", json!(false)),
        ("metadata", json!({"app": "x"})),
        ("service_tier", json!("auto")),
        ("user", json!("u1")),
        ("safety_identifier", json!("h1")),
        ("prompt_cache_key", json!("k1")),
    ] {
        body[field] = value;
    }
    let (status, answer) = post("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    // Values the engine can't honour name their field too.
    for (field, value) in [
        ("tool_choice", json!("required")),
        ("top_logprobs", json!(21)),
        ("response_format", json!({"type": "xml"})),
        ("n", json!(99)),
        ("store", json!(true)),
        ("service_tier", json!("priority")),
    ] {
        let mut body = chat_body("hi", 2);
        body["logprobs"] = json!(true);
        body[field] = value;
        let (status, answer) = post("/v1/chat/completions", &body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["error"]["param"], field, "{answer}");
    }
}
