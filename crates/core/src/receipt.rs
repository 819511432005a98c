//! The provider's signed receipt: which service and model answered which
//! request with which response, how many tokens at what prices, the fee, and
//! what the user owes in all, and the digest of the answer's proof of model.

use crate::{Domain, Prices, Signature, SignatureError, SigningKey, Usage, eip712};
use alloy_primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub user: Address,
    pub provider: Address,
    /// keccak256 of the service name.
    pub service: B256,
    pub model_digest: B256,
    pub request_digest: B256,
    /// keccak256 of the exact response body (a stream's whole SSE body).
    pub response_digest: B256,
    pub input_tokens: U256,
    pub output_tokens: U256,
    /// Of `input_tokens`, those the provider's prompt cache served, priced
    /// at `cached_price`. Absent in receipts stored before the field
    /// existed (read as zero).
    #[serde(default)]
    pub cached_tokens: U256,
    pub input_price: U256,
    pub output_price: U256,
    #[serde(default)]
    pub cached_price: U256,
    pub fee: U256,
    /// Everything the user owes this provider after this answer, in neuron.
    pub owed: U256,
    /// keccak256 of the answer's proof of model ([`proof_digest`]); zero
    /// where the upstream gives none. Absent in receipts stored before the
    /// field existed, which read as zero (their signatures were over the
    /// older type and no longer recover to the signer).
    #[serde(default)]
    pub proof_digest: B256,
    /// Unix seconds when the provider signed the receipt; a dispute of the
    /// answer is open for the contract's dispute window from then. Absent
    /// in receipts stored before the field existed (read as zero).
    #[serde(default)]
    pub issued_at: u64,
}

/// A receipt's `proofDigest` for proof bytes: keccak256 of them.
pub fn proof_digest(proof: &[u8]) -> B256 {
    keccak256(proof)
}

impl Receipt {
    pub fn signing_hash(&self, domain: &Domain) -> B256 {
        domain.signing_hash(&eip712::Receipt {
            user: self.user,
            provider: self.provider,
            service: self.service,
            modelDigest: self.model_digest,
            requestDigest: self.request_digest,
            responseDigest: self.response_digest,
            inputTokens: self.input_tokens,
            outputTokens: self.output_tokens,
            cachedTokens: self.cached_tokens,
            inputPrice: self.input_price,
            outputPrice: self.output_price,
            cachedPrice: self.cached_price,
            fee: self.fee,
            owed: self.owed,
            proofDigest: self.proof_digest,
            issuedAt: self.issued_at,
        })
    }

    /// The prices this answer was served at.
    pub fn prices(&self) -> Prices {
        Prices::new(self.input_price, self.output_price).with_cached(self.cached_price)
    }

    /// The token counts it was charged for; `None` when one does not fit
    /// in 64 bits (no real answer has that many).
    pub fn usage(&self) -> Option<Usage> {
        Some(Usage {
            input_tokens: u64::try_from(self.input_tokens).ok()?,
            output_tokens: u64::try_from(self.output_tokens).ok()?,
            cached_input_tokens: u64::try_from(self.cached_tokens).ok()?,
        })
    }

    pub fn sign(&self, key: &SigningKey, domain: &Domain) -> Signature {
        key.sign_hash(&self.signing_hash(domain))
    }

    pub fn signer(
        &self,
        signature: &Signature,
        domain: &Domain,
    ) -> Result<Address, SignatureError> {
        signature.recover(&self.signing_hash(domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_signed() {
        let key = SigningKey::random();
        let domain = Domain::new(31337, Address::repeat_byte(3));
        let receipt = Receipt {
            user: Address::repeat_byte(1),
            provider: Address::repeat_byte(2),
            service: crate::service_id("chat"),
            model_digest: B256::repeat_byte(4),
            request_digest: B256::repeat_byte(5),
            response_digest: B256::repeat_byte(6),
            input_tokens: U256::from(10u64),
            output_tokens: U256::from(20u64),
            cached_tokens: U256::from(4u64),
            input_price: U256::from(1u64),
            output_price: U256::from(2u64),
            cached_price: U256::ZERO,
            fee: U256::from(46u64),
            owed: U256::from(50u64),
            proof_digest: proof_digest(b"proof"),
            issued_at: 1_700_000_000,
        };
        let sig = receipt.sign(&key, &domain);
        assert_eq!(receipt.signer(&sig, &domain).unwrap(), key.address());
        let inflated = Receipt {
            fee: U256::from(51u64),
            ..receipt.clone()
        };
        assert_ne!(inflated.signer(&sig, &domain).unwrap(), key.address());
        let uncached = Receipt {
            cached_tokens: U256::ZERO,
            ..receipt.clone()
        };
        assert_ne!(uncached.signer(&sig, &domain).unwrap(), key.address());
        let dearer_cache = Receipt {
            cached_price: U256::from(1u64),
            ..receipt.clone()
        };
        assert_ne!(dearer_cache.signer(&sig, &domain).unwrap(), key.address());
        let other_model = Receipt {
            model_digest: B256::repeat_byte(9),
            ..receipt.clone()
        };
        assert_ne!(other_model.signer(&sig, &domain).unwrap(), key.address());
        let other_proof = Receipt {
            proof_digest: proof_digest(b"another proof"),
            ..receipt.clone()
        };
        assert_ne!(other_proof.signer(&sig, &domain).unwrap(), key.address());
        let backdated = Receipt {
            issued_at: 1_600_000_000,
            ..receipt
        };
        assert_ne!(backdated.signer(&sig, &domain).unwrap(), key.address());
    }
}
