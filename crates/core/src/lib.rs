//! Protocol core of zg-serving: the types both sides of the wire share.
//!
//! Vouchers and receipts with their EIP-712 hashes (byte for byte what the
//! contract computes), secp256k1 signing and recovery, fee arithmetic in
//! `U256` neuron, the `X-ZG-*` header codec, the stable error codes, and
//! decimal token amounts for the edges, the JSON and paths of the HTTP
//! API (`wire`), the capabilities a service lists, the verifiability methods, and the evidence file that
//! `zg-serving verify` reads (`evidence`). Nothing here does I/O.

pub mod amount;
pub mod capability;
pub mod eip712;
pub mod error_code;
pub mod evidence;
pub mod fees;
pub mod fine_tuning;
pub mod headers;
pub mod quote;
pub mod receipt;
pub mod seal;
pub mod service;
pub mod signature;
pub mod statement;
pub mod verdict;
pub mod verifiability;
pub mod voucher;
pub mod wire;

pub use alloy_primitives::{Address, B128, B256, Keccak256, U256, keccak256};
pub use amount::{AmountError, format_amount, parse_amount};
pub use eip712::Domain;
pub use error_code::ErrorCode;
pub use evidence::{Evidence, EvidenceError};
pub use fees::{FeeError, Prices, Usage, input_bound};
pub use headers::{HeaderError, Nonce, PaymentHeaders};
pub use quote::{QUOTE_MAX_SKEW, Quote, QuoteError, SignedQuote, Tier};
pub use receipt::{Receipt, proof_digest};
pub use service::{Service, ServiceKind, service_id};
pub use signature::{Signature, SignatureError, SigningKey};
pub use statement::{
    AccountStatement, STATEMENT_FRESHNESS_SECS, SignedStatement, StatementError, StatementRequest,
    StatementRequestError,
};
pub use verdict::Verdict;
pub use verifiability::{UnknownMethod, Verifiability};
pub use voucher::{Voucher, request_digest};
pub use wire::{AckBody, ErrorBody, OpenAiUsage, PromptTokensDetails, now_unix};
