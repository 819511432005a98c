//! The user's payment voucher: "I have authorized `cumulative` neuron in all
//! to `provider`", bound to one request by `request_digest`.

use crate::{Domain, Signature, SignatureError, SigningKey, eip712, headers::Nonce};
use alloy_primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Voucher {
    pub user: Address,
    pub provider: Address,
    /// Everything the user has ever authorized to this provider, in neuron.
    pub cumulative: U256,
    /// keccak256(nonce || body) of the request it pays for, or the EIP-712
    /// hash of the receipt it acknowledges.
    pub request_digest: B256,
}

impl Voucher {
    pub fn signing_hash(&self, domain: &Domain) -> B256 {
        domain.signing_hash(&eip712::Voucher {
            user: self.user,
            provider: self.provider,
            cumulative: self.cumulative,
            requestDigest: self.request_digest,
        })
    }

    pub fn sign(&self, key: &SigningKey, domain: &Domain) -> Signature {
        key.sign_hash(&self.signing_hash(domain))
    }

    /// The address that signed this voucher: the user, or the signing key the
    /// user delegated on chain. The caller decides which of the two it accepts.
    pub fn signer(
        &self,
        signature: &Signature,
        domain: &Domain,
    ) -> Result<Address, SignatureError> {
        signature.recover(&self.signing_hash(domain))
    }
}

/// `keccak256(nonce || body)`: binds a voucher to the exact bytes of one request.
pub fn request_digest(nonce: &Nonce, body: &[u8]) -> B256 {
    let mut buf = Vec::with_capacity(nonce.0.len() + body.len());
    buf.extend_from_slice(&nonce.0);
    buf.extend_from_slice(body);
    keccak256(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_voucher_recovers_to_its_signer_only_in_its_domain() {
        let key = SigningKey::random();
        let domain = Domain::new(31337, Address::repeat_byte(7));
        let voucher = Voucher {
            user: key.address(),
            provider: Address::repeat_byte(9),
            cumulative: U256::from(1000u64),
            request_digest: request_digest(&Nonce([1; 16]), b"{}"),
        };
        let sig = voucher.sign(&key, &domain);
        assert_eq!(voucher.signer(&sig, &domain).unwrap(), key.address());
        let other_chain = Domain::new(1, domain.contract);
        assert_ne!(voucher.signer(&sig, &other_chain).unwrap(), key.address());
        let more = Voucher {
            cumulative: U256::from(1001u64),
            ..voucher
        };
        assert_ne!(more.signer(&sig, &domain).unwrap(), key.address());
    }

    #[test]
    fn request_digest_binds_nonce_and_body() {
        let a = request_digest(&Nonce([1; 16]), b"{\"a\":1}");
        assert_ne!(a, request_digest(&Nonce([2; 16]), b"{\"a\":1}"));
        assert_ne!(a, request_digest(&Nonce([1; 16]), b"{\"a\":2}"));
    }
}
