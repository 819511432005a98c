//! zg-devnet: the local marketplace that `zg-serving dev`, the benchmarks
//! and every test suite stand on. [`DevChain`] is anvil on a free port;
//! [`Market`] is that chain with the ZgServing contract deployed and users
//! who deposited and funded providers' escrow; a [`BrokerPlan`] is a
//! provider's config on it, and [`start_broker`] runs one; [`Stack`] is the
//! whole marketplace of `zg-serving dev` (chain, engine, brokers, a funded
//! user, the gateway) over a [`DataDir`]; [`contracts`] holds the contracts
//! that exist only to attack ZgServing in tests.

mod anvil;
mod broker;
pub mod contracts;
#[cfg(feature = "stack")]
mod data_dir;
mod error;
mod faulty_rpc;
mod http;
mod market;
#[cfg(feature = "stack")]
mod stack;

pub use anvil::{DevChain, DevChainOptions, find_anvil};
pub use broker::{BrokerPlan, FineTuningPlan, ServicePlan, SettlementPlan, start_broker};
#[cfg(feature = "stack")]
pub use data_dir::{DataDir, Record, default_data_dir};
pub use error::DevnetError;
pub use faulty_rpc::FaultyRpc;
pub use http::send_past_resets;
pub use market::Market;
#[cfg(feature = "stack")]
pub use stack::{
    CHAT_SERVICE, EMBEDDINGS_SERVICE, FINE_TUNING_SERVICE, Provider, Stack, StackPlan,
};
