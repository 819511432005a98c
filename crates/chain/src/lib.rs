//! zg-serving's only door to the chain: typed bindings of the ZgServing
//! contract (from the committed artifacts), a client with a method per
//! contract function, view and event (disputes and fine-tuning jobs included), and deployment. The local anvil chain
//! for development and tests is zg-devnet's.

pub mod bindings;
mod client;
mod deploy;
mod disputes;
mod error;
mod escrow;
mod fine_tuning;
pub mod keystore;
mod ledger;
mod registry;
mod settlement;
pub mod tls;
mod tx;

pub use client::{
    ChainClient, ChainEvent, DEFAULT_LOCK_PERIOD, DEFAULT_MIN_STAKE, DeployParams, Deployed,
    Outcome, Page,
};
pub use disputes::{DisputeInfo, DisputeRules, DisputeState, OpenedDispute};
pub use error::ChainError;
pub use escrow::{EscrowAccount, EscrowChange, EscrowEvent, PendingRefund};
pub use fine_tuning::{FineTuningRules, FineTuningTerms, JobInfo, JobState};
pub use keystore::{KeystoreError, Password, read_keystore, write_keystore};
pub use registry::ProviderStake;
pub use settlement::{RejectReason, RejectedVoucher, SettledVoucher, Settlement, TxState};
pub use tx::{Fees, SignedTx};
