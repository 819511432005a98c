//! OpenAI's Responses API (`POST /v1/responses`), the one the Agents SDK and
//! newer clients speak, served by translation: the request becomes a chat
//! completion (instructions, input items, function tools, text format), is
//! paid and checked like any chat, and the answer comes back as a response
//! object, or as the Responses stream's typed events. The receipt headers
//! are the chat answer's: they prove what was charged for the tokens. The
//! gateway keeps no responses (`store` is always false), so a conversation
//! travels whole in `input`, not by `previous_response_id`.

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use zg_client::pay::BodyStream;
use zg_core::now_unix;

mod stream;
use stream::Events;

/// The largest chat answer read whole to be translated.
const MAX_ANSWER: usize = 64 << 20;

/// Request fields passed to the chat completion unchanged.
const PASSED: [&str; 9] = [
    "model",
    "top_logprobs",
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "seed",
    "provider",
    "models",
    "zg",
];

/// Request fields a client may send that change nothing here.
const IGNORED: [&str; 7] = [
    "store",
    "metadata",
    "user",
    "truncation",
    "service_tier",
    "reasoning",
    "prompt_cache_key",
];

/// A Responses request as a chat completion request, and what the answer
/// echoes of the request.
pub(crate) struct Translated {
    pub chat: Bytes,
    model: Value,
    echo: Map<String, Value>,
}

/// Translates a Responses request body, or says what in it cannot be served.
pub(crate) fn to_chat(body: &[u8]) -> Result<Translated, String> {
    let request: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a JSON object: {e}"))?;
    let mut chat = Map::new();
    let mut messages = Vec::new();
    for (key, value) in &request {
        match key.as_str() {
            k if PASSED.contains(&k) => {
                chat.insert(key.clone(), value.clone());
            }
            k if IGNORED.contains(&k) => {}
            "input" => messages.extend(input(value)?),
            "instructions" => {
                if let Some(text) = value.as_str() {
                    messages.insert(0, json!({ "role": "system", "content": text }));
                } else if !value.is_null() {
                    return Err("\"instructions\" must be a string".into());
                }
            }
            // Of what `include` can ask for, only the text's logprobs exist
            // here: no reasoning, search or image items are ever produced.
            "include" => {
                let asked = value.as_array().ok_or("\"include\" must be a list")?;
                if asked.iter().any(|v| v == "message.output_text.logprobs") {
                    chat.insert("logprobs".into(), Value::Bool(true));
                }
            }
            "max_output_tokens" => {
                chat.insert("max_tokens".into(), value.clone());
            }
            "stream" => {
                chat.insert("stream".into(), value.clone());
                if value.as_bool() == Some(true) {
                    chat.insert("stream_options".into(), json!({ "include_usage": true }));
                }
            }
            "tools" => {
                chat.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                chat.insert("tool_choice".into(), tool_choice(value)?);
            }
            "text" => {
                if let Some(format) = response_format(value)? {
                    chat.insert("response_format".into(), format);
                }
            }
            "previous_response_id" if value.is_null() => {}
            "previous_response_id" | "conversation" => {
                return Err(format!(
                    "\"{key}\" is not supported: this gateway keeps no responses (store is false), send the whole conversation in \"input\""
                ));
            }
            "background" if value.as_bool() != Some(true) => {}
            other => {
                return Err(format!(
                    "\"{other}\" is not supported by this gateway's Responses API"
                ));
            }
        }
    }
    if messages.is_empty() {
        return Err("\"input\" is missing or empty".into());
    }
    chat.insert("messages".into(), Value::Array(messages));
    let model = request.get("model").cloned().unwrap_or(Value::Null);
    let echo = request
        .into_iter()
        .filter(|(k, _)| ECHOED.contains(&k.as_str()))
        .collect();
    let chat = serde_json::to_vec(&chat).map_err(|e| e.to_string())?;
    Ok(Translated {
        chat: Bytes::from(chat),
        model,
        echo,
    })
}

/// Request fields the response object shows back.
const ECHOED: [&str; 10] = [
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "user",
];

