//! A provider's signed statement of one user's account (`GET
//! /v1/account/{user}`): what the user owes, the newest voucher the provider
//! holds and what is settled, so a client can rebuild its books. The
//! signature covers keccak256 of the exact statement JSON text.

use crate::{Signature, SignatureError, SigningKey};
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

#[cfg(test)]
mod tests {
    use super::*;

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
