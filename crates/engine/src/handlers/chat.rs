//! `POST /v1/chat/completions`: checks the request, renders the messages
//! (and the tools, see `chat/tools.rs`) into the prompt, picks the grammar
//! the answer must follow (a forced tool call, `response_format`), and
//! answers through [`generate`] with chat's shapes.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use super::generate::{self, Answer, MAX_TOP_LOGPROBS};
use crate::api::chat::{
    AssistantMessage, ChatChunk, ChatMessage, ChatRequest, ChatResponse, Choice, ChoiceLogprobs,
    ChunkChoice, Delta, FinishReason, FunctionDelta, ResponseFormat, Tool, ToolCall, ToolCallDelta,
    ToolChoice,
};
use crate::api::generation::TokenLogprob;
use crate::api::{ApiError, StrictJson, Usage, response_id, unix_now};
use crate::chat::tools::{self, CallSplitter};
use crate::chat::{Grammar, grammar};
use crate::engine::Engine;

pub(super) async fn completions(
    State(engine): State<Arc<Engine>>,
    StrictJson(req): StrictJson<ChatRequest>,
) -> Result<Response, ApiError> {
    // Both limits given: the smaller holds (a broker in front may cap one of
    // them to what the escrow covers).
    let max_tokens = match (req.max_completion_tokens, req.generation.max_tokens) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut plan = generate::plan(req.generation, max_tokens)?;
    plan.top_logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (_, Some(k)) if k > MAX_TOP_LOGPROBS => {
            return Err(ApiError::invalid(
                format!("top_logprobs {k} is out of range: expected 0 to {MAX_TOP_LOGPROBS}"),
                Some("top_logprobs"),
            ));
        }
        (false, Some(_)) => {
            return Err(ApiError::invalid(
                "top_logprobs needs logprobs: true",
                Some("top_logprobs"),
            ));
        }
        (true, k) => Some(k.unwrap_or(0) as usize),
        (false, None) => None,
    };
    let tool_use = ToolUse::new(req.tools, req.tool_choice, req.parallel_tool_calls)?;
    let format = format_grammar(req.response_format)?;
    plan.sampling.grammar = match (&tool_use, format) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "response_format json_object / json_schema cannot be combined with tools: send tool_choice \"none\" or no response_format",
                Some("response_format"),
            ));
        }
        (Some(t), None) => Some(t.grammar.clone()),
        (None, format) => format,
    };
    engine.chat().check_sampling(&plan.sampling)?;
    let mut prompt_text = engine
        .chat()
        .render(messages(req.messages, tool_use.as_ref())?)?;
    let forced = tool_use.as_ref().is_some_and(|t| t.forced);
    if forced {
        // The model's answer starts inside the call list.
        prompt_text.push_str(tools::OPEN);
    }
    let prompt = engine.chat().tokenize(&prompt_text);
    let answer = ChatAnswer {
        id: response_id("chatcmpl"),
        created: unix_now(),
        model: engine.chat_model_id().to_string(),
        logprobs: plan.top_logprobs.is_some(),
        forced,
        choices: (0..plan.n)
            .map(|_| ChoiceState {
                splitter: tool_use.as_ref().map(|_| CallSplitter::new(forced)),
                content: String::new(),
                logprobs: Vec::new(),
                tool_calls: Vec::new(),
                finish: FinishReason::Stop,
            })
            .collect(),
        tools: tool_use.map(|t| t.tools).unwrap_or_default(),
    };
    generate::run(&engine, prompt, &plan, "messages", answer).await
}

/// The tools of a request whose `tool_choice` is not `none`.
struct ToolUse {
    tools: Vec<Tool>,
    grammar: Grammar,
    /// `required` or a named function: the answer is a call.
    forced: bool,
}