/// `input`: a string (one user message) or a list of items.
fn input(value: &Value) -> Result<Vec<Value>, String> {
    if let Some(text) = value.as_str() {
        return Ok(vec![json!({ "role": "user", "content": text })]);
    }
    let items = value
        .as_array()
        .ok_or("\"input\" must be a string or a list of items")?;
    let mut messages: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" => messages.push(message(item).map_err(|e| format!("input[{i}]: {e}"))?),
            "function_call" => {
                let call = json!({
                    "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": item.get("name").cloned().unwrap_or(Value::Null),
                        "arguments": item.get("arguments").cloned().unwrap_or_else(|| json!("{}")),
                    },
                });
                // Calls in a row are one assistant turn.
                match messages.last_mut() {
                    Some(last) if last.get("tool_calls").is_some() && last["content"].is_null() => {
                        if let Some(calls) = last["tool_calls"].as_array_mut() {
                            calls.push(call);
                        }
                    }
                    _ => messages.push(json!({
                        "role": "assistant", "content": null, "tool_calls": [call],
                    })),
                }
            }
            "function_call_output" => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
                    "content": output,
                }));
            }
            // A reasoning model's own notes: nothing here produces or reads them.
            "reasoning" => {}
            other => {
                return Err(format!(
                    "input[{i}]: items of type \"{other}\" are not supported (message, function_call and function_call_output are)"
                ));
            }
        }
    }
    Ok(messages)
}

/// A message item: its role, and its content as text.
fn message(item: &Value) -> Result<Value, String> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some("developer" | "system") => "system",
        Some(role @ ("user" | "assistant")) => role,
        other => {
            return Err(format!(
                "a message's role must be user, assistant, system or developer, not {other:?}"
            ));
        }
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("input_text" | "output_text" | "text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    // Refusals are the assistant's words too.
                    Some("refusal") => {
                        text.push_str(part.get("refusal").and_then(Value::as_str).unwrap_or(""));
                    }
                    other => {
                        return Err(format!(
                            "content parts of type {other:?} are not supported (the models here read text)"
                        ));
                    }
                }
            }
            text
        }
        _ => return Err("a message needs \"content\": a string or a list of parts".into()),
    };
    Ok(json!({ "role": role, "content": content }))
}

/// Function tools, from the Responses shape to the chat shape.
fn tools(value: &Value) -> Result<Value, String> {
    let tools = value.as_array().ok_or("\"tools\" must be a list")?;
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let mut function = Map::new();
                for key in ["name", "description", "parameters", "strict"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        function.insert(key.into(), v.clone());
                    }
                }
                out.push(json!({ "type": "function", "function": function }));
            }
            other => {
                return Err(format!(
                    "tools of type {other:?} are not supported: only \"function\" tools are, which the client runs"
                ));
            }
        }
    }
    Ok(Value::Array(out))
}

fn tool_choice(value: &Value) -> Result<Value, String> {
    match value {
        Value::String(_) => Ok(value.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            Ok(json!({ "type": "function", "function": { "name": o.get("name").cloned().unwrap_or(Value::Null) } }))
        }
        _ => Err("\"tool_choice\" must be auto, none, required or {\"type\": \"function\", \"name\": ...}".into()),
    }
}

