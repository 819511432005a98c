//! What chat and legacy completions share: the sampling and streaming
//! fields of the request (top-level, as `extra_body` sends `top_k`,
//! `min_p` and `repeat_penalty`) and the per-token log-probabilities.

use serde::{Deserialize, Serialize};

/// `model` (answered with the engine's own id) and OpenAI's bookkeeping
/// fields (`user`, `safety_identifier`, `metadata`, `prompt_cache_key`:
/// ids and tags for the platform; the engine keeps nothing, and reuses a
/// cached prefix whatever the key) are accepted and not read. `store` and
/// `service_tier` are read only to refuse what cannot be honoured.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Generation {
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    #[serde(default)]
    pub top_k: Option<i32>,
    #[serde(default)]
    pub min_p: Option<f32>,
    #[serde(default)]
    pub repeat_penalty: Option<f32>,
    /// llama-server's field: `false` computes the whole prompt instead of
    /// reusing the KV of a prefix an earlier request left (default `true`).
    #[serde(default)]
    pub cache_prompt: Option<bool>,
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub service_tier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

impl Generation {
    /// The request fields above, for [`super::strict::KnownFields`].
    pub(crate) const FIELDS: &'static [&'static str] = &[
        "model",
        "user",
        "max_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "n",
        "stream",
        "stream_options",
        "presence_penalty",
        "frequency_penalty",
        "top_k",
        "min_p",
        "repeat_penalty",
        "cache_prompt",
        "store",
        "service_tier",
        "metadata",
        "prompt_cache_key",
        "safety_identifier",
    ];
}

/// One generated token with its log-probability and the most likely
/// alternatives at its position (chat's `logprobs.content[]`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}
