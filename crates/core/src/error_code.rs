//! Stable error codes of the wire protocol, with the HTTP status a client
//! expects. Broker and client share them so the two can't drift.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Headers missing or malformed, or the signature is not the user's.
    VoucherInvalid,
    /// `cumulative` went down.
    VoucherStale,
    /// The same (user, requestDigest) was accepted before.
    VoucherReplayed,
    /// `X-ZG-Quote` is not this broker's quote for the service, or it
    /// expired: take a new one from `GET /v1/quote`.
    QuoteInvalid,
    InsufficientEscrow,
    CreditExceeded,
    UnknownModel,
    InvalidRequest,
    /// An `X-ZG-*` header sent more than once.
    DuplicateHeader,
    /// The body is over the broker's limit, or over the model server's.
    RequestTooLarge,
    HeadersTooLarge,
    MethodNotAllowed,
    UpstreamFailed,
    RateLimited,
    Unauthorized,
    NotFound,
    #[serde(rename = "internal_error")]
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 17] = [
        Self::VoucherInvalid,
        Self::VoucherStale,
        Self::VoucherReplayed,
        Self::QuoteInvalid,
        Self::InsufficientEscrow,
        Self::CreditExceeded,
        Self::UnknownModel,
        Self::InvalidRequest,
        Self::DuplicateHeader,
        Self::RequestTooLarge,
        Self::HeadersTooLarge,
        Self::MethodNotAllowed,
        Self::UpstreamFailed,
        Self::RateLimited,
        Self::Unauthorized,
        Self::NotFound,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::VoucherInvalid => "voucher_invalid",
            Self::VoucherStale => "voucher_stale",
            Self::VoucherReplayed => "voucher_replayed",
            Self::QuoteInvalid => "quote_invalid",
            Self::InsufficientEscrow => "insufficient_escrow",
            Self::CreditExceeded => "credit_exceeded",
            Self::UnknownModel => "unknown_model",
            Self::InvalidRequest => "invalid_request",
            Self::DuplicateHeader => "duplicate_header",
            Self::RequestTooLarge => "request_too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UpstreamFailed => "upstream_failed",
            Self::RateLimited => "rate_limited",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::Internal => "internal_error",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Self::VoucherInvalid | Self::VoucherStale | Self::Unauthorized => 401,
            Self::InvalidRequest | Self::DuplicateHeader => 400,
            Self::MethodNotAllowed => 405,
            Self::RequestTooLarge => 413,
            Self::HeadersTooLarge => 431,
            Self::InsufficientEscrow => 402,
            Self::UnknownModel | Self::NotFound => 404,
            Self::VoucherReplayed | Self::QuoteInvalid => 409,
            Self::CreditExceeded | Self::RateLimited => 429,
            Self::UpstreamFailed => 502,
            Self::Internal => 500,
        }
    }

    /// The code of an error a layer under the handlers answered (HTTP
    /// parsing, routing, body limits, extractors), known by its status only.
    pub fn for_status(status: u16) -> Self {
        match status {
            401 => Self::Unauthorized,
            404 => Self::NotFound,
            405 => Self::MethodNotAllowed,
            413 => Self::RequestTooLarge,
            429 => Self::RateLimited,
            431 => Self::HeadersTooLarge,
            400..=499 => Self::InvalidRequest,
            _ => Self::Internal,
        }
    }

    /// OpenAI's `error.type` for this code.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::InvalidRequest
            | Self::DuplicateHeader
            | Self::RequestTooLarge
            | Self::HeadersTooLarge
            | Self::MethodNotAllowed
            | Self::UnknownModel
            | Self::QuoteInvalid
            | Self::NotFound => "invalid_request_error",
            Self::VoucherInvalid
            | Self::VoucherStale
            | Self::VoucherReplayed
            | Self::Unauthorized => "authentication_error",
            Self::InsufficientEscrow | Self::CreditExceeded => "insufficient_quota",
            Self::RateLimited => "rate_limit_error",
            Self::UpstreamFailed | Self::Internal => "server_error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ErrorCode {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_text_and_serde() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn a_status_gets_the_code_that_answers_with_it() {
        for code in [
            ErrorCode::MethodNotAllowed,
            ErrorCode::RequestTooLarge,
            ErrorCode::HeadersTooLarge,
            ErrorCode::NotFound,
        ] {
            assert_eq!(ErrorCode::for_status(code.http_status()), code);
        }
        assert_eq!(ErrorCode::for_status(415), ErrorCode::InvalidRequest);
        assert_eq!(ErrorCode::for_status(503), ErrorCode::Internal);
    }
}
