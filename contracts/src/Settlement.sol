// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// Batch settlement of vouchers by the provider they name. A bad voucher is
// reported and skipped, never reverting the batch; the provider's earnings are
// summed in memory and credited to its ledger balance once per batch.

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Escrow} from "./Escrow.sol";
import {VoucherHashing} from "./VoucherHashing.sol";
import {Voucher, RejectReason} from "./Types.sol";

abstract contract Settlement is Escrow, VoucherHashing {
    /// A key the user lets sign vouchers for them (e.g. a gateway's hot key).
    mapping(address user => address) public voucherSigner;

    event VoucherSignerSet(address indexed user, address signer);
    event VoucherSettled(address indexed user, address indexed provider, uint256 paid, uint256 settled, uint256 escrow);
    event VoucherRejected(address indexed user, address indexed provider, uint256 index, RejectReason reason);
    event BatchSettled(address indexed provider, uint256 vouchers, uint256 paid, uint256 balance);

    error LengthMismatch(uint256 vouchers, uint256 signatures);

    /// Lets `signer` sign vouchers on the caller's behalf (address(0) revokes).
    function setVoucherSigner(address signer) external {
        voucherSigner[msg.sender] = signer;
        emit VoucherSignerSet(msg.sender, signer);
    }

    /// Pays the caller, for each voucher, min(cumulative - settled, escrow).
    /// `signatures[i]` is the 65-byte r||s||v signature of `vouchers[i]`'s EIP-712 digest.
    function settle(Voucher[] calldata vouchers, bytes[] calldata signatures) external {
        uint256 count = vouchers.length;
        if (count != signatures.length) revert LengthMismatch(count, signatures.length);
        bytes32 separator = _domainSeparatorV4();
        uint256 earned;
        uint256 settledCount;
        for (uint256 i = 0; i < count;) {
            Voucher calldata v = vouchers[i];
            (RejectReason reason, uint256 paid) = _settleOne(v, signatures[i], separator);
            if (reason == RejectReason.None) {
                unchecked {
                    earned += paid;
                    ++settledCount;
                }
            } else {
                emit VoucherRejected(v.user, v.provider, i, reason);
            }
            unchecked {
                ++i;
            }
        }
        // One write for the whole batch: this is where providers' earnings land.
        uint256 balance = balanceOf[msg.sender];
        if (earned != 0) {
            balance += earned;
            balanceOf[msg.sender] = balance;
        }
        emit BatchSettled(msg.sender, settledCount, earned, balance);
    }

    function _settleOne(Voucher calldata v, bytes calldata signature, bytes32 separator)
        private
        returns (RejectReason, uint256 paid)
    {
        address user = v.user;
        if (v.provider != msg.sender) return (RejectReason.WrongProvider, 0);

        bytes32 digest = _voucherDigest(v, separator);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError) return (RejectReason.BadSignature, 0);
        // The delegated signer is read only when the user did not sign themselves.
        if (signer != user && signer != voucherSigner[user]) return (RejectReason.BadSignature, 0);

        EscrowSlot memory e = _escrow[user][msg.sender];
        uint256 cumulative = v.cumulative;
        if (cumulative <= e.settled) return (RejectReason.NotNewer, 0);
        if (e.balance == 0) return (RejectReason.EscrowEmpty, 0);
        unchecked {
            uint256 due = cumulative - e.settled;
            paid = due < e.balance ? due : e.balance;
            // paid <= balance, and settled + paid <= all neuron ever funded < 2^128.
            e.balance -= uint128(paid);
            e.settled += uint128(paid);
        }
        _escrow[user][msg.sender] = e;
        emit VoucherSettled(user, msg.sender, paid, e.settled, e.balance);
        return (RejectReason.None, paid);
    }
}
