//! The EIP-712 domain ("zg-serving", version "1", chain id, contract) and the
//! Solidity shapes of Voucher, Receipt and Verdict, hashed exactly as the
//! contract does, and of StatementRequest, which only the broker checks.

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::{SolStruct, eip712_domain};

alloy_sol_types::sol! {
    /// On-chain shape of a voucher; field order and names are the type hash.
    struct Voucher {
        address user;
        address provider;
        uint256 cumulative;
        bytes32 requestDigest;
    }

    /// On-chain shape of a receipt.
    struct Receipt {
        address user;
        address provider;
        bytes32 service;
        bytes32 modelDigest;
        bytes32 requestDigest;
        bytes32 responseDigest;
        uint256 inputTokens;
        uint256 outputTokens;
        uint256 cachedTokens;
        uint256 inputPrice;
        uint256 outputPrice;
        uint256 cachedPrice;
        uint256 fee;
        uint256 owed;
        bytes32 proofDigest;
        uint64 issuedAt;
    }

    /// A provider's price quote for one service (see `crate::quote`).
    struct Quote {
        address provider;
        bytes32 service;
        uint64 issuedAt;
        uint64 validUntil;
        uint64 maxOutputTokens;
        QuoteTier[] tiers;
    }

    /// One price line of a quote.
    struct QuoteTier {
        uint64 minPromptTokens;
        uint64 minOutputTokens;
        uint256 inputPrice;
        uint256 outputPrice;
        uint256 cachedPrice;
    }

    /// A verifier's verdict on one dispute of the contract.
    struct Verdict {
        uint256 dispute;
        bool guilty;
    }

    /// A user's request for its account statement at one provider, at one
    /// time: proves the asker holds the user's (or its delegate's) key.
    struct StatementRequest {
        address user;
        address provider;
        uint256 timestamp;
    }
}

/// Where signatures are valid: one chain, one deployment of the contract.
/// The domain separator is computed once, since every request hashes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain {
    pub chain_id: u64,
    pub contract: Address,
    separator: B256,
}

impl Domain {
    pub fn new(chain_id: u64, contract: Address) -> Self {
        let separator = eip712_domain! {
            name: "zg-serving",
            version: "1",
            chain_id: chain_id,
            verifying_contract: contract,
        }
        .hash_struct();
        Self {
            chain_id,
            contract,
            separator,
        }
    }

    pub fn separator(&self) -> B256 {
        self.separator
    }

    /// `keccak256("\x19\x01" || separator || hashStruct(value))`.
    pub(crate) fn signing_hash(&self, value: &impl SolStruct) -> B256 {
        let mut buf = [0u8; 66];
        buf[..2].copy_from_slice(b"\x19\x01");
        buf[2..34].copy_from_slice(self.separator.as_slice());
        buf[34..].copy_from_slice(value.eip712_hash_struct().as_slice());
        keccak256(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_strings_match_the_design() {
        assert_eq!(
            Voucher::eip712_encode_type(),
            "Voucher(address user,address provider,uint256 cumulative,bytes32 requestDigest)"
        );
        assert_eq!(
            Receipt::eip712_encode_type(),
            "Receipt(address user,address provider,bytes32 service,bytes32 modelDigest,\
             bytes32 requestDigest,bytes32 responseDigest,uint256 inputTokens,\
             uint256 outputTokens,uint256 cachedTokens,uint256 inputPrice,uint256 outputPrice,\
             uint256 cachedPrice,uint256 fee,uint256 owed,bytes32 proofDigest,uint64 issuedAt)"
        );
        assert_eq!(
            Quote::eip712_encode_type(),
            "Quote(address provider,bytes32 service,uint64 issuedAt,uint64 validUntil,\
             uint64 maxOutputTokens,QuoteTier[] tiers)QuoteTier(uint64 minPromptTokens,\
             uint64 minOutputTokens,uint256 inputPrice,uint256 outputPrice,uint256 cachedPrice)"
        );
        assert_eq!(
            Verdict::eip712_encode_type(),
            "Verdict(uint256 dispute,bool guilty)"
        );
        assert_eq!(
            StatementRequest::eip712_encode_type(),
            "StatementRequest(address user,address provider,uint256 timestamp)"
        );
    }

    #[test]
    fn separator_depends_on_chain_and_contract() {
        let a = Domain::new(1, Address::repeat_byte(1));
        assert_ne!(
            a.separator(),
            Domain::new(2, Address::repeat_byte(1)).separator()
        );
        assert_ne!(
            a.separator(),
            Domain::new(1, Address::repeat_byte(2)).separator()
        );
    }
}
