//! What the engine is started with: model paths and the llama.cpp knobs.

use std::path::PathBuf;

/// Everything `zg-serving engine` takes on its command line.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// GGUF chat model; its metadata carries the tokenizer and chat template.
    pub model: PathBuf,
    /// Directory with a BERT sentence-embedding model (`config.json`,
    /// `model.safetensors`, `tokenizer.json`); `/v1/embeddings` is off without it.
    pub embedding_model: Option<PathBuf>,
    /// Sequences decoded together (slots); more requests than this wait.
    pub parallel: u32,
    /// CPU threads for llama.cpp.
    pub threads: u32,
    /// Total context in tokens, shared equally by the slots.
    pub ctx: u32,
    /// Record a proof of model for every chat answer (`GET /v1/proofs/{id}`).
    pub proofs: bool,
    /// A LoRA adapter in llama.cpp's GGUF format (as zg-finetune exports)
    /// applied at full strength to every chat answer. Proofs then record
    /// the adapted model, which a verifier with only the base GGUF cannot
    /// recompute.
    pub lora: Option<PathBuf>,
}

impl EngineConfig {
    /// A config for `model` with the defaults of the CLI.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            embedding_model: None,
            parallel: 4,
            threads: default_threads(),
            ctx: 8192,
            proofs: true,
            lora: None,
        }
    }

    /// Adds the embedding model directory.
    pub fn with_embedding_model(mut self, dir: impl Into<PathBuf>) -> Self {
        self.embedding_model = Some(dir.into());
        self
    }
}

/// The number of CPUs this process may use, at most 8 (llama.cpp gains
/// little from more threads on a small model and hurts the HTTP side).
pub(crate) fn default_threads() -> u32 {
    let n = std::thread::available_parallelism().map_or(4, |n| n.get());
    u32::try_from(n.min(8)).unwrap_or(4)
}
