//! zg-provider: the provider broker of zg-serving.
//!
//! An OpenAI-compatible HTTP front of a model server (`/v1/chat/completions`,
//! `/v1/embeddings`, `/v1/models`) that admits each request on a voucher
//! signed by the user, meters the upstream's token counts, signs a receipt
//! for every answer, and settles the newest voucher of each user on chain in
//! batches. A request flows: `handlers` -> `broker` (admission against the
//! `store` and the `escrow` cache) -> upstream (plain or `stream`) -> charge
//! and receipt; `settle` collects the money, `registry` lists the services.

pub mod admission;
pub mod broker;
pub mod config;
pub mod error;
pub mod escrow;
pub mod handlers;
mod keys;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod settle;
pub mod status;
pub mod store;
pub mod stream;
pub mod tls;
pub mod upstream;

pub use broker::Broker;
pub use config::{Config, ConfigError};
pub use server::{Running, StartError, prepare, serve_until, spawn, start};
