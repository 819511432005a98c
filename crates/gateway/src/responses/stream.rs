//! The Responses stream's typed events, built from the chat stream's chunks
//! as they come: each output item added, its text or arguments in deltas,
//! then done, then the response completed (or incomplete, or failed when the
//! chat stream broke off).

use bytes::Bytes;
use serde_json::{Map, Value, json};
use zg_core::now_unix;

use super::{Item, envelope, new_id, text_part, token_logprobs, usage};

/// The Responses stream of one answer.
pub(super) struct Events {
    id: String,
    created_at: u64,
    model: Value,
    echo: Map<String, Value>,
    /// Bytes of a chat event not ended yet.
    pending: Vec<u8>,
    sequence: u64,
    started: bool,
    items: Vec<Item>,
    /// Per chat tool call index, its item's place in `items`.
    calls: Vec<(u64, usize)>,
    finish: Option<String>,
    usage: Value,
    done: bool,
}

impl Events {
    pub(super) fn new(model: Value, echo: Map<String, Value>) -> Self {
        Self {
            id: new_id("resp"),
            created_at: now_unix(),
            model,
            echo,
            pending: Vec::new(),
            sequence: 0,
            started: false,
            items: Vec::new(),
            calls: Vec::new(),
            finish: None,
            usage: Value::Null,
            done: false,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value) -> Bytes {
        if let Some(map) = data.as_object_mut() {
            map.insert("type".into(), kind.into());
            map.insert("sequence_number".into(), self.sequence.into());
        }
        self.sequence += 1;
        Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
    }

    fn envelope(&self, status: &str) -> Value {
        let output = self
            .items
            .iter()
            .map(|i| {
                i.to_json(if status == "in_progress" {
                    "in_progress"
                } else {
                    "completed"
                })
            })
            .collect();
        envelope(
            &self.id,
            self.created_at,
            &self.model,
            &self.echo,
            status,
            output,
            self.usage.clone(),
        )
    }

    /// The events that the chat bytes `chunk` complete.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = find(&self.pending, b"\n\n") {
            let raw: Vec<u8> = self.pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&raw);
            for line in text.lines() {
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    out.extend(self.finish());
                } else if let Ok(chunk) = serde_json::from_str::<Value>(data) {
                    out.extend(self.chat_chunk(&chunk));
                }
            }
        }
        out
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.envelope("in_progress");
        out.push(self.event("response.created", json!({ "response": response })));
        out.push(self.event("response.in_progress", json!({ "response": response })));
    }

    fn chat_chunk(&mut self, chunk: &Value) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Some(model) = chunk.get("model").filter(|m| m.is_string()) {
            self.model = model.clone();
        }
        self.start(&mut out);
        if chunk.get("usage").is_some_and(Value::is_object) {
            self.usage = usage(&chunk["usage"]);
        }
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            return out;
        };
        let delta = &choice["delta"];
        let text = delta["content"].as_str().unwrap_or_default();
        let logprobs = token_logprobs(choice);
        if !text.is_empty() || !logprobs.is_empty() {
            self.text_delta(text, logprobs, &mut out);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            self.call_delta(call, &mut out);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(reason.to_owned());
        }
        out
    }

    fn text_delta(&mut self, delta: &str, logprobs: Vec<Value>, out: &mut Vec<Bytes>) {
        let index = match self
            .items
            .iter()
            .position(|i| matches!(i, Item::Message { .. }))
        {
            Some(index) => index,
            None => {
                let id = new_id("msg");
                self.items.push(Item::Message {
                    id: id.clone(),
                    text: String::new(),
                    logprobs: Vec::new(),
                });
                let index = self.items.len() - 1;
                let item = self.items[index].to_json("in_progress");
                out.push(self.event(
                    "response.output_item.added",
                    json!({ "output_index": index, "item": item }),
                ));
                out.push(self.event(
                    "response.content_part.added",
                    json!({ "item_id": id, "output_index": index, "content_index": 0, "part": text_part("", &[]) }),
                ));
                index
            }
        };
        let Item::Message {
            id,
            text,
            logprobs: all,
        } = &mut self.items[index]
        else {
            return;
        };
        text.push_str(delta);
        all.extend(logprobs.iter().cloned());
        let id = id.clone();
        out.push(self.event(
            "response.output_text.delta",
            json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": delta, "logprobs": logprobs }),
        ));
    }

    fn call_delta(&mut self, call: &Value, out: &mut Vec<Bytes>) {
        let chat_index = call["index"].as_u64().unwrap_or(0);
        let index = match self.calls.iter().find(|(c, _)| *c == chat_index) {
            Some((_, index)) => *index,
            None => {
                self.items.push(Item::call(call, String::new()));
                let index = self.items.len() - 1;
                self.calls.push((chat_index, index));
                let item = self.items[index].to_json("in_progress");
                out.push(self.event(
                    "response.output_item.added",
                    json!({ "output_index": index, "item": item }),
                ));
                index
            }
        };
        let delta = call["function"]["arguments"].as_str().unwrap_or_default();
        let Item::Call { id, arguments, .. } = &mut self.items[index] else {
            return;
        };
        if delta.is_empty() {
            return;
        }
        arguments.push_str(delta);
        let id = id.clone();
        out.push(self.event(
            "response.function_call_arguments.delta",
            json!({ "item_id": id, "output_index": index, "delta": delta }),
        ));
    }

    /// The closing events: each item done, then the response (once).
    pub(super) fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.done = true;
        self.start(&mut out);
        for index in 0..self.items.len() {
            let item = self.items[index].to_json("completed");
            match &self.items[index] {
                Item::Message { id, text, logprobs } => {
                    let (id, text, logprobs) = (id.clone(), text.clone(), logprobs.clone());
                    out.push(self.event(
                        "response.output_text.done",
                        json!({ "item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": logprobs }),
                    ));
                    out.push(self.event(
                        "response.content_part.done",
                        json!({ "item_id": id, "output_index": index, "content_index": 0, "part": text_part(&text, &logprobs) }),
                    ));
                }
                Item::Call { id, arguments, .. } => {
                    let (id, arguments) = (id.clone(), arguments.clone());
                    out.push(self.event(
                        "response.function_call_arguments.done",
                        json!({ "item_id": id, "output_index": index, "arguments": arguments }),
                    ));
                }
            }
            out.push(self.event(
                "response.output_item.done",
                json!({ "output_index": index, "item": item }),
            ));
        }
        let (kind, status) = match self.finish.as_deref() {
            Some("length") => ("response.incomplete", "incomplete"),
            Some(_) => ("response.completed", "completed"),
            // The chat stream ended without a finish: cut off on the way.
            None => ("response.failed", "failed"),
        };
        let mut response = self.envelope(status);
        if status == "failed" {
            response["error"] = json!({ "code": "server_error", "message": "the provider's stream ended before the answer did" });
        }
        out.push(self.event(kind, json!({ "response": response })));
        out
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_chat_stream_cut_anywhere_gives_the_same_events() {
        let chat = concat!(
            "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"He\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"llo\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"w\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7,\"cost\":\"0.1\"}}\n\n",
            "data: [DONE]\n\n",
        );
        let run = |cut: usize| {
            let mut events = Events::new(json!("m"), Map::new());
            let (a, b) = chat.as_bytes().split_at(cut);
            let mut out = events.push(a);
            out.extend(events.push(b));
            out.extend(events.finish());
            out.iter()
                .map(|e| {
                    let text = String::from_utf8_lossy(e).into_owned();
                    let data = text.split("data: ").nth(1).unwrap().trim().to_owned();
                    serde_json::from_str::<Value>(&data).unwrap()
                })
                .collect::<Vec<_>>()
        };
        let whole = run(chat.len());
        let kinds: Vec<&str> = whole.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"response.created"));
        assert_eq!(kinds.last(), Some(&"response.completed"));
        let done = whole.last().unwrap();
        assert_eq!(done["response"]["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["response"]["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["response"]["usage"]["input_tokens"], 3);
        assert_eq!(done["response"]["usage"]["cost"], "0.1");
        for cut in [1, 17, 90, 200, chat.len() - 3] {
            let parts = run(cut);
            let shape = |e: &Vec<Value>| {
                e.iter()
                    .map(|v| {
                        (
                            v["type"].clone(),
                            v["delta"].clone(),
                            v["sequence_number"].clone(),
                        )
                    })
                    .collect::<Vec<_>>()
            };
            assert_eq!(shape(&parts), shape(&whole), "cut at {cut}");
        }
    }

    #[test]
    fn a_stream_that_breaks_off_fails_the_response() {
        let mut events = Events::new(json!("m"), Map::new());
        let mut out =
            events.push(b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n");
        out.extend(events.finish());
        let last = String::from_utf8_lossy(out.last().unwrap()).into_owned();
        assert!(last.starts_with("event: response.failed"), "{last}");
    }
}
