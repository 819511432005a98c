//! The broker's errors: what a client sees (OpenAI's error shape with a
//! stable `zg_core::ErrorCode` and the HTTP status that code stands for,
//! admission's refusals among them) and why a broker could not start.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use zg_chain::ChainError;
use zg_core::{Address, ErrorBody, ErrorCode, U256, format_amount};

use crate::{admission::Refusal, store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("config: {0}")]
    Config(String),
    #[error("service {service:?}: {why}")]
    Verifiability { service: String, why: String },
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answered to a client.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            param: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub(crate) fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub(crate) fn internal(what: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::Internal,
            format!("the broker failed: {what}; try again later"),
        )
    }

    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.as_str(), self.param)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::metrics::global().error(self.code);
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::internal(e)
    }
}

impl Refusal {
    /// The refusal as the client sees it, naming the user and this provider.
    pub(crate) fn into_api(self, user: Address, provider: Address) -> ApiError {
        let g = |n: U256| format!("{} 0G", format_amount(n));
        match self {
            Self::Replayed => ApiError::new(
                ErrorCode::VoucherReplayed,
                "this voucher (user, requestDigest) was already accepted: sign a fresh voucher with a new X-ZG-Nonce",
            ),
            Self::Stale { newest, got } => ApiError::new(
                ErrorCode::VoucherStale,
                format!(
                    "X-ZG-Cumulative {got} is below {newest}, the newest voucher already accepted from {user}: cumulative never goes down; sign with at least {newest}"
                ),
            ),
            Self::AboveOwed { owed, got } => ApiError::new(
                ErrorCode::VoucherInvalid,
                format!(
                    "X-ZG-Cumulative {got} is more than the {owed} neuron {user} owes provider {provider}: sign for the fees your receipts show (GET /v1/account/{user})"
                ),
            ),
            Self::Credit {
                owed,
                cumulative,
                limit,
            } => ApiError::new(
                ErrorCode::CreditExceeded,
                format!(
                    "{user} owes {} but the voucher covers {}; the credit limit is {}: send a voucher for the receipts you hold (POST /v1/vouchers)",
                    g(owed),
                    g(cumulative),
                    g(limit)
                ),
            ),
            Self::Escrow { needed, available } => ApiError::new(
                ErrorCode::InsufficientEscrow,
                format!(
                    "escrow for {user} at provider {provider} covers {} beyond what is owed and in flight, this request needs up to {}: fund more with `zg-serving user fund`",
                    g(available),
                    g(needed)
                ),
            ),
            Self::UnknownReceipt => ApiError::new(
                ErrorCode::VoucherInvalid,
                format!(
                    "the acknowledgement voucher's requestDigest is not the EIP-712 hash of any receipt this provider gave {user}"
                ),
            ),
        }
    }
}
