// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// EIP-712 hashing of vouchers, receipts and verifiers' verdicts under the domain
// ("zg-serving", "1", chainId, this contract), so signatures can't be replayed
// on another chain or deployment.

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Voucher, Receipt} from "./Types.sol";

abstract contract VoucherHashing is EIP712 {
    bytes32 internal constant VOUCHER_TYPEHASH =
        keccak256("Voucher(address user,address provider,uint256 cumulative,bytes32 requestDigest)");
    bytes32 internal constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(address user,address provider,bytes32 service,bytes32 modelDigest,bytes32 requestDigest,"
        "bytes32 responseDigest,uint256 inputTokens,uint256 outputTokens,uint256 cachedTokens,uint256 inputPrice,"
        "uint256 outputPrice,uint256 cachedPrice,uint256 fee,uint256 owed,bytes32 proofDigest,uint64 issuedAt)"
    );
    bytes32 internal constant VERDICT_TYPEHASH = keccak256("Verdict(uint256 dispute,bool guilty)");

    constructor() EIP712("zg-serving", "1") {}

    /// The EIP-712 digest a user signs for `voucher`.
    function voucherDigest(Voucher calldata voucher) external view returns (bytes32) {
        return _voucherDigest(voucher, _domainSeparatorV4());
    }

    /// The EIP-712 digest a provider's signer signs for `receipt`.
    function receiptDigest(Receipt calldata receipt) external view returns (bytes32) {
        return _receiptDigest(receipt);
    }

    /// The EIP-712 digest a verifier signs for its verdict on dispute `id`.
    function verdictDigest(uint256 id, bool guilty) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(VERDICT_TYPEHASH, id, guilty)));
    }

    function _receiptDigest(Receipt calldata receipt) internal view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(RECEIPT_TYPEHASH, receipt)));
    }

    /// The domain separator in force (chain id and address of this deployment).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// Settlement hashes every voucher, so this skips abi.encode's memory
    /// bookkeeping: the four static fields are copied straight from calldata.
    function _voucherDigest(Voucher calldata voucher, bytes32 separator) internal pure returns (bytes32 digest) {
        bytes32 typehash = VOUCHER_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), voucher, 0x80)
            let structHash := keccak256(ptr, 0xa0)
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), separator)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
    }
}
