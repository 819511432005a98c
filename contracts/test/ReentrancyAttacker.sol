// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// Test-only: an account whose receive() calls back into the contract that is
// paying it, to prove every payout path is closed to reentrancy.

contract ReentrancyAttacker {
    address public immutable target;
    bytes public reentryCall;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(address target_) {
        target = target_;
    }

    /// Calls `target` with `data` (and the value sent), bubbling up a revert.
    function execute(bytes calldata data) external payable {
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
    }

    /// What receive() calls into `target` the first time it is paid.
    function setReentry(bytes calldata data) external {
        reentryCall = data;
    }

    receive() external payable {
        if (reentryCall.length == 0 || reentryAttempts != 0) return;
        reentryAttempts = 1;
        (bool ok, bytes memory ret) = target.call(reentryCall);
        reentrySucceeded = ok;
        reentryError = ret;
    }
}
