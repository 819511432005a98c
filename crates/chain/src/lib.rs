//! zg-serving's only door to the chain: typed bindings of the ZgServing
//! contract (from the committed artifacts), a client with a method per
//! contract function, view and event, deployment, and a local anvil dev chain.

pub mod anvil;
pub mod bindings;
mod client;
mod error;
mod escrow;
pub mod keystore;
mod ledger;
mod registry;
mod settlement;
pub mod tls;

pub use anvil::{DevChain, DevChainOptions, find_anvil};
pub use client::{
    ChainClient, ChainEvent, DEFAULT_LOCK_PERIOD, DEFAULT_MIN_STAKE, DeployParams, Outcome, Page,
};
pub use error::ChainError;
pub use escrow::{EscrowAccount, EscrowChange, EscrowEvent, PendingRefund};
pub use keystore::{KeystoreError, Password, read_keystore, write_keystore};
pub use registry::ProviderStake;
pub use settlement::{RejectReason, RejectedVoucher, SettledVoucher, Settlement};
