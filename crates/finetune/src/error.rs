//! Why fine-tuning failed: each variant a situation the caller can act on.

use std::path::PathBuf;

use crate::dataset::DatasetError;

/// Errors of loading, training, checkpointing and exporting.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error("model file {0} is missing: run `make model` to fetch it (or pass the right path)")]
    ModelMissing(PathBuf),
    #[error(
        "could not load model {path}: {reason}; if the file is damaged, delete it and run `make model`"
    )]
    ModelLoad { path: PathBuf, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("training file: {0}")]
    Dataset(#[from] DatasetError),
    #[error("invalid training setting: {0}")]
    Config(String),
    #[error("adapter {path}: {reason}; expected a GGUF LoRA adapter that zg-finetune wrote")]
    Adapter { path: PathBuf, reason: String },
    #[error("checkpoint {path}: {reason}; delete the directory to start over")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("training was cancelled at step {step} of {total}; the last checkpoint resumes it")]
    Cancelled { step: usize, total: usize },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}
