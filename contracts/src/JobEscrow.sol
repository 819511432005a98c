// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// The escrow side of fine-tuning jobs: the FineTuning contract this one
// deploys (and only it) reserves a job's maximum fee from a user's escrow at
// a provider, and releases the reservation as the provider's pay and the
// user's return. A reservation is out of the escrow balance, so neither
// voucher settlement nor a refund can take it while the job runs.

import {Escrow} from "./Escrow.sol";
import {FineTuning, IJobEscrow} from "./FineTuning.sol";

abstract contract JobEscrow is Escrow {
    FineTuning public immutable fineTuning;

    event JobReserved(address indexed user, address indexed provider, uint256 amount, uint256 escrow);
    event JobReleased(address indexed user, address indexed provider, uint256 paid, uint256 returned, uint256 escrow);

    error OnlyFineTuning(address caller);

    constructor() {
        fineTuning = new FineTuning(IJobEscrow(address(this)));
    }

    function reserveForJob(address user, address provider, uint256 amount) external {
        _onlyFineTuning();
        EscrowSlot memory e = _escrow[user][provider];
        if (amount > e.balance) revert InsufficientEscrow(user, provider, e.balance, amount);
        uint128 balance = e.balance - uint128(amount);
        _escrow[user][provider] = EscrowSlot(balance, e.settled);
        emit JobReserved(user, provider, amount, balance);
    }

    /// `paid` goes to the provider's free balance (not to `settled`, which
    /// is the baseline of the user's cumulative vouchers), `returned` back
    /// into the escrow; together they are what `reserveForJob` took.
    function releaseJob(address user, address provider, uint256 paid, uint256 returned) external {
        _onlyFineTuning();
        EscrowSlot memory e = _escrow[user][provider];
        // returned <= the reservation, which came out of this balance.
        uint128 balance = e.balance + uint128(returned);
        _escrow[user][provider] = EscrowSlot(balance, e.settled);
        if (paid != 0) balanceOf[provider] += paid;
        emit JobReleased(user, provider, paid, returned, balance);
    }

    function _onlyFineTuning() private view {
        if (msg.sender != address(fineTuning)) revert OnlyFineTuning(msg.sender);
    }
}
