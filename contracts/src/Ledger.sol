// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// The ledger: each address's free balance, in neuron. Deposits land here,
// escrow is funded from here, refunds and provider earnings come back here,
// and `withdraw` is the one way out.

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

abstract contract Ledger is ReentrancyGuard {
    mapping(address => uint256) public balanceOf;

    event Deposited(address indexed account, uint256 amount, uint256 balance);
    event Withdrawn(address indexed account, uint256 amount, uint256 balance);

    error ZeroAmount();
    error InsufficientBalance(address account, uint256 available, uint256 requested);
    error TransferFailed(address to, uint256 amount);

    /// Adds the value sent to the caller's free balance.
    function deposit() external payable {
        if (msg.value == 0) revert ZeroAmount();
        uint256 balance = balanceOf[msg.sender] + msg.value;
        balanceOf[msg.sender] = balance;
        emit Deposited(msg.sender, msg.value, balance);
    }

    /// Sends `amount` of the caller's free balance (not what is in escrow) to the caller.
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _debit(msg.sender, amount);
        emit Withdrawn(msg.sender, amount, balance);
        _send(msg.sender, amount);
    }

    function _debit(address account, uint256 amount) internal returns (uint256 balance) {
        uint256 available = balanceOf[account];
        if (amount > available) revert InsufficientBalance(account, available, amount);
        unchecked {
            balance = available - amount;
        }
        balanceOf[account] = balance;
    }

    /// Callers update their books before this (checks-effects-interactions);
    /// `nonReentrant` on every path that reaches it is the second guard.
    function _send(address to, uint256 amount) internal {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
