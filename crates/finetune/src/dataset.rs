//! Training files: OpenAI's fine-tuning JSONL (`{"messages": [...]}` per
//! line), parsed and checked line by line so that every mistake is reported
//! with the line it is on.

use serde_json::Value;

/// The longest line read; a longer one is refused before it is parsed.
const MAX_LINE_BYTES: usize = 1 << 20;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role's name in the chat template.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// One conversation; its last message is the assistant's answer to learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub messages: Vec<Message>,
}

/// A checked training file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub examples: Vec<Example>,
    /// Messages over all examples.
    pub messages: usize,
}

/// What is wrong with a training file, and on which line (1-based).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct DatasetError {
    pub line: usize,
    pub problem: String,
}

impl Dataset {
    /// Parses a JSONL training file; blank lines are skipped. Fails on the
    /// first bad line, or when the file holds no example at all.
    pub fn parse(bytes: &[u8]) -> Result<Dataset, DatasetError> {
        let mut examples = Vec::new();
        let mut messages = 0;
        let mut lines = 0;
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            lines = line;
            let fail = |problem: String| DatasetError { line, problem };
            if raw.len() > MAX_LINE_BYTES {
                return Err(fail(format!(
                    "the line is {} bytes long, at most {MAX_LINE_BYTES} are allowed: shorten the example",
                    raw.len()
                )));
            }
            let text = std::str::from_utf8(raw).map_err(|e| {
                fail(format!(
                    "not UTF-8 (bad byte at column {}): save the file as UTF-8",
                    e.valid_up_to() + 1
                ))
            })?;
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            let example = parse_example(text).map_err(fail)?;
            messages += example.messages.len();
            examples.push(example);
        }
        if examples.is_empty() {
            return Err(DatasetError {
                line: lines.max(1),
                problem:
                    "the file holds no example: expected one JSON object with \"messages\" per line"
                        .into(),
            });
        }
        Ok(Dataset { examples, messages })
    }
}

const SHAPE: &str = "\"messages\" must be an array of {role, content}";

fn parse_example(text: &str) -> Result<Example, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("not valid JSON ({e}): expected one JSON object per line"))?;
    let Value::Object(object) = value else {
        return Err("expected a JSON object with \"messages\"".into());
    };
    let Some(Value::Array(items)) = object.get("messages") else {
        return Err(SHAPE.into());
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (Some(Value::String(role)), Some(Value::String(content))) =
            (item.get("role"), item.get("content"))
        else {
            return Err(format!("{SHAPE} (message {} is not)", i + 1));
        };
        let role = match role.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(format!(
                    "message {}: role {other:?} is not one of system, user, assistant",
                    i + 1
                ));
            }
        };
        // llama.cpp takes messages as C strings.
        if content.contains('\0') {
            return Err(format!(
                "message {}: content contains a NUL character",
                i + 1
            ));
        }
        messages.push(Message {
            role,
            content: content.clone(),
        });
    }
    match messages.last() {
        None => Err("\"messages\" is empty: expected at least one assistant message".into()),
        Some(last) if last.role != Role::Assistant => Err(format!(
            "the last message is {}, expected assistant: an example ends with the answer to learn",
            last.role.as_str()
        )),
        Some(_) => Ok(Example { messages }),
    }
}
