//! zg-provider: the provider broker of zg-serving.
//!
//! An OpenAI-compatible HTTP front of a model server (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/models`) that admits each request on a voucher
//! signed by the user, meters the upstream's token counts, signs a receipt
//! for every answer, and settles the newest voucher of each user on chain in
//! batches. A request flows: `handlers` (read the body) -> `forward` (admit
//! through the `broker` against the `store` and the `escrow` cache, send
//! upstream, plain or streamed, fetch the answer's proof of model from the
//! upstream (`proofs`), then charge or release); the `settle`-ment loop
//! collects the money, `registry` lists the services, `pricing` sets the
//! prices under the listed ceilings and signs them as quotes; `admin` is
//! the provider's web page, on its own address (`[admin]`); `fine_tuning`
//! trains LoRA adapters on signed orders and delivers them sealed
//! (`[fine_tuning]`).
//!
//! [`Broker::open`] connects and reads; [`Broker::serve`] (or [`start`])
//! takes over: it releases a crashed run's requests, syncs the registry and
//! serves.

mod admin;
mod admission;
mod broker;
mod config;
mod error;
mod escrow;
mod fine_tuning;
mod forward;
mod handlers;
mod keys;
mod metrics;
mod pricing;
mod probe;
mod proofs;
mod registry;
mod serve;
mod settle;
mod status;
mod store;
mod tls;
mod upstream;

pub use admission::Tab;
pub use broker::Broker;
pub use config::{AdminConfig, Config, ConfigError, EXAMPLE, FineTuningConfig};
pub use error::StartError;
pub use pricing::{PricingConfig, TierConfig};
pub use serve::{Running, serve_until, start};
pub use settle::{Round, SettleError, Settler};
pub use store::StoreError;
pub use tls::{TlsConfig, TlsListener};
