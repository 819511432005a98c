// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

// The types that cross the contract's boundary: what clients sign, send and read.

/// A user's promise to pay a provider. `cumulative` is everything the user has
/// ever authorised to this provider, so the newest voucher supersedes the rest.
struct Voucher {
    address user;
    address provider;
    uint256 cumulative;
    bytes32 requestDigest;
}

/// A provider's signed account of one answer (settled off chain; the contract
/// checks it when a dispute names it). `proofDigest` is the keccak256 of the
/// answer's proof of model, zero where there is none; `issuedAt` the unix
/// time the provider signed it, from which the dispute window runs.
/// `cachedTokens` of the `inputTokens` were read from the provider's prompt
/// cache and priced at `cachedPrice`; the rest at `inputPrice`.
struct Receipt {
    address user;
    address provider;
    bytes32 service;
    bytes32 modelDigest;
    bytes32 requestDigest;
    bytes32 responseDigest;
    uint256 inputTokens;
    uint256 outputTokens;
    uint256 cachedTokens;
    uint256 inputPrice;
    uint256 outputPrice;
    uint256 cachedPrice;
    uint256 fee;
    uint256 owed;
    bytes32 proofDigest;
    uint64 issuedAt;
}

/// What a provider lists; prices are ceilings per token, in neuron
/// (`cachedInputPrice`: prompt tokens the provider's prompt cache served).
struct ServiceParams {
    string name;
    string kind;
    string url;
    string model;
    bytes32 modelDigest;
    string hardware;
    uint256 inputPrice;
    uint256 outputPrice;
    uint256 cachedInputPrice;
    string verifiability;
    address signer;
}

/// A listed service as stored, with its provider and last update time.
struct Service {
    address provider;
    string name;
    string kind;
    string url;
    string model;
    bytes32 modelDigest;
    string hardware;
    uint256 inputPrice;
    uint256 outputPrice;
    uint256 cachedInputPrice;
    string verifiability;
    address signer;
    uint64 updatedAt;
    /// When a dispute found the service guilty (0: never); discovery skips
    /// it until the provider re-registers it with fresh stake.
    uint64 failedAt;
}

/// One (user, provider) escrow account as the views report it.
struct Account {
    address user;
    address provider;
    uint256 escrow;
    uint256 settled;
    uint256 refundAmount;
    uint64 refundUnlockAt;
}

/// Why `settle` skipped a voucher (event `VoucherRejected`).
enum RejectReason {
    None,
    WrongProvider, // voucher.provider is not the caller
    BadSignature, // malformed, high-s, or signed by neither the user nor their delegated signer
    NotNewer, // cumulative <= what was already settled
    EscrowEmpty // nothing left in escrow to pay from
}

/// What a challenger posts to dispute one answer: the provider-signed receipt,
/// the request's nonce and body, the response body and the proof of model.
struct Evidence {
    Receipt receipt;
    bytes signature;
    bytes16 nonce;
    bytes request;
    bytes response;
    bytes proof;
}

enum DisputeState {
    None,
    Open,
    Guilty, // the provider was slashed
    NotGuilty, // the bond went to the provider
    Expired // no quorum before the deadline: the bond went back
}

/// One dispute as the views report it.
struct Dispute {
    address challenger;
    address provider;
    address user;
    bytes32 service; // keccak256 of the service name
    bytes32 receiptDigest;
    uint256 bond;
    uint256 fee;
    uint64 openedAt;
    uint64 deadline; // verdicts count until then
    uint32 guiltyVotes;
    uint32 notGuiltyVotes;
    DisputeState state;
}

/// The owner-set rules of disputes (bounds in Disputes.sol).
struct DisputeParams {
    uint64 window; // seconds after a receipt's issuedAt in which it can be disputed
    uint64 votingPeriod; // seconds verifiers have to reach quorum
    uint64 unbondingPeriod; // seconds a stake stays slashable after the last service goes (>= window)
    uint256 bond; // neuron a challenger posts
    uint16 slashBps; // share of the stake a guilty verdict takes, in basis points
    uint16 rewardBps; // share of the slash (after the user's refund) paid to the challenger
    uint32 maxEvidenceBytes; // request + response + proof
}

/// A user's order for one fine-tuning job, signed by the user (or their
/// delegated voucher signer) under the FineTuning contract's EIP-712 domain.
/// Its digest is the job's id. The file hashes are keccak256 of the JSONL
/// bytes. The provider may start it until `startBy` (unix seconds) only.
struct FineTuningOrder {
    address user;
    address provider;
    string service;
    bytes32 baseModel;
    bytes32 trainingFile;
    bytes32 validationFile; // zero: none
    uint32 epochs;
    uint32 batchSize;
    uint32 rank;
    uint32 learningRateMultiplierPpm; // the multiplier times 1e6
    uint256 maxFee;
    uint64 startBy;
    bytes16 nonce;
}

/// What a fine-tuning service accepts, beside its price per trained token
/// (the service's `inputPrice`, a ceiling).
struct FineTuningTerms {
    bytes32[] baseModels;
    uint64 maxFileBytes;
    uint32 maxEpochs;
}

enum JobState {
    None,
    Training, // the maximum fee is reserved from the user's escrow
    Delivered, // the provider published the encrypted adapter's hash and the fee
    Acknowledged, // the user accepted the deliverable
    Settled, // the fee (or the penalty share) was paid and the rest returned
    Abandoned, // no delivery in time: the user took the reservation back
    Cancelled // the provider released the reservation without a charge
}

/// One fine-tuning job as the views report it.
struct Job {
    address user;
    address provider;
    address signer; // the key that signed the order: the content key is encrypted to it
    bytes32 service; // keccak256 of the service name
    uint256 reserved;
    uint256 fee;
    uint256 pricePerToken; // the service's ceiling when the job started
    uint256 trainedTokens;
    bytes32 deliverable; // sha256 of the encrypted adapter
    uint64 startedAt;
    uint64 deliveredAt;
    uint64 acknowledgedAt;
    JobState state;
}

/// The owner-set clocks of fine-tuning (bounds in FineTuning.sol).
struct FineTuningParams {
    uint64 deliveryTimeout; // after the start: the user may abandon an undelivered job
    uint64 ackTimeout; // after delivery: the provider may settle without an acknowledgement
    uint16 penaltyBps; // share of the fee an unacknowledged delivery pays
}
