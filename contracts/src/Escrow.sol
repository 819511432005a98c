// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// Escrow per (user, provider): funded from the ledger, spent by settlement,
// returned through a time-locked refund. The escrow balance and the settled
// total share one storage slot so a settled voucher costs one read and one write.

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ledger} from "./Ledger.sol";
import {Account} from "./Types.sol";

abstract contract Escrow is Ledger, Ownable {
    /// Hot state of an account: read and written once per settled voucher.
    struct EscrowSlot {
        uint128 balance; // what settlement can still take
        uint128 settled; // everything ever paid to the provider
    }

    /// Cold state: a pending refund, and whether the pair is in the paged lists.
    struct RefundSlot {
        uint128 amount;
        uint64 unlockAt;
        bool listed;
    }

    uint64 public constant MIN_LOCK_PERIOD = 1 minutes;
    uint64 public constant MAX_LOCK_PERIOD = 30 days;
    uint64 public lockPeriod;

    mapping(address user => mapping(address provider => EscrowSlot)) internal _escrow;
    mapping(address user => mapping(address provider => RefundSlot)) internal _refund;
    mapping(address provider => address[]) internal _usersOf;
    mapping(address user => address[]) internal _providersOf;

    event Funded(address indexed user, address indexed provider, uint256 amount, uint256 escrow);
    event RefundRequested(address indexed user, address indexed provider, uint256 amount, uint64 unlockAt);
    event RefundCancelled(address indexed user, address indexed provider, uint256 amount);
    event RefundClaimed(address indexed user, address indexed provider, uint256 amount, uint256 escrow);
    event LockPeriodSet(uint64 lockPeriod);

    error AmountTooLarge(uint256 amount);
    error InsufficientEscrow(address user, address provider, uint256 escrow, uint256 requested);
    error NoRefundPending(address user, address provider);
    error RefundLocked(address user, address provider, uint64 unlockAt);
    error LockPeriodOutOfBounds(uint64 lockPeriod, uint64 min, uint64 max);

    constructor(uint64 lockPeriod_) {
        _setLockPeriod(lockPeriod_);
    }

    /// Moves `amount` of the caller's free balance into escrow for `provider`,
    /// cancelling any pending refund from that escrow.
    function fund(address provider, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        _debit(msg.sender, amount);
        EscrowSlot memory e = _escrow[msg.sender][provider];
        uint256 balance = uint256(e.balance) + amount;
        if (balance > type(uint128).max) revert AmountTooLarge(amount);
        _escrow[msg.sender][provider] = EscrowSlot(uint128(balance), e.settled);

        RefundSlot memory r = _refund[msg.sender][provider];
        if (!r.listed) {
            _usersOf[provider].push(msg.sender);
            _providersOf[msg.sender].push(provider);
        }
        if (r.amount != 0) emit RefundCancelled(msg.sender, provider, r.amount);
        if (!r.listed || r.amount != 0) _refund[msg.sender][provider] = RefundSlot(0, 0, true);
        emit Funded(msg.sender, provider, amount, balance);
    }

    /// Asks for `amount` of the escrow back after `lockPeriod`; the provider can
    /// settle against the whole escrow until then. Replaces any pending request.
    function requestRefund(address provider, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _escrow[msg.sender][provider].balance;
        if (amount > balance) revert InsufficientEscrow(msg.sender, provider, balance, amount);
        uint64 unlockAt = uint64(block.timestamp) + lockPeriod;
        _refund[msg.sender][provider] = RefundSlot(uint128(amount), unlockAt, true);
        emit RefundRequested(msg.sender, provider, amount, unlockAt);
    }

    /// After the unlock, returns to the ledger what is left of the requested
    /// amount once settlement has taken its share.
    function claimRefund(address provider) external {
        RefundSlot memory r = _refund[msg.sender][provider];
        if (r.amount == 0) revert NoRefundPending(msg.sender, provider);
        if (block.timestamp < r.unlockAt) revert RefundLocked(msg.sender, provider, r.unlockAt);
        EscrowSlot memory e = _escrow[msg.sender][provider];
        uint128 amount = r.amount < e.balance ? r.amount : e.balance;
        uint128 balance = e.balance - amount;
        _escrow[msg.sender][provider] = EscrowSlot(balance, e.settled);
        _refund[msg.sender][provider] = RefundSlot(0, 0, true);
        balanceOf[msg.sender] += amount;
        emit RefundClaimed(msg.sender, provider, amount, balance);
    }

    function setLockPeriod(uint64 lockPeriod_) external onlyOwner {
        _setLockPeriod(lockPeriod_);
    }

    function _setLockPeriod(uint64 lockPeriod_) private {
        if (lockPeriod_ < MIN_LOCK_PERIOD || lockPeriod_ > MAX_LOCK_PERIOD) {
            revert LockPeriodOutOfBounds(lockPeriod_, MIN_LOCK_PERIOD, MAX_LOCK_PERIOD);
        }
        lockPeriod = lockPeriod_;
        emit LockPeriodSet(lockPeriod_);
    }

    // ---- views ----

    function account(address user, address provider) public view returns (Account memory) {
        EscrowSlot memory e = _escrow[user][provider];
        RefundSlot memory r = _refund[user][provider];
        return Account(user, provider, e.balance, e.settled, r.amount, r.unlockAt);
    }

    /// The accounts users hold at `provider`, in the order they were first funded.
    function accountsOfProvider(address provider, uint256 offset, uint256 limit)
        external
        view
        returns (Account[] memory accounts, uint256 total)
    {
        address[] storage users = _usersOf[provider];
        total = users.length;
        uint256 n = _pageLength(total, offset, limit);
        accounts = new Account[](n);
        for (uint256 i = 0; i < n; i++) {
            accounts[i] = account(users[offset + i], provider);
        }
    }

    /// The accounts `user` holds at providers, in the order they were first funded.
    function accountsOfUser(address user, uint256 offset, uint256 limit)
        external
        view
        returns (Account[] memory accounts, uint256 total)
    {
        address[] storage providers = _providersOf[user];
        total = providers.length;
        uint256 n = _pageLength(total, offset, limit);
        accounts = new Account[](n);
        for (uint256 i = 0; i < n; i++) {
            accounts[i] = account(user, providers[offset + i]);
        }
    }

    function _pageLength(uint256 total, uint256 offset, uint256 limit) internal pure returns (uint256) {
        if (offset >= total) return 0;
        uint256 left = total - offset;
        return left < limit ? left : limit;
    }
}
