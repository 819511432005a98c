//! zg-client: the user side of zg-serving, as a library others can embed.
//!
//! [`accounts`] moves money on chain (through zg-chain), [`discovery`] reads
//! the registry, [`book`] keeps the voucher book and receipts in SQLite,
//! [`checks`] decides whether a receipt is paid, [`pay`] runs a paid request
//! end to end, [`recovery`] rebuilds the book from the provider's signed
//! statement and the chain. The local OpenAI-compatible gateway in front of
//! the whole marketplace is built on this crate (zg-gateway).

// Errors carry the amounts and addresses a user needs to act on (U256s are
// 32 bytes each); they are off the hot path, so they are not boxed.
#![allow(clippy::result_large_err)]

pub mod accounts;
pub mod book;
pub mod checks;
pub mod discovery;
mod error;
pub mod pay;
pub mod recovery;

pub use accounts::{Accounts, LedgerSummary};
pub use book::{AuditRecord, Book, ReceiptRecord, Tab};
pub use checks::{Expected, ProofSeen, ReceiptFault, check_receipt};
pub use discovery::{ServiceFilter, find_services};
pub use error::ClientError;
pub use pay::{AckPolicy, Answer, PaidReceipt, Payer, StreamAnswer};
pub use recovery::{Recovered, recover};
