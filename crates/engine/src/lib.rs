//! zg-engine: the built-in inference server of zg-serving.
//!
//! An OpenAI-compatible HTTP server (`/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/models`) for a GGUF chat model, run by llama.cpp
//! with parallel slots and continuous batching, and an optional BERT
//! sentence-embedding model run by candle. It knows nothing of vouchers or
//! chains: the provider broker sits in front of it. Every chat answer
//! carries a proof of the model that computed it ([`proof`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), zg_engine::EngineError> {
//! let config = zg_engine::EngineConfig::new("models/SmolLM2-135M-Instruct.Q4_1.gguf");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = zg_engine::spawn(config, listener).await?;
//! println!("engine at http://{}", server.addr());
//! # Ok(()) }
//! ```

mod api;
mod chat;
mod config;
mod digest;
mod embed;
mod engine;
mod error;
mod handlers;
pub mod proof;
pub mod quantize;
mod server;
pub mod substitute;
pub mod verify;

pub use chat::backend as llama_backend;
pub use config::EngineConfig;
pub use engine::{Engine, ModelCard};
pub use error::EngineError;
pub use server::{ServerHandle, serve, spawn};
