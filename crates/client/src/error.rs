//! What can go wrong on the user side, each case with what to do next.

use crate::checks::ReceiptFault;
use zg_core::{Address, ErrorCode, format_amount};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The local SQLite book could not be read or written.
    #[error(
        "local voucher book {path}: {source}; check that the file is writable (or delete it and run `zg-serving user recover`)"
    )]
    Book {
        path: String,
        #[source]
        source: crate::book::BookError,
    },

    #[error(transparent)]
    Chain(#[from] zg_chain::ChainError),

    /// The provider could not be reached or its answer could not be read.
    #[error(
        "provider {provider} at {url} could not be reached: {reason}; it may be down, try another provider"
    )]
    Unreachable {
        provider: Address,
        url: String,
        reason: String,
    },

    /// The provider answered with a protocol error.
    #[error("provider {provider} refused the request (HTTP {status}, {}): {message}{}",
        code.map(|c| c.as_str()).unwrap_or("no code"), hint(*code, *provider))]
    Refused {
        provider: Address,
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },

    /// A receipt failed a check: it is kept as evidence and not paid.
    #[error(
        "receipt from provider {provider} failed its check: {fault}; it was not paid and is kept as evidence (`zg-serving user receipts --rejected`)"
    )]
    BadReceipt {
        provider: Address,
        fault: ReceiptFault,
    },

    /// A paid answer came without a receipt (or with an unreadable one).
    #[error(
        "provider {provider} sent no usable receipt: {reason}; the answer was not paid for, avoid this provider"
    )]
    MissingReceipt { provider: Address, reason: String },

    /// Nothing in the registry fits what was asked.
    #[error("no service fits: {0}; list what is offered with `zg-serving user services`")]
    NoService(String),

    /// The provider's signed account statement did not hold.
    #[error("account statement from provider {provider} is not acceptable: {reason}")]
    BadStatement { provider: Address, reason: String },

    /// A local budget (gateway top-up budget, API key spend limit) is spent.
    #[error("{0}")]
    Budget(String),

    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl ClientError {
    pub(crate) fn book(path: &std::path::Path, source: crate::book::BookError) -> Self {
        Self::Book {
            path: path.display().to_string(),
            source,
        }
    }

    /// Whether another provider might serve the same request: the failure
    /// was this provider's (down, refused for money or capacity), not the request's.
    pub fn is_provider_fault(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::MissingReceipt { .. } | Self::BadReceipt { .. } => {
                true
            }
            Self::Refused { status, code, .. } => {
                !matches!(code, Some(ErrorCode::InvalidRequest))
                    && (*status >= 402 || *status == 401)
            }
            _ => false,
        }
    }
}

fn hint(code: Option<ErrorCode>, provider: Address) -> String {
    match code {
        Some(ErrorCode::InsufficientEscrow) => format!(
            "; fund more escrow with `zg-serving user fund --provider {provider} --amount <0G>`"
        ),
        Some(ErrorCode::CreditExceeded) => {
            "; earlier answers are unpaid: send the next request or check `zg-serving user receipts`".into()
        }
        Some(ErrorCode::VoucherStale) => {
            "; the local book is behind the provider: run `zg-serving user recover`".into()
        }
        _ => String::new(),
    }
}

/// "1.5 0G (1500000000000000000 neuron)", for error messages.
pub(crate) fn show(neuron: zg_core::U256) -> String {
    format!("{} 0G", format_amount(neuron))
}