/// `text.format` as the chat's `response_format` (None: plain text).
fn response_format(text: &Value) -> Result<Option<Value>, String> {
    let Some(format) = text.get("format").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({ "type": "json_object" }))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(
                json!({ "type": "json_schema", "json_schema": schema }),
            ))
        }
        other => Err(format!(
            "text.format of type {other:?} is not supported (text, json_object, json_schema are)"
        )),
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// The chat answer `answer` as a Responses answer: errors pass as they
/// are (already in OpenAI's shape), a stream becomes the Responses events.
pub(crate) async fn from_chat(answer: Response, request: Translated) -> Response {
    if answer.status() != StatusCode::OK {
        return answer;
    }
    let streamed = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    let (mut parts, body) = answer.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if streamed {
        let (out, tx) = BodyStream::channel();
        let mut events = Events::new(request.model, request.echo);
        let mut chunks = body.into_data_stream();
        tokio::spawn(async move {
            while let Some(chunk) = chunks.next().await {
                let Ok(chunk) = chunk else { break };
                for event in events.push(&chunk) {
                    if tx.send(Ok(event)).await.is_err() {
                        // The client left: dropping the chat stream ends it too.
                        return;
                    }
                }
            }
            for event in events.finish() {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        });
        return Response::from_parts(parts, Body::from_stream(out));
    }
    let translated = axum::body::to_bytes(body, MAX_ANSWER)
        .await
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()))
        .map(|chat| response_object(&chat, request.echo));
    match translated {
        Ok(object) => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Response::from_parts(parts, Body::from(object.to_string()))
        }
        Err(e) => {
            tracing::warn!(error = %e, "a chat answer could not be read as JSON for the Responses API");
            let body = zg_core::ErrorBody::new(
                zg_core::ErrorCode::UpstreamFailed,
                format!("the provider's answer was paid but could not be read: {e}"),
                None,
            );
            let mut response = (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response();
            // The receipt of what was paid stays with the error.
            parts.headers.remove(header::CONTENT_TYPE);
            response.headers_mut().extend(parts.headers);
            response
        }
    }
}

/// An output item as it is being built.
enum Item {
    Message {
        id: String,
        text: String,
        /// Per token, when `include` asked for them.
        logprobs: Vec<Value>,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

impl Item {
    /// A function call item for a chat tool call, with `arguments` so far.
    fn call(call: &Value, arguments: String) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Item::Call {
            id: new_id("fc"),
            call_id: text(&call["id"]),
            name: text(&call["function"]["name"]),
            arguments,
        }
    }

    fn to_json(&self, status: &str) -> Value {
        match self {
            Item::Message { id, text, logprobs } => json!({
                "type": "message",
                "id": id,
                "status": status,
                "role": "assistant",
                "content": if status == "in_progress" && text.is_empty() {
                    json!([])
                } else {
                    json!([text_part(text, logprobs)])
                },
            }),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
            } => json!({
                "type": "function_call",
                "id": id,
                "call_id": call_id,
                "name": name,
                "arguments": arguments,
                "status": status,
            }),
        }
    }
}

fn text_part(text: &str, logprobs: &[Value]) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": logprobs })
}

/// A chat choice's per-token logprobs (`logprobs.content`), if any.
fn token_logprobs(choice: &Value) -> Vec<Value> {
    choice["logprobs"]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The response object around `output`.
fn envelope(
    id: &str,
    created_at: u64,
    model: &Value,
    echo: &Map<String, Value>,
    status: &str,
    output: Vec<Value>,
    usage: Value,
) -> Value {
    let mut object = json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "model": model,
        "output": output,
        "error": null,
        "incomplete_details": if status == "incomplete" {
            json!({ "reason": "max_output_tokens" })
        } else {
            Value::Null
        },
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "text": { "format": { "type": "text" } },
        "store": false,
        "usage": usage,
    });
    if let Some(map) = object.as_object_mut() {
        for (k, v) in echo {
            map.insert(k.clone(), v.clone());
        }
    }
    object
}

/// The chat's usage in the Responses shape; the gateway's own fields
/// (`cost`, `receipt_id`, ...) stay as they are.
fn usage(chat: &Value) -> Value {
    let Some(u) = chat.as_object() else {
        return Value::Null;
    };
    let mut out = Map::new();
    for (k, v) in u {
        match k.as_str() {
            "prompt_tokens" => out.insert("input_tokens".into(), v.clone()),
            "completion_tokens" => out.insert("output_tokens".into(), v.clone()),
            "prompt_tokens_details" => out.insert("input_tokens_details".into(), v.clone()),
            "completion_tokens_details" => out.insert("output_tokens_details".into(), v.clone()),
            _ => out.insert(k.clone(), v.clone()),
        };
    }
    out.entry("input_tokens_details")
        .or_insert_with(|| json!({ "cached_tokens": 0 }));
    out.entry("output_tokens_details")
        .or_insert_with(|| json!({ "reasoning_tokens": 0 }));
    Value::Object(out)
}