impl ToolUse {
    fn new(
        tools: Option<Vec<Tool>>,
        choice: Option<ToolChoice>,
        parallel: Option<bool>,
    ) -> Result<Option<Self>, ApiError> {
        let tools = tools.unwrap_or_default();
        for tool in &tools {
            if tool.kind != "function" || tool.function.name.is_empty() {
                return Err(ApiError::invalid(
                    format!(
                        "tool {:?} of type {:?} is not supported: tools are {{\"type\": \"function\", \"function\": {{\"name\", \"parameters\"}}}}",
                        tool.function.name, tool.kind
                    ),
                    Some("tools"),
                ));
            }
        }
        let parallel = parallel.unwrap_or(true);
        let choice = choice.unwrap_or_else(|| ToolChoice::Mode("auto".into()));
        let no_tools = || {
            ApiError::invalid(
                "tool_choice asks for a tool call, but the request has no tools",
                Some("tool_choice"),
            )
        };
        let (only, forced): (Vec<&Tool>, bool) = match &choice {
            ToolChoice::Mode(mode) if mode == "none" => return Ok(None),
            ToolChoice::Mode(mode) if mode == "auto" && tools.is_empty() => return Ok(None),
            ToolChoice::Mode(mode) if mode == "auto" => (tools.iter().collect(), false),
            ToolChoice::Mode(mode) if mode == "required" => {
                if tools.is_empty() {
                    return Err(no_tools());
                }
                (tools.iter().collect(), true)
            }
            ToolChoice::Mode(mode) => {
                return Err(ApiError::invalid(
                    format!(
                        "tool_choice {mode:?} is not one of none, auto, required or a named function"
                    ),
                    Some("tool_choice"),
                ));
            }
            ToolChoice::Named(named) if named.kind != "function" => {
                return Err(ApiError::invalid(
                    format!(
                        "tool_choice of type {:?} is not supported: expected function",
                        named.kind
                    ),
                    Some("tool_choice"),
                ));
            }
            ToolChoice::Named(named) => {
                let name = &named.function.name;
                let Some(tool) = tools.iter().find(|t| &t.function.name == name) else {
                    return Err(if tools.is_empty() {
                        no_tools()
                    } else {
                        ApiError::invalid(
                            format!("tool_choice names {name:?}, which is not among the tools"),
                            Some("tool_choice"),
                        )
                    });
                };
                (vec![tool], true)
            }
        };
        // A named function is called once.
        let parallel = parallel && !matches!(choice, ToolChoice::Named(_));
        let grammar = tools::calls_grammar(&only, parallel, !forced)?;
        Ok(Some(Self {
            tools,
            grammar,
            forced,
        }))
    }
}

/// The grammar `response_format` asks for, if any.
fn format_grammar(format: Option<ResponseFormat>) -> Result<Option<Grammar>, ApiError> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.kind.as_str() {
        "text" => Ok(None),
        "json_object" => grammar::whole(&json!({"type": "object"}), "response_format").map(Some),
        "json_schema" => {
            let schema = format.json_schema.and_then(|s| s.schema).ok_or_else(|| {
                ApiError::invalid(
                    "response_format json_schema needs json_schema.schema",
                    Some("response_format"),
                )
            })?;
            grammar::whole(&schema, "response_format").map(Some)
        }
        other => Err(ApiError::invalid(
            format!(
                "response_format type {other:?} is not supported: expected text, json_object or json_schema"
            ),
            Some("response_format"),
        )),
    }
}

/// The (role, text) pairs for the template, with the tools in the system
/// message and earlier calls written as the model writes them.
fn messages(
    messages: Vec<ChatMessage>,
    tool_use: Option<&ToolUse>,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = tools::turns(messages)?;
    if let Some(tool_use) = tool_use {
        let block = tools::prompt_block(&tool_use.tools);
        match out.first_mut() {
            Some((role, text)) if role == "system" || role == "developer" => {
                text.push_str("\n\n");
                text.push_str(&block);
            }
            _ => out.insert(0, ("system".to_string(), block)),
        }
    }
    Ok(out)
}

struct ChoiceState {
    /// Present when tools are in play.
    splitter: Option<CallSplitter>,
    content: String,
    logprobs: Vec<TokenLogprob>,
    tool_calls: Vec<ToolCall>,
    finish: FinishReason,
}

struct ChatAnswer {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    forced: bool,
    tools: Vec<Tool>,
    choices: Vec<ChoiceState>,
}

