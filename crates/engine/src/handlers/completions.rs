//! `POST /v1/completions`, OpenAI's legacy text endpoint: the prompt is read
//! as is (no chat template) and the answer continues it, plain or streamed
//! (`text_completion` objects, usage included).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use super::generate::{self, Answer};
use crate::api::chat::FinishReason;
use crate::api::completions::{
    CompletionChoice, CompletionRequest, CompletionResponse, LegacyLogprobs, Prompt,
};
use crate::api::generation::TokenLogprob;
use crate::api::{ApiError, StrictJson, Usage, response_id, unix_now};
use crate::engine::Engine;

/// Alternatives per token the legacy endpoint allows.
const MAX_LOGPROBS: u32 = 5;

pub(super) async fn completions(
    State(engine): State<Arc<Engine>>,
    StrictJson(req): StrictJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let prompt = match req.prompt {
        Prompt::One(text) => text,
        Prompt::Many(mut texts) if texts.len() == 1 => texts.remove(0),
        Prompt::Many(texts) => {
            return Err(ApiError::invalid(
                format!(
                    "prompt is a list of {} strings: this engine takes one prompt per request",
                    texts.len()
                ),
                Some("prompt"),
            ));
        }
    };
    if req.echo == Some(true) {
        return Err(ApiError::invalid(
            "echo is not supported: the answer holds the new text only",
            Some("echo"),
        ));
    }
    let max_tokens = req.generation.max_tokens.or(Some(16));
    let mut plan = generate::plan(req.generation, max_tokens)?;
    plan.top_logprobs = match req.logprobs {
        Some(k) if k > MAX_LOGPROBS => {
            return Err(ApiError::invalid(
                format!("logprobs {k} is out of range: expected 0 to {MAX_LOGPROBS}"),
                Some("logprobs"),
            ));
        }
        k => k.map(|k| k as usize),
    };
    let tokens = engine.chat().tokenize(&prompt);
    let answer = TextAnswer {
        id: response_id("cmpl"),
        created: unix_now(),
        model: engine.chat_model_id().to_string(),
        choices: (0..plan.n)
            .map(|index| CompletionChoice {
                text: String::new(),
                index,
                logprobs: plan.top_logprobs.map(|_| LegacyLogprobs::default()),
                finish_reason: None,
            })
            .collect(),
    };
    generate::run(&engine, tokens, &plan, "prompt", answer).await
}

struct TextAnswer {
    id: String,
    created: u64,
    model: String,
    choices: Vec<CompletionChoice>,
}

impl TextAnswer {
    fn value(&self, choices: Vec<CompletionChoice>, usage: Option<Usage>) -> Value {
        serde_json::to_value(CompletionResponse {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        })
        .unwrap_or_default()
    }
}

impl Answer for TextAnswer {
    fn start(&mut self) -> Vec<Value> {
        Vec::new()
    }

    fn text(&mut self, index: u32, text: String, logprob: Option<TokenLogprob>) -> Vec<Value> {
        let Some(choice) = self.choices.get_mut(index as usize) else {
            return Vec::new();
        };
        let offset = choice.text.len();
        choice.text.push_str(&text);
        let entries: Vec<TokenLogprob> = logprob.into_iter().collect();
        let logprobs = choice.logprobs.as_mut().map(|all| {
            all.extend(&entries, offset);
            let mut piece = LegacyLogprobs::default();
            piece.extend(&entries, offset);
            piece
        });
        let chunk = CompletionChoice {
            text,
            index,
            logprobs,
            finish_reason: None,
        };
        vec![self.value(vec![chunk], None)]
    }

    fn done(&mut self, index: u32, finish: FinishReason) -> Vec<Value> {
        if let Some(choice) = self.choices.get_mut(index as usize) {
            choice.finish_reason = Some(finish);
        }
        let chunk = CompletionChoice {
            text: String::new(),
            index,
            logprobs: None,
            finish_reason: Some(finish),
        };
        vec![self.value(vec![chunk], None)]
    }

    fn usage_chunk(&self, usage: Usage) -> Value {
        self.value(Vec::new(), Some(usage))
    }

    fn body(mut self, usage: Usage) -> Value {
        let choices = std::mem::take(&mut self.choices);
        self.value(choices, Some(usage))
    }

    fn id(&self) -> &str {
        &self.id
    }
}