/// A whole chat completion as a response object.
fn response_object(chat: &Value, echo: Map<String, Value>) -> Value {
    let choice = &chat["choices"][0];
    let message = &choice["message"];
    let mut items = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        items.push(Item::Message {
            id: new_id("msg"),
            text: text.to_owned(),
            logprobs: token_logprobs(choice),
        });
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let arguments = call["function"]["arguments"].as_str().unwrap_or_default();
        items.push(Item::call(call, arguments.to_owned()));
    }
    let status = if choice["finish_reason"] == "length" {
        "incomplete"
    } else {
        "completed"
    };
    let output = items.iter().map(|i| i.to_json("completed")).collect();
    envelope(
        &new_id("resp"),
        chat["created"].as_u64().unwrap_or_else(now_unix),
        &chat["model"],
        &echo,
        status,
        output,
        usage(&chat["usage"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_of(request: Value) -> Result<Value, String> {
        let t = to_chat(request.to_string().as_bytes())?;
        Ok(serde_json::from_slice(&t.chat).expect("chat JSON"))
    }

    #[test]
    fn items_become_messages_and_calls_one_assistant_turn() {
        let chat = chat_of(json!({
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                { "role": "developer", "content": [{ "type": "input_text", "text": "Rules." }] },
                { "type": "message", "role": "user", "content": "Weather?" },
                { "type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"A\"}" },
                { "type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}" },
                { "type": "function_call_output", "call_id": "c1", "output": "sunny" },
                { "type": "reasoning", "summary": [] },
            ],
            "max_output_tokens": 7,
            "store": false,
            "tools": [{ "type": "function", "name": "w", "parameters": { "type": "object" } }],
            "tool_choice": { "type": "function", "name": "w" },
            "text": { "format": { "type": "json_schema", "name": "p", "schema": {}, "strict": true } },
        }))
        .unwrap();
        let roles: Vec<&str> = chat["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "system", "user", "assistant", "tool"]);
        assert_eq!(
            chat["messages"][3]["tool_calls"].as_array().unwrap().len(),
            2
        );
        assert_eq!(chat["messages"][4]["tool_call_id"], "c1");
        assert_eq!(chat["max_tokens"], 7);
        assert_eq!(chat["tools"][0]["function"]["name"], "w");
        assert_eq!(chat["tool_choice"]["function"]["name"], "w");
        assert_eq!(chat["response_format"]["json_schema"]["name"], "p");
    }

    #[test]
    fn logprobs_asked_by_include_come_back_on_the_text() {
        let chat = chat_of(json!({
            "model": "m", "input": "hi", "top_logprobs": 2,
            "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
        }))
        .unwrap();
        assert_eq!(
            (chat["logprobs"].clone(), chat["top_logprobs"].clone()),
            (json!(true), json!(2))
        );
        let lp = json!({ "token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [] });
        let answer = json!({
            "model": "m",
            "choices": [{ "message": { "content": "Hi" }, "finish_reason": "stop", "logprobs": { "content": [lp] } }],
            "usage": { "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2 },
        });
        let object = response_object(&answer, Map::new());
        assert_eq!(object["output"][0]["content"][0]["logprobs"], json!([lp]));
        assert_eq!(object["status"], "completed");
    }

    #[test]
    fn what_cannot_be_served_is_refused_by_name() {
        for (request, named) in [
            (
                json!({ "model": "m", "input": "hi", "previous_response_id": "resp_1" }),
                "previous_response_id",
            ),
            (
                json!({ "model": "m", "input": "hi", "tools": [{ "type": "web_search" }] }),
                "web_search",
            ),
            (
                json!({ "model": "m", "input": [{ "type": "computer_call" }] }),
                "computer_call",
            ),
            (
                json!({ "model": "m", "input": [{ "role": "user", "content": [{ "type": "input_image" }] }] }),
                "input_image",
            ),
            (
                json!({ "model": "m", "input": "hi", "frobnicate": 1 }),
                "frobnicate",
            ),
            (json!({ "model": "m" }), "input"),
            (json!({ "model": "m", "input": 3 }), "input"),
        ] {
            let e = chat_of(request).unwrap_err();
            assert!(e.contains(named), "{e}");
        }
        assert!(to_chat(b"[1]").is_err());
    }
}