impl ChatAnswer {
    fn chunk(
        &self,
        index: u32,
        delta: Delta<'_>,
        logprobs: Option<ChoiceLogprobs>,
        finish_reason: Option<FinishReason>,
    ) -> Value {
        self.chunk_of(
            vec![ChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason,
            }],
            None,
        )
    }

    fn chunk_of(&self, choices: Vec<ChunkChoice<'_>>, usage: Option<Usage>) -> Value {
        serde_json::to_value(ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        })
        .unwrap_or_default()
    }

    fn choice(&mut self, index: u32) -> Option<&mut ChoiceState> {
        self.choices.get_mut(index as usize)
    }
}

impl Answer for ChatAnswer {
    fn start(&mut self) -> Vec<Value> {
        let content = if self.forced { None } else { Some("") };
        (0..self.choices.len() as u32)
            .map(|index| {
                let delta = Delta {
                    role: Some("assistant"),
                    content,
                    ..Delta::default()
                };
                self.chunk(index, delta, None, None)
            })
            .collect()
    }

    fn text(&mut self, index: u32, text: String, logprob: Option<TokenLogprob>) -> Vec<Value> {
        let Some(choice) = self.choice(index) else {
            return Vec::new();
        };
        let shown = match &mut choice.splitter {
            Some(splitter) => splitter.push(&text),
            None => text,
        };
        choice.content.push_str(&shown);
        choice.logprobs.extend(logprob.clone());
        if shown.is_empty() && logprob.is_none() {
            return Vec::new();
        }
        let delta = Delta {
            content: (!shown.is_empty()).then_some(shown.as_str()),
            ..Delta::default()
        };
        let logprobs = logprob.map(|l| ChoiceLogprobs { content: vec![l] });
        vec![self.chunk(index, delta, logprobs, None)]
    }

    fn done(&mut self, index: u32, finish: FinishReason) -> Vec<Value> {
        let tools = &self.tools;
        let Some(choice) = self.choices.get_mut(index as usize) else {
            return Vec::new();
        };
        choice.finish = finish;
        let mut rest = String::new();
        if let Some(splitter) = choice.splitter.take() {
            let (held, calls) = splitter.finish(tools);
            if !calls.is_empty() {
                choice.finish = FinishReason::ToolCalls;
            }
            choice.content.push_str(&held);
            choice.tool_calls = calls;
            rest = held;
        }
        let finish = choice.finish;
        let calls = choice.tool_calls.clone();
        let mut chunks = Vec::new();
        if !rest.is_empty() {
            let delta = Delta {
                content: Some(&rest),
                ..Delta::default()
            };
            chunks.push(self.chunk(index, delta, None, None));
        }
        // As OpenAI streams a call: one chunk names it, the next carries
        // its arguments.
        for (i, call) in calls.iter().enumerate() {
            let call_index = i as u32;
            let named = ToolCallDelta {
                index: call_index,
                id: Some(&call.id),
                kind: Some("function"),
                function: FunctionDelta {
                    name: Some(&call.function.name),
                    arguments: "",
                },
            };
            let arguments = ToolCallDelta {
                index: call_index,
                id: None,
                kind: None,
                function: FunctionDelta {
                    name: None,
                    arguments: &call.function.arguments,
                },
            };
            for part in [named, arguments] {
                let delta = Delta {
                    tool_calls: vec![part],
                    ..Delta::default()
                };
                chunks.push(self.chunk(index, delta, None, None));
            }
        }
        chunks.push(self.chunk(index, Delta::default(), None, Some(finish)));
        chunks
    }

    fn usage_chunk(&self, usage: Usage) -> Value {
        self.chunk_of(Vec::new(), Some(usage))
    }

    fn body(self, usage: Usage) -> Value {
        let logprobs = self.logprobs;
        let choices = self
            .choices
            .into_iter()
            .zip(0..)
            .map(|(c, index)| Choice {
                index,
                message: AssistantMessage {
                    role: "assistant",
                    content: (!c.content.is_empty() || c.tool_calls.is_empty())
                        .then_some(c.content),
                    tool_calls: c.tool_calls,
                },
                logprobs: logprobs.then_some(ChoiceLogprobs {
                    content: c.logprobs,
                }),
                finish_reason: c.finish,
            })
            .collect();
        serde_json::to_value(ChatResponse {
            id: self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices,
            usage,
        })
        .unwrap_or_default()
    }

    fn id(&self) -> &str {
        &self.id
    }
}
