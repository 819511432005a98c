//! Errors of starting the engine: each says which file and what to do.

use std::path::PathBuf;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file {path} is missing: run `make model` to fetch it (or pass the right path)")]
    ModelMissing { path: PathBuf },
    #[error(
        "model file {path} is corrupt: its sha256 is {actual}, expected {expected}; delete it and run `make model`"
    )]
    ModelCorrupt {
        path: PathBuf,
        actual: String,
        expected: String,
    },
    #[error("could not read model file {path}: {source}")]
    ModelRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "could not load model {path}: {reason}; if the file is damaged, delete it and run `make model`"
    )]
    ModelLoad { path: PathBuf, reason: String },
    #[error("invalid engine setting: {0}")]
    Config(String),
    #[error("llama.cpp failed: {0}")]
    Llama(String),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}
