//! A provider's signed statement of one user's account (`GET
//! /v1/account/{user}`): what the user owes, the newest voucher the provider
//! holds and what is settled, so a client can rebuild its books. The
//! signature covers keccak256 of the exact statement JSON text. The request
//! for it is signed by the user ([`StatementRequest`]): a statement is the
//! user's alone.

use crate::{Domain, HeaderError, Signature, SignatureError, SigningKey, eip712, headers};
use alloy_primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatement {
    pub provider: Address,
    pub user: Address,
    pub chain_id: u64,
    pub contract: Address,
    /// Every fee ever charged to the user.
    pub owed: U256,
    /// The user's settled total on chain, as the provider last saw it.
    pub settled: U256,
    /// Worst cases of the user's requests still in flight.
    pub reserved: U256,
    /// The newest voucher held: cumulative, requestDigest, signature.
    pub cumulative: U256,
    pub request_digest: Option<B256>,
    pub voucher_signature: Option<String>,
    /// Unix seconds when the statement was made.
    pub at: u64,
}

/// The statement as JSON text, with the provider signer's signature of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatement {
    pub statement: String,
    pub signature: String,
    pub signer: Address,
}

#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("statement is not valid JSON of an account statement: {0}")]
    Json(String),
    #[error("statement signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("statement is signed by {got}, expected {expected}")]
    WrongSigner { expected: Address, got: Address },
}

impl SignedStatement {
    pub fn sign(statement: &AccountStatement, key: &SigningKey) -> Self {
        let text = serde_json::to_string(statement).unwrap_or_default();
        let signature = key.sign_hash(&keccak256(text.as_bytes()));
        Self {
            statement: text,
            signature: signature.to_string(),
            signer: key.address(),
        }
    }

    /// Checks the signature is `signer`'s and returns the statement.
    pub fn verify(&self, signer: Address) -> Result<AccountStatement, StatementError> {
        let signature: Signature = self.signature.parse()?;
        let got = signature.recover(&keccak256(self.statement.as_bytes()))?;
        if got != signer {
            return Err(StatementError::WrongSigner {
                expected: signer,
                got,
            });
        }
        serde_json::from_str(&self.statement).map_err(|e| StatementError::Json(e.to_string()))
    }
}

/// How far, either way, a statement request's timestamp may be from the
/// provider's clock, in seconds: room for clock skew, yet a captured
/// request is soon worthless.
pub const STATEMENT_FRESHNESS_SECS: u64 = 60;

/// "`user` asks `provider` for its statement at `timestamp`", signed (EIP-712)
/// by the user or the voucher signer it delegated on chain, and carried in
/// `X-ZG-Timestamp` and `X-ZG-Signature`. The provider in the message and
/// the freshness window keep it from being replayed elsewhere or later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementRequest {
    pub user: Address,
    pub provider: Address,
    /// Unix seconds when the request was signed.
    pub timestamp: u64,
}

/// Why a statement request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementRequestError {
    #[error(
        "missing header {0}: GET /v1/account/{{user}} carries X-ZG-Timestamp (unix seconds) and X-ZG-Signature, the EIP-712 signature of StatementRequest(user, provider, timestamp) by the user or its delegated voucher signer"
    )]
    Missing(&'static str),
    #[error(transparent)]
    Malformed(#[from] HeaderError),
    #[error(
        "X-ZG-Timestamp {got} is {skew} s away from the provider's clock ({now}), more than the {STATEMENT_FRESHNESS_SECS} s allowed: sign a new request with the current time"
    )]
    Stale { got: u64, now: u64, skew: u64 },
    #[error("X-ZG-Signature: {0}")]
    Signature(#[from] SignatureError),
}

impl StatementRequest {
    /// A request for `user`'s statement at `provider`, now.
    pub fn now(user: Address, provider: Address) -> Self {
        Self {
            user,
            provider,
            timestamp: crate::now_unix(),
        }
    }

    pub fn signing_hash(&self, domain: &Domain) -> B256 {
        domain.signing_hash(&eip712::StatementRequest {
            user: self.user,
            provider: self.provider,
            timestamp: U256::from(self.timestamp),
        })
    }

