// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// The one deployed contract of zg-serving: ledger, escrow with refunds,
// service registry, voucher settlement, disputes and the escrow side of
// fine-tuning jobs, each in its own file (it deploys FineTuning.sol, which
// holds the jobs themselves).

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Escrow} from "./Escrow.sol";
import {Disputes} from "./Disputes.sol";
import {JobEscrow} from "./JobEscrow.sol";
import {Registry} from "./Registry.sol";
import {Settlement} from "./Settlement.sol";

contract ZgServing is Settlement, Disputes, JobEscrow {
    /// `lockPeriod_` in seconds (1 minute .. 30 days); `minStake_` in neuron (<= MAX_MIN_STAKE).
    constructor(uint64 lockPeriod_, uint256 minStake_)
        Ownable(msg.sender)
        Escrow(lockPeriod_)
        Registry(minStake_)
    {}
}
