// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// Disputes: anyone holding a provider-signed receipt of a proof service opens
// one with a bond and the evidence as calldata; the contract checks what a
// chain can (the signature is the service's signer, the digests name the
// evidence, the model is the registered one); owner-registered verifiers
// re-run the proof off chain and sign verdicts; at quorum a guilty provider's
// stake is slashed (the user's fee back, the challenger's bond back plus a
// reward, the rest burnt) and the service is marked failed. Not guilty: the
// bond goes to the provider. No quorum by the deadline: the bond goes back.
// Trust assumption and the path to a staked, drawn set: docs/verification.md.

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Registry} from "./Registry.sol";
import {VoucherHashing} from "./VoucherHashing.sol";
import {Dispute, DisputeParams, DisputeState, Evidence, Receipt, Service} from "./Types.sol";

abstract contract Disputes is Registry, VoucherHashing {
    enum EvidencePart {
        Request,
        Response,
        Proof
    }

    uint64 public constant MIN_PERIOD = 1 minutes;
    uint64 public constant MAX_PERIOD = 30 days;
    uint64 public constant MAX_UNBONDING_PERIOD = 90 days;
    uint256 public constant MAX_BOND = 1_000_000 ether;
    uint32 public constant MAX_EVIDENCE_BYTES = 256 * 1024;
    /// How far a receipt's issuedAt may be ahead of the chain's clock.
    uint64 public constant MAX_CLOCK_SKEW = 5 minutes;

    DisputeParams internal _params;
    uint256 public disputeCount;
    mapping(uint256 id => Dispute) internal _disputes;
    mapping(uint256 id => mapping(address verifier => bool)) public hasVoted;
    /// The dispute opened on a receipt (by its EIP-712 digest), 0 if none.
    mapping(bytes32 receiptDigest => uint256 id) public disputeOfReceipt;

    mapping(address => bool) public isVerifier;
    uint32 public verifierCount;
    uint32 public quorum;
    /// Slashed neuron that went to neither the user nor the challenger: it
    /// stays in the contract, owned by no one.
    uint256 public burned;

    event DisputeOpened(
        uint256 indexed id,
        address indexed provider,
        bytes32 indexed service,
        address challenger,
        address user,
        bytes32 receiptDigest,
        uint64 deadline
    );
    event VerdictSubmitted(uint256 indexed id, address indexed verifier, bool guilty);
    event DisputeResolved(uint256 indexed id, DisputeState state);
    event Slashed(
        address indexed provider, bytes32 indexed service, uint256 amount, uint256 toUser, uint256 reward, uint256 burnt
    );
    event VerifierSet(address indexed verifier, bool active);
    event QuorumSet(uint32 quorum);
    event DisputeParamsSet(DisputeParams params);

    error WrongBond(uint256 sent, uint256 required);
    error EvidenceTooLarge(uint256 size, uint256 max);
    error UnknownService(address provider, bytes32 service);
    error NoProofMethod(address provider, bytes32 service);
    error WrongModel(bytes32 registered, bytes32 receipt);
    error BadReceiptSignature(address recovered, address signer);
    error DigestMismatch(EvidencePart part, bytes32 signed, bytes32 computed);
    error ReceiptFromFuture(uint64 issuedAt, uint256 now_);
    error DisputeWindowClosed(uint64 issuedAt, uint256 closedAt);
    error AlreadyDisputed(bytes32 receiptDigest, uint256 id);
    error DisputeNotOpen(uint256 id, DisputeState state);
    error VotingClosed(uint256 id, uint64 deadline);
    error VotingNotOver(uint256 id, uint64 deadline);
    error NotVerifier(address signer);
    error AlreadyVoted(uint256 id, address verifier);
    error VerifierUnchanged(address verifier, bool active);
    error QuorumOutOfBounds(uint32 quorum, uint32 verifiers);
    error DisputeParamsOutOfBounds();

    constructor() {
        _setDisputeParams(DisputeParams(1 days, 1 days, 2 days, 0.01 ether, 5000, 5000, 64 * 1024));
    }

    /// Disputes the answer `e` names, posting exactly `disputeParams().bond`.
    function openDispute(Evidence calldata e) external payable returns (uint256 id) {
        DisputeParams memory params = _params;
        if (msg.value != params.bond) revert WrongBond(msg.value, params.bond);
        bytes32 digest = _checkEvidence(e, params);
        uint256 previous = disputeOfReceipt[digest];
        if (previous != 0) revert AlreadyDisputed(digest, previous);
        Receipt calldata r = e.receipt;
        ProviderSlot storage p = _providers[r.provider];
        if (p.stake == 0) revert NoStake(r.provider);

        id = ++disputeCount;
        disputeOfReceipt[digest] = id;
        p.openDisputes += 1;
        uint64 deadline = uint64(block.timestamp) + params.votingPeriod;
        Dispute storage d = _disputes[id];
        d.challenger = msg.sender;
        d.provider = r.provider;
        d.user = r.user;
        d.service = r.service;
        d.receiptDigest = digest;
        d.bond = msg.value;
        d.fee = r.fee;
        d.openedAt = uint64(block.timestamp);
        d.deadline = deadline;
        d.state = DisputeState.Open;
        emit DisputeOpened(id, r.provider, r.service, msg.sender, r.user, digest, deadline);
    }

    /// What a chain can check of evidence; returns the receipt's EIP-712 digest.
    function _checkEvidence(Evidence calldata e, DisputeParams memory params) private view returns (bytes32 digest) {
        uint256 size = e.request.length + e.response.length + e.proof.length;
        if (size > params.maxEvidenceBytes) revert EvidenceTooLarge(size, params.maxEvidenceBytes);
        Receipt calldata r = e.receipt;
        bytes32 key = _serviceKey(r.provider, r.service);
        Service storage s = _services[key];
        if (s.signer == address(0)) revert UnknownService(r.provider, r.service);

        digest = _receiptDigest(r);
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, e.signature);
        if (err != ECDSA.RecoverError.NoError) recovered = address(0);
        bytes32 method = keccak256(bytes(s.verifiability));
        if (!_binds(s.signer, s.modelDigest, method, recovered, r.modelDigest)) {
            // Signed before the provider replaced its signer, model or method?
            Commitment memory p = _previous[key];
            if (p.until < block.timestamp || !_binds(p.signer, p.modelDigest, p.methodHash, recovered, r.modelDigest)) {
                if (!_isProofMethod(method)) revert NoProofMethod(r.provider, r.service);
                if (r.modelDigest != s.modelDigest) revert WrongModel(s.modelDigest, r.modelDigest);
                revert BadReceiptSignature(recovered, s.signer);
            }
        }
        _checkDigest(EvidencePart.Request, r.requestDigest, keccak256(abi.encodePacked(e.nonce, e.request)));
        _checkDigest(EvidencePart.Response, r.responseDigest, keccak256(e.response));
        _checkDigest(EvidencePart.Proof, r.proofDigest, keccak256(e.proof));
        if (r.issuedAt > block.timestamp + MAX_CLOCK_SKEW) revert ReceiptFromFuture(r.issuedAt, block.timestamp);
        if (block.timestamp > uint256(r.issuedAt) + params.window) {
            revert DisputeWindowClosed(r.issuedAt, uint256(r.issuedAt) + params.window);
        }
    }

    /// Counts a verifier's signed verdict (`verdictDigest`); anyone may relay
    /// it. The first side to reach `quorum` decides the dispute.
    function submitVerdict(uint256 id, bool guilty, bytes calldata signature) external {
        Dispute storage d = _disputes[id];
        if (d.state != DisputeState.Open) revert DisputeNotOpen(id, d.state);
        if (block.timestamp > d.deadline) revert VotingClosed(id, d.deadline);
        (address verifier, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(verdictDigest(id, guilty), signature);
        if (err != ECDSA.RecoverError.NoError || !isVerifier[verifier]) revert NotVerifier(verifier);
        if (hasVoted[id][verifier]) revert AlreadyVoted(id, verifier);
        hasVoted[id][verifier] = true;
        emit VerdictSubmitted(id, verifier, guilty);
        if (guilty) {
            if (++d.guiltyVotes >= quorum) _resolveGuilty(id, d);
        } else {
            if (++d.notGuiltyVotes >= quorum) _close(id, d, DisputeState.NotGuilty, d.provider);
        }
    }

    /// After the deadline without quorum, returns the bond to the challenger.
    function expireDispute(uint256 id) external {
        Dispute storage d = _disputes[id];
        if (d.state != DisputeState.Open) revert DisputeNotOpen(id, d.state);
        if (block.timestamp <= d.deadline) revert VotingNotOver(id, d.deadline);
        _close(id, d, DisputeState.Expired, d.challenger);
    }

    function _resolveGuilty(uint256 id, Dispute storage d) private {
        ProviderSlot storage p = _providers[d.provider];
        uint256 slash = uint256(p.stake) * _params.slashBps / 10_000;
        p.stake -= uint128(slash);
        uint256 toUser = d.fee < slash ? d.fee : slash;
        uint256 reward = (slash - toUser) * _params.rewardBps / 10_000;
        uint256 burnt = slash - toUser - reward;
        burned += burnt;
        balanceOf[d.user] += toUser;
        balanceOf[d.challenger] += reward;
        _services[_serviceKey(d.provider, d.service)].failedAt = uint64(block.timestamp);
        emit Slashed(d.provider, d.service, slash, toUser, reward, burnt);
        _close(id, d, DisputeState.Guilty, d.challenger);
    }

    /// Ends dispute `id` in `state` and credits the bond to `bondTo`.
    function _close(uint256 id, Dispute storage d, DisputeState state, address bondTo) private {
        d.state = state;
        _providers[d.provider].openDisputes -= 1;
        balanceOf[bondTo] += d.bond;
        emit DisputeResolved(id, state);
    }

    /// Whether a receipt signed by `recovered` for `model` is one the
    /// commitment (`signer`, `registered` model, method) stands behind.
    function _binds(address signer, bytes32 registered, bytes32 method, address recovered, bytes32 model)
        private
        pure
        returns (bool)
    {
        return recovered != address(0) && recovered == signer && model == registered && _isProofMethod(method);
    }

    function _isProofMethod(bytes32 methodHash) private pure returns (bool) {
        return methodHash != keccak256("none") && methodHash != keccak256("");
    }

    function _checkDigest(EvidencePart part, bytes32 signed, bytes32 computed) private pure {
        if (signed != computed || signed == bytes32(0)) revert DigestMismatch(part, signed, computed);
    }

    // ---- owner ----

    function setVerifier(address verifier, bool active) external onlyOwner {
        if (verifier == address(0) || isVerifier[verifier] == active) revert VerifierUnchanged(verifier, active);
        isVerifier[verifier] = active;
        if (active) verifierCount += 1;
        else verifierCount -= 1;
        emit VerifierSet(verifier, active);
        // Keep the quorum reachable: 1 with the first verifier, never above the count.
        uint32 q = quorum == 0 ? 1 : (quorum > verifierCount ? verifierCount : quorum);
        if (q != quorum && q != 0) {
            quorum = q;
            emit QuorumSet(q);
        }
    }

    /// Verdicts needed on one side; 1 ..= verifierCount (more than half of
    /// them is what docs/verification.md assumes).
    function setQuorum(uint32 quorum_) external onlyOwner {
        if (quorum_ == 0 || quorum_ > verifierCount) revert QuorumOutOfBounds(quorum_, verifierCount);
        quorum = quorum_;
        emit QuorumSet(quorum_);
    }

    function setDisputeParams(DisputeParams calldata params) external onlyOwner {
        _setDisputeParams(params);
    }

    function _setDisputeParams(DisputeParams memory p) private {
        bool ok = p.window >= MIN_PERIOD && p.window <= MAX_PERIOD && p.votingPeriod >= MIN_PERIOD
            && p.votingPeriod <= MAX_PERIOD && p.unbondingPeriod >= p.window + MAX_CLOCK_SKEW
            && p.unbondingPeriod <= MAX_UNBONDING_PERIOD
            && p.bond != 0 && p.bond <= MAX_BOND && p.slashBps != 0 && p.slashBps <= 10_000 && p.rewardBps <= 10_000
            && p.maxEvidenceBytes != 0 && p.maxEvidenceBytes <= MAX_EVIDENCE_BYTES;
        if (!ok) revert DisputeParamsOutOfBounds();
        _params = p;
        emit DisputeParamsSet(p);
    }

    function _unbondingPeriod() internal view override returns (uint64) {
        return _params.unbondingPeriod;
    }

    function _commitmentHold() internal view override returns (uint64) {
        return _params.window + MAX_CLOCK_SKEW;
    }

    // ---- views ----

    function disputeParams() external view returns (DisputeParams memory) {
        return _params;
    }

    /// Dispute `id` (state None: there is no such dispute).
    function dispute(uint256 id) external view returns (Dispute memory) {
        return _disputes[id];
    }
}
