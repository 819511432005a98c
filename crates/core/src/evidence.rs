//! The evidence of one answer: its signed receipt with the exact request and
//! response bodies, the request's nonce and the answer's proof of model.
//! It is what a verifier needs (the JSON file `zg-serving verify` reads,
//! docs/verification.md) and what the client keeps for answers of proof
//! services. [`Evidence::check_binding`] checks that the receipt's digests
//! name exactly these bytes; whether the registered model computed the
//! answer is the verifier's part.

use alloy_primitives::{B128, B256, Bytes};
use serde::{Deserialize, Serialize};

use crate::{Nonce, headers::SignedReceipt, proof_digest, request_digest};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Evidence {
    /// The receipt as `X-ZG-Receipt` carries it.
    pub receipt: SignedReceipt,
    /// The request's `X-ZG-Nonce`, `0x` + 32 hex digits.
    pub nonce: B128,
    /// The exact request body sent (JSON text).
    pub request: String,
    /// The exact response body received (JSON, or a stream's whole SSE text).
    pub response: String,
    /// The proof of model, `0x` + hex.
    pub proof: Bytes,
}

/// Why evidence does not hold together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error(
        "not evidence of an answer: {0}; expected JSON {{\"receipt\": {{\"receipt\": {{...}}, \"signature\": \"0x...\"}}, \"nonce\": \"0x<32 hex>\", \"request\": \"<body>\", \"response\": \"<body>\", \"proof\": \"0x<hex>\"}}"
    )]
    Malformed(String),
    #[error("the receipt's proofDigest is zero: its provider signed for no proof")]
    NoProofDigest,
    #[error(
        "the proof hashes to {computed}, the receipt's proofDigest is {signed}: this is not the proof the provider signed for"
    )]
    WrongProof { signed: B256, computed: B256 },
    #[error(
        "keccak256(nonce || request) is {computed}, the receipt's requestDigest is {signed}: the request or its nonce is not the one answered"
    )]
    WrongRequest { signed: B256, computed: B256 },
    #[error(
        "the response hashes to {computed}, the receipt's responseDigest is {signed}: the response is not the one the provider signed for"
    )]
    WrongResponse { signed: B256, computed: B256 },
}

impl Evidence {
    /// Reads evidence from its JSON text.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EvidenceError> {
        serde_json::from_slice(bytes).map_err(|e| EvidenceError::Malformed(e.to_string()))
    }

    pub fn to_json_pretty(&self) -> String {
        // Strings, hex and numbers only: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks that the receipt's digests name these bytes: the proof, the
    /// request with its nonce, the response. The signature and the model
    /// are checked elsewhere (the client against the registry, the
    /// verifier against the weights).
    pub fn check_binding(&self) -> Result<(), EvidenceError> {
        let receipt = &self.receipt.receipt;
        if receipt.proof_digest.is_zero() {
            return Err(EvidenceError::NoProofDigest);
        }
        let computed = proof_digest(&self.proof);
        if computed != receipt.proof_digest {
            return Err(EvidenceError::WrongProof {
                signed: receipt.proof_digest,
                computed,
            });
        }
        let computed = request_digest(&Nonce(self.nonce.0), self.request.as_bytes());
        if computed != receipt.request_digest {
            return Err(EvidenceError::WrongRequest {
                signed: receipt.request_digest,
                computed,
            });
        }
        let computed = crate::keccak256(self.response.as_bytes());
        if computed != receipt.response_digest {
            return Err(EvidenceError::WrongResponse {
                signed: receipt.response_digest,
                computed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, Receipt, SigningKey, U256, keccak256};

    fn evidence() -> Evidence {
        let nonce = Nonce([7; 16]);
        let (request, response, proof) = ("{\"messages\":[]}", "{\"choices\":[]}", b"proof");
        let receipt = Receipt {
            user: Address::repeat_byte(1),
            provider: Address::repeat_byte(2),
            service: B256::repeat_byte(3),
            model_digest: B256::repeat_byte(4),
            request_digest: request_digest(&nonce, request.as_bytes()),
            response_digest: keccak256(response),
            input_tokens: U256::from(1u64),
            output_tokens: U256::from(1u64),
            input_price: U256::ZERO,
            output_price: U256::ZERO,
            cached_tokens: U256::ZERO,
            cached_price: U256::ZERO,
            fee: U256::ZERO,
            owed: U256::ZERO,
            proof_digest: proof_digest(proof),
            issued_at: 0,
        };
        let key = SigningKey::random();
        Evidence {
            receipt: SignedReceipt::new(receipt, &key.sign_hash(&B256::ZERO)),
            nonce: B128::from(nonce.0),
            request: request.into(),
            response: response.into(),
            proof: Bytes::from_static(proof),
        }
    }

    #[test]
    fn round_trips_and_binds_every_part() {
        let good = evidence();
        let read = Evidence::from_json(good.to_json_pretty().as_bytes()).unwrap();
        assert_eq!(read, good);
        good.check_binding().unwrap();

        let mut other = good.clone();
        other.proof = Bytes::from_static(b"proof, edited");
        assert!(matches!(
            other.check_binding(),
            Err(EvidenceError::WrongProof { .. })
        ));
        let mut other = good.clone();
        other.receipt.receipt.proof_digest = B256::ZERO;
        assert_eq!(other.check_binding(), Err(EvidenceError::NoProofDigest));
        let mut other = good.clone();
        other.nonce = B128::repeat_byte(8);
        assert!(matches!(
            other.check_binding(),
            Err(EvidenceError::WrongRequest { .. })
        ));
        let mut other = good;
        other.response.push(' ');
        assert!(matches!(
            other.check_binding(),
            Err(EvidenceError::WrongResponse { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_that_shows_the_format() {
        for bad in [
            &b""[..],
            b"not json",
            b"{}",
            b"{\"receipt\": 1}",
            &[0xff, 0xfe, 0x00],
        ] {
            let err = Evidence::from_json(bad).unwrap_err();
            assert!(err.to_string().contains("\"proof\""), "{err}");
        }
        let mut json: serde_json::Value =
            serde_json::from_str(&evidence().to_json_pretty()).unwrap();
        json["proof"] = "0xzz".into();
        assert!(Evidence::from_json(json.to_string().as_bytes()).is_err());
    }
}
