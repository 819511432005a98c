//! OpenAI's wire format as the engine speaks it: request and response
//! bodies, the error shape, and the JSON body extractor that answers bad
//! bodies in that shape.

pub(crate) mod chat;
pub(crate) mod completions;
pub(crate) mod embeddings;
pub(crate) mod error;
pub(crate) mod generation;
pub(crate) mod strict;

pub(crate) use error::{ApiError, OpenAiJson};
pub(crate) use strict::StrictJson;

use serde::Serialize;

/// Token counts of one answer.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
}

/// OpenAI's breakdown of `prompt_tokens`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct PromptTokensDetails {
    /// Prompt tokens read from the prompt cache instead of computed.
    pub cached_tokens: u32,
}

impl Usage {
    pub(crate) fn new(prompt_tokens: u32, completion_tokens: u32, cached_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails { cached_tokens },
        }
    }
}

/// Seconds since the Unix epoch, for `created`.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh response id such as `chatcmpl-3f2a...`: unique per process run.
pub(crate) fn response_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let salt = RandomState::new().hash_one(n);
    format!("{prefix}-{salt:016x}{n:x}")
}
