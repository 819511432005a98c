//! Sentence embeddings: a BERT model from a directory of Hugging Face files
//! (`config.json`, `model.safetensors`, `tokenizer.json`), tokenized by the
//! `tokenizers` crate and run by candle on the CPU.

mod bert;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Tokenizer, TruncationParams};

use crate::EngineError;
use bert::{Bert, BertConfig};

/// The longest input in tokens; longer inputs are cut, as
/// sentence-transformers does (all-MiniLM-L6-v2's `max_seq_length`).
const MAX_TOKENS: usize = 256;
/// Inputs encoded together; bounds memory for long input lists.
const CHUNK: usize = 32;

pub(crate) struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    /// The weights file, whose sha256 names the model.
    pub weights: PathBuf,
}

/// Embeddings of several inputs and the tokens they took.
pub(crate) struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: u32,
}

impl Embedder {
    /// Loads from `dir` (or from the directory of a `model.safetensors` path).
    pub(crate) fn load(path: &Path) -> Result<Self, EngineError> {
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new("."))
        } else {
            path
        };
        let config_path = dir.join("config.json");
        let weights = dir.join("model.safetensors");
        let tokenizer_path = dir.join("tokenizer.json");
        for file in [&config_path, &weights, &tokenizer_path] {
            crate::digest::require_file(file)?;
        }
        let load_err = |path: &Path, reason: String| EngineError::ModelLoad {
            path: path.to_path_buf(),
            reason,
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| EngineError::ModelRead {
                path: path.to_path_buf(),
                source,
            })
        };
        let config: BertConfig = serde_json::from_slice(&read(&config_path)?)
            .map_err(|e| load_err(&config_path, e.to_string()))?;
        let vb = VarBuilder::from_buffered_safetensors(read(&weights)?, DType::F32, &Device::Cpu)
            .map_err(|e| load_err(&weights, e.to_string()))?;
        let model = Bert::load(vb, &config).map_err(|e| load_err(&weights, e.to_string()))?;
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| load_err(&tokenizer_path, e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS.min(model.max_positions),
                ..Default::default()
            }))
            .map_err(|e| load_err(&tokenizer_path, e.to_string()))?;
        tracing::info!(model = %dir.display(), "embedding model loaded");
        Ok(Self {
            model,
            tokenizer,
            weights,
        })
    }

    /// Unit-length embeddings of `inputs`, in order. CPU-bound: call it
    /// from a blocking thread.
    pub(crate) fn embed(&self, inputs: &[String]) -> Result<Embedded, String> {
        let mut vectors = Vec::with_capacity(inputs.len());
        let mut tokens = 0u32;
        for chunk in inputs.chunks(CHUNK) {
            let encodings = self
                .tokenizer
                .encode_batch(chunk.to_vec(), true)
                .map_err(|e| format!("tokenizer failed: {e}"))?;
            let width = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
            let mut ids = Vec::with_capacity(chunk.len() * width);
            let mut mask = Vec::with_capacity(chunk.len() * width);
            for encoding in &encodings {
                tokens += encoding.len() as u32;
                let n = encoding.len();
                ids.extend_from_slice(encoding.get_ids());
                ids.extend(std::iter::repeat_n(0, width - n));
                mask.extend(std::iter::repeat_n(1u32, n));
                mask.extend(std::iter::repeat_n(0u32, width - n));
            }
            let run = || -> candle_core::Result<Vec<Vec<f32>>> {
                let ids = Tensor::from_vec(ids, (chunk.len(), width), &Device::Cpu)?;
                let mask = Tensor::from_vec(mask, (chunk.len(), width), &Device::Cpu)?;
                let states = self.model.forward(&ids, &mask)?;
                bert::mean_pool_normalized(&states, &mask)?.to_vec2()
            };
            vectors.extend(run().map_err(|e| format!("embedding model failed: {e}"))?);
        }
        Ok(Embedded { vectors, tokens })
    }
}
