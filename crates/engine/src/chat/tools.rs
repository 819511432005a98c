//! Function calling for models whose chat template knows no tools (llama.cpp
//! applies the GGUF's template with roles and text only, SmolLM2's included).
//! The tool definitions go into the system prompt, and the model is told to
//! answer `<tool_call>[{"name": ..., "arguments": {...}}, ...]</tool_call>`,
//! the Hermes-style format small instruct models are trained on; earlier
//! calls in the history are written the same way. A grammar built from the
//! functions' schemas makes a forced call (`required`, a named function)
//! always valid JSON for its parameters; with `auto` the same grammar applies
//! lazily, from the moment the model writes `<tool_call>`.

use serde_json::{Value, json};

use super::grammar;
use super::sampler::Grammar;
use crate::api::ApiError;
use crate::api::chat::{ChatMessage, FunctionCall, Tool, ToolCall};

pub(crate) const OPEN: &str = "<tool_call>";
pub(crate) const CLOSE: &str = "</tool_call>";

/// The tool part of the system prompt.
pub(crate) fn prompt_block(tools: &[Tool]) -> String {
    let defs: Vec<&crate::api::chat::FunctionDef> = tools.iter().map(|t| &t.function).collect();
    format!(
        "You can call these functions (each with a JSON Schema of its arguments):\n{}\n\
         To call functions, answer with only {OPEN}[{{\"name\": <function name>, \"arguments\": <arguments object>}}]{CLOSE}, \
         one object per call. Otherwise answer normally.",
        serde_json::to_string(&defs).unwrap_or_default()
    )
}

/// The (role, text) pairs of a request's messages, earlier calls written as
/// the model writes them (the tools' own block is the caller's).
pub(crate) fn turns(messages: Vec<ChatMessage>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    for message in messages {
        let content = match message.content {
            Some(content) => content.into_text()?,
            None => String::new(),
        };
        let text = match &message.tool_calls {
            Some(calls) => history_text(&content, calls),
            None => content,
        };
        out.push((message.role, text));
    }
    Ok(out)
}

/// An assistant turn of the history: its text, then its calls as the model
/// would have written them.
fn history_text(content: &str, calls: &[ToolCall]) -> String {
    if calls.is_empty() {
        return content.to_string();
    }
    let calls: Vec<Value> = calls
        .iter()
        .map(|c| {
            let arguments = serde_json::from_str::<Value>(&c.function.arguments)
                .unwrap_or_else(|_| Value::String(c.function.arguments.clone()));
            json!({"name": c.function.name, "arguments": arguments})
        })
        .collect();
    let calls = serde_json::to_string(&calls).unwrap_or_default();
    if content.is_empty() {
        format!("{OPEN}{calls}{CLOSE}")
    } else {
        format!("{content}\n{OPEN}{calls}{CLOSE}")
    }
}

