//! `POST /v1/embeddings`: one string or a list, embedded on a blocking
//! thread; floats or base64 as the client asks.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::api::embeddings::{
    EmbeddingData, EmbeddingUsage, EmbeddingVector, EmbeddingsRequest, EmbeddingsResponse,
};
use crate::api::{ApiError, StrictJson};
use crate::engine::Engine;

/// Inputs one request may carry.
const MAX_INPUTS: usize = 2048;

pub(super) async fn embeddings(
    State(engine): State<Arc<Engine>>,
    StrictJson(req): StrictJson<EmbeddingsRequest>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let Some(model_id) = engine.embedding_model_id() else {
        return Err(ApiError::not_found(
            "no embedding model is loaded: start the engine with --embedding-model DIR",
        )
        .with_code("model_not_found"));
    };
    let model_id = model_id.to_string();
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("encoding_format {other:?} is not supported: use \"float\" or \"base64\""),
                Some("encoding_format"),
            ));
        }
    };
    let inputs = req.input.into_vec();
    if inputs.is_empty() || inputs.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            format!(
                "input has {} entries: send between 1 and {MAX_INPUTS}",
                inputs.len()
            ),
            Some("input"),
        ));
    }
    let worker = engine.clone();
    let embedded = tokio::task::spawn_blocking(move || match worker.embedder() {
        Some(embedder) => embedder.embed(&inputs),
        None => Err("no embedding model".to_string()),
    })
    .await
    .map_err(|e| ApiError::internal(format!("embedding task failed: {e}")))?
    .map_err(ApiError::internal)?;
    let data = embedded
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingData {
            object: "embedding",
            index: index as u32,
            embedding: if base64 {
                EmbeddingVector::Base64(encode_base64(&vector))
            } else {
                EmbeddingVector::Float(vector)
            },
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: model_id,
        usage: EmbeddingUsage {
            prompt_tokens: embedded.tokens,
            total_tokens: embedded.tokens,
        },
    }))
}

/// Standard base64 of the little-endian f32 bytes (what OpenAI sends).
fn encode_base64(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        // 1.0f32 = 00 00 80 3f
        assert_eq!(super::encode_base64(&[1.0]), "AACAPw==");
        assert_eq!(super::encode_base64(&[1.0, 1.0, 1.0]), "AACAPwAAgD8AAIA/");
    }
}