    /// The headers that carry this request, signed by `key` (the user's key
    /// or its delegated voucher signer).
    pub fn headers(&self, key: &SigningKey, domain: &Domain) -> [(&'static str, String); 2] {
        let signature = key.sign_hash(&self.signing_hash(domain));
        [
            (headers::TIMESTAMP, self.timestamp.to_string()),
            (headers::SIGNATURE, signature.to_string()),
        ]
    }

    /// Reads the request for `user` at `provider` from headers (through
    /// `get(lowercase name)`), checks it is fresh at `now`, and returns the
    /// address that signed it; the caller decides whether that is the user
    /// or its delegate.
    pub fn signer<'a>(
        user: Address,
        provider: Address,
        domain: &Domain,
        now: u64,
        get: impl Fn(&'static str) -> Option<&'a str>,
    ) -> Result<Address, StatementRequestError> {
        let field = |name| {
            get(name)
                .map(str::trim)
                .ok_or(StatementRequestError::Missing(name))
        };
        let malformed = HeaderError::malformed;
        let text = field(headers::TIMESTAMP)?;
        let timestamp: u64 = text
            .parse()
            .map_err(|_| malformed(headers::TIMESTAMP, "unix seconds, digits only", text))?;
        let skew = now.abs_diff(timestamp);
        if skew > STATEMENT_FRESHNESS_SECS {
            return Err(StatementRequestError::Stale {
                got: timestamp,
                now,
                skew,
            });
        }
        let text = field(headers::SIGNATURE)?;
        let signature: Signature = text.parse().map_err(|_| {
            malformed(
                headers::SIGNATURE,
                "a 65-byte hex signature with v 27/28 and low s",
                text,
            )
        })?;
        let request = Self {
            user,
            provider,
            timestamp,
        };
        Ok(signature.recover(&request.signing_hash(domain))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_statement_request_recovers_only_for_its_provider_and_time() {
        let key = SigningKey::random();
        let domain = Domain::new(31337, Address::repeat_byte(7));
        let provider = Address::repeat_byte(9);
        let request = StatementRequest {
            user: key.address(),
            provider,
            timestamp: 1_000,
        };
        let map: HashMap<_, _> = request.headers(&key, &domain).into_iter().collect();
        let signer = |provider, now| {
            StatementRequest::signer(key.address(), provider, &domain, now, |name| {
                map.get(name).map(String::as_str)
            })
        };
        assert_eq!(signer(provider, 1_000), Ok(key.address()));
        assert_eq!(
            signer(provider, 1_000 + STATEMENT_FRESHNESS_SECS),
            Ok(key.address())
        );
        assert_ne!(signer(Address::repeat_byte(8), 1_000), Ok(key.address()));
        assert!(matches!(
            signer(provider, 1_001 + STATEMENT_FRESHNESS_SECS),
            Err(StatementRequestError::Stale { .. })
        ));
        assert!(matches!(
            StatementRequest::signer(key.address(), provider, &domain, 1_000, |_| None),
            Err(StatementRequestError::Missing(headers::TIMESTAMP))
        ));
    }

    #[test]
    fn signed_statement_verifies_only_untouched() {
        let key = SigningKey::random();
        let statement = AccountStatement {
            provider: key.address(),
            user: Address::repeat_byte(1),
            chain_id: 31337,
            contract: Address::repeat_byte(2),
            owed: U256::from(10u64),
            settled: U256::from(4u64),
            reserved: U256::ZERO,
            cumulative: U256::from(8u64),
            request_digest: Some(B256::repeat_byte(3)),
            voucher_signature: None,
            at: 1,
        };
        let signed = SignedStatement::sign(&statement, &key);
        assert_eq!(signed.verify(key.address()).unwrap(), statement);
        let forged = SignedStatement {
            statement: signed
                .statement
                .replace("\"owed\":\"0xa\"", "\"owed\":\"0x1\""),
            ..signed.clone()
        };
        assert_ne!(forged.statement, signed.statement);
        assert!(forged.verify(key.address()).is_err());
    }
}
