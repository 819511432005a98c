// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// The service registry: a provider stakes and lists any number of named
// services. Removing the last one starts the stake's unbonding: it stays
// slashable (Disputes.sol) until `withdrawStake` after the unbonding period,
// and never leaves while a dispute against the provider is open.

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ledger} from "./Ledger.sol";
import {Service, ServiceParams} from "./Types.sol";

abstract contract Registry is Ledger, Ownable {
    struct ProviderSlot {
        uint128 stake;
        uint32 serviceCount;
        uint32 openDisputes;
        uint64 unbondAt; // 0: bonded; else when withdrawStake may return the stake
    }

    uint256 public constant MAX_MIN_STAKE = 1_000_000 ether;
    uint256 public minStake;

    mapping(address provider => ProviderSlot) internal _providers;
    /// Keyed by keccak256(abi.encode(provider, keccak256(name))). A removed
    /// service stays here (unlisted) so its receipts can still be disputed.
    mapping(bytes32 key => Service) internal _services;
    /// What a service's receipts were checked against before its last change
    /// of signer, model digest or method, and until when (Disputes.sol).
    struct Commitment {
        address signer;
        bytes32 modelDigest;
        bytes32 methodHash; // keccak256 of the verifiability text
        uint64 until;
    }

    mapping(bytes32 key => Commitment) internal _previous;
    /// Position + 1 in `_allKeys` (0: not listed), for swap-and-pop removal.
    mapping(bytes32 key => uint256) internal _allIndex;
    mapping(bytes32 key => uint256) internal _providerIndex;
    bytes32[] internal _allKeys;
    mapping(address provider => bytes32[]) internal _providerKeys;

    event ServiceUpdated(address indexed provider, bytes32 indexed nameHash, string name, bool added);
    event ServiceRemoved(address indexed provider, bytes32 indexed nameHash, string name);
    event Staked(address indexed provider, uint256 amount, uint256 stake);
    event StakeReturned(address indexed provider, uint256 amount);
    event UnbondingStarted(address indexed provider, uint256 stake, uint64 unbondAt);
    event MinStakeSet(uint256 minStake);

    error EmptyServiceName();
    /// A cached prompt token may not cost more than an uncached one.
    error CachedPriceAboveInput(uint256 cachedInputPrice, uint256 inputPrice);
    error StakeTooLow(address provider, uint256 stake, uint256 required);
    error ServiceNotFound(address provider, string name);
    error MinStakeOutOfBounds(uint256 minStake, uint256 max);
    error FreshStakeRequired(address provider, string name, uint256 required);
    error StakeStillListed(address provider, uint256 services);
    error NoStake(address provider);
    error StakeUnbonding(address provider, uint64 unbondAt);
    error DisputesOpen(address provider, uint256 open);
    error CommitmentHeld(address provider, string name, uint64 until);

    constructor(uint256 minStake_) {
        _setMinStake(minStake_);
    }

    /// Lists a new service or updates the caller's service of the same name.
    /// Value sent adds to the stake, which must reach `minStake`; listing
    /// ends an unbonding. A service that failed verification is listed again
    /// only with fresh stake (at least `minStake` sent).
    function addOrUpdateService(ServiceParams calldata params) external payable {
        if (bytes(params.name).length == 0) revert EmptyServiceName();
        if (params.cachedInputPrice > params.inputPrice) {
            revert CachedPriceAboveInput(params.cachedInputPrice, params.inputPrice);
        }
        bytes32 nameHash = keccak256(bytes(params.name));
        bytes32 key = _serviceKey(msg.sender, nameHash);
        Service storage s = _services[key];
        if (s.failedAt != 0) {
            if (msg.value < minStake) revert FreshStakeRequired(msg.sender, params.name, minStake);
            s.failedAt = 0;
        }
        ProviderSlot memory p = _providers[msg.sender];
        uint256 stake = uint256(p.stake) + msg.value;
        if (stake < minStake) revert StakeTooLow(msg.sender, stake, minStake);
        if (msg.value != 0) emit Staked(msg.sender, msg.value, stake);
        _keepCommitment(key, s, params);

        bool added = _allIndex[key] == 0;
        if (added) {
            _allKeys.push(key);
            _allIndex[key] = _allKeys.length;
            _providerKeys[msg.sender].push(key);
            _providerIndex[key] = _providerKeys[msg.sender].length;
            p.serviceCount += 1;
        }
        _providers[msg.sender] = ProviderSlot(uint128(stake), p.serviceCount, p.openDisputes, 0);

        s.provider = msg.sender;
        s.name = params.name;
        s.kind = params.kind;
        s.url = params.url;
        s.model = params.model;
        s.modelDigest = params.modelDigest;
        s.hardware = params.hardware;
        s.inputPrice = params.inputPrice;
        s.outputPrice = params.outputPrice;
        s.cachedInputPrice = params.cachedInputPrice;
        s.verifiability = params.verifiability;
        s.signer = params.signer;
        s.updatedAt = uint64(block.timestamp);
        emit ServiceUpdated(msg.sender, nameHash, params.name, added);
    }

    /// Removes the caller's service `name`; removing the last one starts the
    /// stake's unbonding period.
    function removeService(string calldata name) external {
        bytes32 nameHash = keccak256(bytes(name));
        bytes32 key = _serviceKey(msg.sender, nameHash);
        uint256 index = _allIndex[key];
        if (index == 0) revert ServiceNotFound(msg.sender, name);

        _removeKey(_allKeys, _allIndex, key, index);
        _removeKey(_providerKeys[msg.sender], _providerIndex, key, _providerIndex[key]);
        emit ServiceRemoved(msg.sender, nameHash, name);

        ProviderSlot storage p = _providers[msg.sender];
        p.serviceCount -= 1;
        if (p.serviceCount == 0) {
            uint64 unbondAt = uint64(block.timestamp) + _unbondingPeriod();
            p.unbondAt = unbondAt;
            emit UnbondingStarted(msg.sender, p.stake, unbondAt);
        }
    }

    /// Returns the caller's whole stake once it has no service listed, its
    /// unbonding period is over and no dispute against it is open.
    function withdrawStake() external nonReentrant {
        ProviderSlot memory p = _providers[msg.sender];
        if (p.serviceCount != 0) revert StakeStillListed(msg.sender, p.serviceCount);
        if (p.stake == 0) revert NoStake(msg.sender);
        if (p.openDisputes != 0) revert DisputesOpen(msg.sender, p.openDisputes);
        if (block.timestamp < p.unbondAt) revert StakeUnbonding(msg.sender, p.unbondAt);
        delete _providers[msg.sender];
        emit StakeReturned(msg.sender, p.stake);
        _send(msg.sender, p.stake);
    }

    /// How long a stake stays slashable after the last service is removed.
    function _unbondingPeriod() internal view virtual returns (uint64);

    /// How long the receipts of a replaced signer, model or method stay
    /// disputable: the dispute window plus the allowed clock skew.
    function _commitmentHold() internal view virtual returns (uint64);

    /// When an update replaces what receipts are checked against (signer,
    /// model digest, method), the old values stay in force for disputes for
    /// `_commitmentHold()`, and cannot be replaced again until then: a
    /// provider cannot make its past receipts undisputable by re-keying.
    function _keepCommitment(bytes32 key, Service storage s, ServiceParams calldata params) private {
        if (s.signer == address(0)) return; // never listed
        bytes32 method = keccak256(bytes(s.verifiability));
        if (
            s.signer == params.signer && s.modelDigest == params.modelDigest
                && method == keccak256(bytes(params.verifiability))
        ) return;
        uint64 until = _previous[key].until;
        if (until >= block.timestamp) revert CommitmentHeld(msg.sender, params.name, until);
        until = uint64(block.timestamp) + _commitmentHold();
        _previous[key] = Commitment(s.signer, s.modelDigest, method, until);
    }

    function setMinStake(uint256 minStake_) external onlyOwner {
        _setMinStake(minStake_);
    }

    function _setMinStake(uint256 minStake_) private {
        if (minStake_ > MAX_MIN_STAKE) revert MinStakeOutOfBounds(minStake_, MAX_MIN_STAKE);
        minStake = minStake_;
        emit MinStakeSet(minStake_);
    }

    function _serviceKey(address provider, bytes32 nameHash) internal pure returns (bytes32) {
        return keccak256(abi.encode(provider, nameHash));
    }

    function _removeKey(
        bytes32[] storage keys,
        mapping(bytes32 => uint256) storage indexOf,
        bytes32 key,
        uint256 index
    ) private {
        uint256 last = keys.length;
        if (index != last) {
            bytes32 moved = keys[last - 1];
            keys[index - 1] = moved;
            indexOf[moved] = index;
        }
        keys.pop();
        delete indexOf[key];
    }

    // ---- views ----

    /// A provider's stake, listed services, open disputes against it, and
    /// when an unbonding stake may be withdrawn (0: bonded).
    function stakeOf(address provider)
        external
        view
        returns (uint256 stake, uint256 serviceCount, uint256 openDisputes, uint64 unbondAt)
    {
        ProviderSlot memory p = _providers[provider];
        return (p.stake, p.serviceCount, p.openDisputes, p.unbondAt);
    }

    /// The service `name` of `provider`; reverts with ServiceNotFound if there is none.
    function getService(address provider, string calldata name) external view returns (Service memory) {
        bytes32 key = _serviceKey(provider, keccak256(bytes(name)));
        if (_allIndex[key] == 0) revert ServiceNotFound(provider, name);
        return _services[key];
    }

    /// All listed services, a page at a time (order changes when one is removed).
    function services(uint256 offset, uint256 limit) external view returns (Service[] memory page, uint256 total) {
        return _page(_allKeys, offset, limit);
    }

    /// The services of `provider`, a page at a time.
    function servicesOf(address provider, uint256 offset, uint256 limit)
        external
        view
        returns (Service[] memory page, uint256 total)
    {
        return _page(_providerKeys[provider], offset, limit);
    }

    function _page(bytes32[] storage keys, uint256 offset, uint256 limit)
        private
        view
        returns (Service[] memory page, uint256 total)
    {
        total = keys.length;
        uint256 n = offset >= total ? 0 : (total - offset < limit ? total - offset : limit);
        page = new Service[](n);
        for (uint256 i = 0; i < n; i++) {
            page[i] = _services[keys[offset + i]];
        }
    }
}
