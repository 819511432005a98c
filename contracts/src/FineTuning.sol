// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// Fine-tuning jobs. A user's signed order lets the provider start a job,
// which reserves the order's maximum fee from the user's escrow at that
// provider; the provider delivers the hash of the encrypted adapter and the
// fee, the user acknowledges, and settlement pays the fee, returns the rest
// and publishes the content key encrypted to the order's signer. No
// acknowledgement in time: the provider takes only the penalty share. No
// delivery in time: the user abandons the job and the reservation returns.
// Deployed by ZgServing, whose registry it reads and whose escrow it
// reserves from; trust and clocks in docs/fine-tuning.md.

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {FineTuningOrder, FineTuningParams, FineTuningTerms, Job, JobState, Service} from "./Types.sol";

/// What FineTuning needs of the ZgServing that deployed it.
interface IJobEscrow {
    function getService(address provider, string calldata name) external view returns (Service memory);
    function voucherSigner(address user) external view returns (address);
    function owner() external view returns (address);
    function reserveForJob(address user, address provider, uint256 amount) external;
    function releaseJob(address user, address provider, uint256 paid, uint256 returned) external;
}

contract FineTuning is EIP712 {
    bytes32 internal constant ORDER_TYPEHASH = keccak256(
        "FineTuningOrder(address user,address provider,string service,bytes32 baseModel,bytes32 trainingFile,"
        "bytes32 validationFile,uint32 epochs,uint32 batchSize,uint32 rank,uint32 learningRateMultiplierPpm,"
        "uint256 maxFee,uint64 startBy,bytes16 nonce)"
    );
    bytes32 internal constant KIND = keccak256("fine-tuning");
    uint64 public constant MIN_TIMEOUT = 1 minutes;
    uint64 public constant MAX_TIMEOUT = 90 days;
    uint16 public constant MAX_PENALTY_BPS = 10_000;
    uint256 public constant MAX_BASE_MODELS = 16;
    uint256 public constant MAX_KEY_BYTES = 256;

    IJobEscrow public immutable escrow;
    FineTuningParams internal _params;
    mapping(bytes32 serviceKey => FineTuningTerms) internal _terms;
    mapping(bytes32 id => Job) internal _jobs;
    mapping(bytes32 id => bytes) internal _contentKeys;

    event TermsSet(address indexed provider, bytes32 indexed service, bytes32[] baseModels, uint64 maxFileBytes, uint32 maxEpochs);
    event JobStarted(bytes32 indexed id, address indexed user, address indexed provider, bytes32 service, uint256 reserved);
    event JobDelivered(bytes32 indexed id, bytes32 deliverable, uint256 trainedTokens, uint256 fee);
    event JobAcknowledged(bytes32 indexed id);
    event JobSettled(bytes32 indexed id, uint256 paid, uint256 returned, bytes encryptedKey);
    event JobAbandoned(bytes32 indexed id, uint256 returned);
    event JobCancelled(bytes32 indexed id, uint256 returned);
    event FineTuningParamsSet(FineTuningParams params);

    error NotOwner(address caller);
    error NotFineTuning(address provider, string service, string kind);
    error NoTerms(address provider, string service);
    error TooManyBaseModels(uint256 count, uint256 max);
    error BadTerms(uint64 maxFileBytes, uint32 maxEpochs);
    error NotProvider(address caller, address provider);
    error NotUser(address caller, address user);
    error BadOrderSignature(address recovered, address user);
    error BaseModelNotAccepted(bytes32 baseModel);
    error BadEpochs(uint32 epochs, uint32 max);
    error ZeroFee();
    error OrderExpired(uint64 startBy, uint64 at);
    error JobExists(bytes32 id);
    error WrongState(bytes32 id, JobState state);
    error FeeAboveReserved(uint256 fee, uint256 reserved);
    error FeeAbovePrice(uint256 fee, uint256 trainedTokens, uint256 pricePerToken);
    error NoDeliverable();
    error BadKey(uint256 length, uint256 max);
    error TooEarly(bytes32 id, uint64 at);
    error ParamsOutOfBounds(FineTuningParams params);

    constructor(IJobEscrow escrow_) EIP712("zg-serving fine-tuning", "1") {
        escrow = escrow_;
        _params = FineTuningParams({deliveryTimeout: 1 days, ackTimeout: 1 days, penaltyBps: 1_000});
    }

    // ---- the provider's terms ----

    /// Sets what the caller's fine-tuning service `name` accepts.
    function setTerms(string calldata name, bytes32[] calldata baseModels, uint64 maxFileBytes, uint32 maxEpochs)
        external
    {
        Service memory s = escrow.getService(msg.sender, name);
        if (keccak256(bytes(s.kind)) != KIND) revert NotFineTuning(msg.sender, name, s.kind);
        if (baseModels.length == 0 || baseModels.length > MAX_BASE_MODELS) {
            revert TooManyBaseModels(baseModels.length, MAX_BASE_MODELS);
        }
        if (maxFileBytes == 0 || maxEpochs == 0) revert BadTerms(maxFileBytes, maxEpochs);
        bytes32 nameHash = keccak256(bytes(name));
        _terms[_serviceKey(msg.sender, nameHash)] = FineTuningTerms(baseModels, maxFileBytes, maxEpochs);
        emit TermsSet(msg.sender, nameHash, baseModels, maxFileBytes, maxEpochs);
    }

    // ---- a job's life ----

    /// Starts the job `order` describes (the caller is its provider, until
    /// the order's `startBy`) and reserves its maximum fee from the user's
    /// escrow. Returns the job id, the order's EIP-712 digest.
    function startJob(FineTuningOrder calldata order, bytes calldata signature) external returns (bytes32 id) {
        if (msg.sender != order.provider) revert NotProvider(msg.sender, order.provider);
        if (block.timestamp > order.startBy) revert OrderExpired(order.startBy, uint64(block.timestamp));
        id = orderDigest(order);
        if (_jobs[id].state != JobState.None) revert JobExists(id);
        address signer = ECDSA.recover(id, signature);
        if (signer != order.user && signer != escrow.voucherSigner(order.user)) {
            revert BadOrderSignature(signer, order.user);
        }
        Service memory s = escrow.getService(order.provider, order.service);
        if (keccak256(bytes(s.kind)) != KIND) revert NotFineTuning(order.provider, order.service, s.kind);
        bytes32 nameHash = keccak256(bytes(order.service));
        _checkTerms(_terms[_serviceKey(order.provider, nameHash)], order);
        if (order.maxFee == 0) revert ZeroFee();

        escrow.reserveForJob(order.user, order.provider, order.maxFee);
        Job storage job = _jobs[id];
        job.user = order.user;
        job.provider = order.provider;
        job.signer = signer;
        job.service = nameHash;
        job.reserved = order.maxFee;
        job.pricePerToken = s.inputPrice;
        job.startedAt = uint64(block.timestamp);
        job.state = JobState.Training;
        emit JobStarted(id, order.user, order.provider, nameHash, order.maxFee);
    }

    /// The provider publishes the sha256 of the encrypted adapter, the
    /// tokens it trained on and the fee (at most the reservation and the
    /// tokens at the price in force when the job started).
    function deliver(bytes32 id, bytes32 deliverable, uint256 trainedTokens, uint256 fee) external {
        Job storage job = _jobAs(id, JobState.Training);
        if (msg.sender != job.provider) revert NotProvider(msg.sender, job.provider);
        if (deliverable == bytes32(0)) revert NoDeliverable();
        if (fee > job.reserved) revert FeeAboveReserved(fee, job.reserved);
        if (fee > trainedTokens * job.pricePerToken) revert FeeAbovePrice(fee, trainedTokens, job.pricePerToken);
        job.deliverable = deliverable;
        job.trainedTokens = trainedTokens;
        job.fee = fee;
        job.deliveredAt = uint64(block.timestamp);
        job.state = JobState.Delivered;
        emit JobDelivered(id, deliverable, trainedTokens, fee);
    }

    /// The user (or the key that signed the order) accepts the deliverable.
    function acknowledge(bytes32 id) external {
        Job storage job = _jobAs(id, JobState.Delivered);
        _onlyUser(job);
        job.acknowledgedAt = uint64(block.timestamp);
        job.state = JobState.Acknowledged;
        emit JobAcknowledged(id);
    }

    /// Pays the provider and returns the rest of the reservation: the whole
    /// fee against the content key once acknowledged, or only the penalty
    /// share once the acknowledgement is overdue (the key then stays with
    /// the provider: the user did not pay for the adapter).
    function settleJob(bytes32 id, bytes calldata encryptedKey) external {
        Job storage job = _jobs[id];
        if (msg.sender != job.provider) revert NotProvider(msg.sender, job.provider);
        uint256 paid;
        if (job.state == JobState.Acknowledged) {
            if (encryptedKey.length == 0 || encryptedKey.length > MAX_KEY_BYTES) {
                revert BadKey(encryptedKey.length, MAX_KEY_BYTES);
            }
            paid = job.fee;
            _contentKeys[id] = encryptedKey;
        } else if (job.state == JobState.Delivered) {
            uint64 due = job.deliveredAt + _params.ackTimeout;
            if (block.timestamp < due) revert TooEarly(id, due);
            paid = job.fee * _params.penaltyBps / 10_000;
        } else {
            revert WrongState(id, job.state);
        }
        uint256 returned = job.reserved - paid;
        job.state = JobState.Settled;
        escrow.releaseJob(job.user, job.provider, paid, returned);
        emit JobSettled(id, paid, returned, _contentKeys[id]);
    }

    /// The user takes the reservation back from a job not delivered in time.
    function abandon(bytes32 id) external {
        Job storage job = _jobAs(id, JobState.Training);
        _onlyUser(job);
        uint64 due = job.startedAt + _params.deliveryTimeout;
        if (block.timestamp < due) revert TooEarly(id, due);
        job.state = JobState.Abandoned;
        escrow.releaseJob(job.user, job.provider, 0, job.reserved);
        emit JobAbandoned(id, job.reserved);
    }

    /// The provider stops a job before delivery (the user cancelled it, or
    /// training failed) and releases the whole reservation.
    function cancel(bytes32 id) external {
        Job storage job = _jobAs(id, JobState.Training);
        if (msg.sender != job.provider) revert NotProvider(msg.sender, job.provider);
        job.state = JobState.Cancelled;
        escrow.releaseJob(job.user, job.provider, 0, job.reserved);
        emit JobCancelled(id, job.reserved);
    }

    function setParams(FineTuningParams calldata params_) external {
        if (msg.sender != escrow.owner()) revert NotOwner(msg.sender);
        if (
            params_.deliveryTimeout < MIN_TIMEOUT || params_.deliveryTimeout > MAX_TIMEOUT
                || params_.ackTimeout < MIN_TIMEOUT || params_.ackTimeout > MAX_TIMEOUT
                || params_.penaltyBps > MAX_PENALTY_BPS
        ) revert ParamsOutOfBounds(params_);
        _params = params_;
        emit FineTuningParamsSet(params_);
    }

    // ---- views ----

    /// The EIP-712 digest a user signs for `order`: the id of its job.
    function orderDigest(FineTuningOrder calldata order) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    ORDER_TYPEHASH,
                    order.user,
                    order.provider,
                    keccak256(bytes(order.service)),
                    order.baseModel,
                    order.trainingFile,
                    order.validationFile,
                    order.epochs,
                    order.batchSize,
                    order.rank,
                    order.learningRateMultiplierPpm,
                    order.maxFee,
                    order.startBy,
                    order.nonce
                )
            )
        );
    }

    function getJob(bytes32 id) external view returns (Job memory) {
        return _jobs[id];
    }

    /// The content key of a settled job, encrypted to the order's signer (empty until then).
    function contentKey(bytes32 id) external view returns (bytes memory) {
        return _contentKeys[id];
    }

    function terms(address provider, string calldata name) external view returns (FineTuningTerms memory) {
        return _terms[_serviceKey(provider, keccak256(bytes(name)))];
    }

    function params() external view returns (FineTuningParams memory) {
        return _params;
    }

    // ---- internals ----

    function _checkTerms(FineTuningTerms storage t, FineTuningOrder calldata order) private view {
        uint256 count = t.baseModels.length;
        if (count == 0) revert NoTerms(order.provider, order.service);
        if (order.epochs == 0 || order.epochs > t.maxEpochs) revert BadEpochs(order.epochs, t.maxEpochs);
        for (uint256 i = 0; i < count; i++) {
            if (t.baseModels[i] == order.baseModel) return;
        }
        revert BaseModelNotAccepted(order.baseModel);
    }

    function _jobAs(bytes32 id, JobState state) private view returns (Job storage job) {
        job = _jobs[id];
        if (job.state != state) revert WrongState(id, job.state);
    }

    function _onlyUser(Job storage job) private view {
        if (msg.sender != job.user && msg.sender != job.signer) revert NotUser(msg.sender, job.user);
    }

    function _serviceKey(address provider, bytes32 nameHash) private pure returns (bytes32) {
        return keccak256(abi.encode(provider, nameHash));
    }
}