/// The grammar of the call list: a JSON array of `{"name", "arguments"}`
/// objects, one shape per function, at least one call, at most one unless
/// `parallel`. `wrapped` adds the tags around it (for `auto`, where the
/// model writes the opening tag itself).
pub(crate) fn calls_grammar(
    tools: &[&Tool],
    parallel: bool,
    wrapped: bool,
) -> Result<Grammar, ApiError> {
    // Written as text: llama.cpp keeps the properties in the order of the
    // text (serde_json's map would sort them), and a model reads the name
    // before the arguments in every call it was trained on.
    let shapes: Vec<String> = tools
        .iter()
        .map(|t| {
            let parameters = t
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            format!(
                r#"{{"type":"object","properties":{{"name":{{"const":{}}},"arguments":{parameters}}},"required":["name","arguments"],"additionalProperties":false}}"#,
                Value::String(t.function.name.clone())
            )
        })
        .collect();
    let max_items = if parallel { "" } else { r#","maxItems":1"# };
    let schema = format!(
        r#"{{"type":"array","items":{{"anyOf":[{}]}},"minItems":1{max_items}}}"#,
        shapes.join(",")
    );
    let calls = grammar::from_schema(&schema, "tools")?;
    if !wrapped {
        return Ok(Grammar {
            gbnf: calls,
            trigger: None,
        });
    }
    let gbnf = grammar::rename_root(&calls, "tool-calls").ok_or_else(|| {
        ApiError::invalid(
            "a tool's parameters refer to the schema's root, which this engine cannot use with tool_choice auto: use required or a named function",
            Some("tools"),
        )
    })?;
    Ok(Grammar {
        gbnf: format!("root ::= \"{OPEN}\" tool-calls \"{CLOSE}\"\n{gbnf}"),
        trigger: Some(OPEN.to_string()),
    })
}

/// Splits generated text into the content a client may see and the tool
/// calls, as it arrives: everything from `<tool_call>` on is held for the
/// calls (a forced call starts inside the list, the prompt having opened it).
#[derive(Debug)]
pub(crate) struct CallSplitter {
    /// The prompt opened the call list (a forced call).
    forced: bool,
    in_call: bool,
    held: String,
    calls: String,
}

impl CallSplitter {
    pub(crate) fn new(forced: bool) -> Self {
        Self {
            forced,
            in_call: forced,
            held: String::new(),
            calls: String::new(),
        }
    }

    /// Adds generated text; returns the content now safe to show.
    pub(crate) fn push(&mut self, text: &str) -> String {
        if self.in_call {
            self.calls.push_str(text);
            return String::new();
        }
        self.held.push_str(text);
        if let Some(at) = self.held.find(OPEN) {
            self.calls = self.held[at + OPEN.len()..].to_string();
            self.held.truncate(at);
            self.in_call = true;
            return std::mem::take(&mut self.held);
        }
        // Hold back an end that may begin the tag (ASCII, so a char boundary).
        let keep = (1..OPEN.len())
            .rev()
            .find(|&n| self.held.ends_with(&OPEN[..n]))
            .unwrap_or(0);
        let rest = self.held.split_off(self.held.len() - keep);
        std::mem::replace(&mut self.held, rest)
    }

    /// At the end: the content still held, and the calls if the text held
    /// a valid list of calls to known functions (the complete ones, when
    /// `max_tokens` cut the list). Text that looked like a call but is not
    /// one is returned as content.
    pub(crate) fn finish(self, tools: &[Tool]) -> (String, Vec<ToolCall>) {
        if !self.in_call {
            return (self.held, Vec::new());
        }
        let calls = parse_calls(&self.calls, tools)
            .or_else(|| parse_calls(&complete_prefix(&self.calls)?, tools));
        match calls {
            Some(calls) => (self.held, calls),
            None if self.forced => (self.calls, Vec::new()),
            None => (format!("{}{OPEN}{}", self.held, self.calls), Vec::new()),
        }
    }
}

/// The complete elements of a JSON array that was cut off:
/// `[{"a": 1}, {"b` gives `[{"a": 1}]`.
fn complete_prefix(text: &str) -> Option<String> {
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    let mut end = None;
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => depth += 1,
            ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 1 {
                    end = Some(i + 1);
                }
            }
            _ => {}
        }
    }
    end.map(|end| format!("{}]", &text[..end]))
}

/// `[{"name","arguments"}, ...]` (or one such object), optionally closed by
/// the tag.
fn parse_calls(text: &str, tools: &[Tool]) -> Option<Vec<ToolCall>> {
    let text = text.trim();
    let text = text.strip_suffix(CLOSE).unwrap_or(text);
    let calls = match serde_json::from_str::<Value>(text).ok()? {
        Value::Array(calls) => calls,
        call @ Value::Object(_) => vec![call],
        _ => return None,
    };
    if calls.is_empty() {
        return None;
    }
    calls
        .into_iter()
        .map(|call| {
            let name = call.get("name")?.as_str()?;
            tools.iter().find(|t| t.function.name == name)?;
            let arguments = match call.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => "{}".to_string(),
            };
            Some(ToolCall {
                id: crate::api::response_id("call"),
                kind: "function".to_string(),
                function: FunctionCall {
                    name: name.to_string(),
                    arguments,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Vec<Tool> {
        serde_json::from_value(json!([{"type": "function", "function": {"name": "weather"}}]))
            .unwrap()
    }

    #[test]
    fn content_before_a_call_streams_and_the_call_is_held() {
        let mut s = CallSplitter::new(false);
        let mut shown = s.push("Let me check. <tool");
        shown += &s.push("_call>[{\"name\": \"weather\", ");
        shown += &s.push("\"arguments\": {\"city\": \"Paris\"}}]</tool_call>");
        assert_eq!(shown, "Let me check. ");
        let (rest, calls) = s.finish(&weather());
        assert_eq!(rest, "");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function.arguments, r#"{"city":"Paris"}"#);
    }

    #[test]
    fn a_broken_call_comes_back_as_content() {
        let mut s = CallSplitter::new(false);
        assert_eq!(s.push("<tool_call>[{\"name\": \"nope\"}]"), "");
        let (rest, calls) = s.finish(&weather());
        assert!(calls.is_empty());
        assert_eq!(rest, "<tool_call>[{\"name\": \"nope\"}]");
    }

    #[test]
    fn a_list_cut_by_max_tokens_keeps_its_complete_calls() {
        let mut s = CallSplitter::new(true);
        s.push(r#"[{"name": "weather", "arguments": {"city": "P\"}]"}}, {"name": "wea"#);
        let (rest, calls) = s.finish(&weather());
        assert_eq!(rest, "");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function.arguments, r#"{"city":"P\"}]"}"#);
    }

    #[test]
    fn a_near_miss_of_the_tag_is_released() {
        let mut s = CallSplitter::new(false);
        assert_eq!(s.push("a <to"), "a ");
        assert_eq!(s.push("ast"), "<toast");
    }
}
