//! `/v1/completions` bodies (OpenAI's legacy text endpoint): a raw prompt
//! in, text out, no chat template.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Usage;
use super::chat::FinishReason;
use super::generation::{Generation, TokenLogprob};
use super::strict::KnownFields;

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    pub prompt: Prompt,
    /// How many alternatives per token to list (legacy shape, at most 5).
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Only `false` (the default) is honoured.
    #[serde(default)]
    pub echo: Option<bool>,
    #[serde(flatten)]
    pub generation: Generation,
}

impl KnownFields for CompletionRequest {
    const FIELDS: &'static [&'static [&'static str]] =
        &[&["prompt", "logprobs", "echo"], Generation::FIELDS];
}

/// A prompt string, or a list holding exactly one (what clients send for
/// a single prompt); token arrays and batches are refused.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Prompt {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Serialize)]
pub(crate) struct CompletionResponse<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CompletionChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<LegacyLogprobs>,
    pub finish_reason: Option<FinishReason>,
}

/// The legacy log-probability shape: parallel lists per token.
#[derive(Debug, Default, Serialize)]
pub(crate) struct LegacyLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<BTreeMap<String, f32>>,
    pub text_offset: Vec<usize>,
}

impl LegacyLogprobs {
    /// Appends `entries`, the first of which starts at `offset` bytes into
    /// the choice's text.
    pub(crate) fn extend(&mut self, entries: &[TokenLogprob], mut offset: usize) {
        for entry in entries {
            self.tokens.push(entry.token.clone());
            self.token_logprobs.push(entry.logprob);
            self.top_logprobs.push(
                entry
                    .top_logprobs
                    .iter()
                    .map(|t| (t.token.clone(), t.logprob))
                    .collect(),
            );
            self.text_offset.push(offset);
            offset += entry.token.len();
        }
    }
}
