//! `/v1/embeddings` bodies.

use serde::{Deserialize, Serialize};

use super::strict::KnownFields;

#[derive(Debug, Deserialize)]
pub(crate) struct EmbeddingsRequest {
    pub input: EmbeddingInput,
    #[serde(default)]
    pub encoding_format: Option<String>,
}

/// `model` and `user` are accepted and not read.
impl KnownFields for EmbeddingsRequest {
    const FIELDS: &'static [&'static [&'static str]] =
        &[&["input", "encoding_format", "model", "user"]];
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

impl EmbeddingInput {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            EmbeddingInput::One(s) => vec![s],
            EmbeddingInput::Many(v) => v,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingsResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingData {
    pub object: &'static str,
    pub index: u32,
    pub embedding: EmbeddingVector,
}

/// Floats, or their little-endian f32 bytes in base64 (what the `openai`
/// Python client asks for by default).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum EmbeddingVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize)]
pub(crate) struct EmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}
