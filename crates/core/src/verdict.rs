//! A verifier's verdict on a dispute: what it signs after re-running the
//! disputed answer's proof (docs/verification.md). The contract counts a
//! verdict whose signer is a registered verifier, once per verifier.

use crate::{Domain, Signature, SignatureError, SigningKey, eip712};
use alloy_primitives::{Address, B256, U256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The contract's dispute id.
    pub dispute: u64,
    /// The answer is not what the registered model computes for the request.
    pub guilty: bool,
}

impl Verdict {
    pub fn signing_hash(&self, domain: &Domain) -> B256 {
        domain.signing_hash(&eip712::Verdict {
            dispute: U256::from(self.dispute),
            guilty: self.guilty,
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
    fn binds_dispute_side_and_domain() {
        let key = SigningKey::random();
        let domain = Domain::new(31337, Address::repeat_byte(3));
        let verdict = Verdict {
            dispute: 7,
            guilty: true,
        };
        let sig = verdict.sign(&key, &domain);
        assert_eq!(verdict.signer(&sig, &domain).unwrap(), key.address());
        for other in [
            Verdict {
                dispute: 8,
                guilty: true,
            },
            Verdict {
                dispute: 7,
                guilty: false,
            },
        ] {
            assert_ne!(other.signer(&sig, &domain).unwrap(), key.address());
        }
        let other_chain = Domain::new(1, Address::repeat_byte(3));
        assert_ne!(verdict.signer(&sig, &other_chain).unwrap(), key.address());
    }
}
