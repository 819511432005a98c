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
/// only hashes it so clients can check their digests). `proofDigest` is the
/// keccak256 of the answer's proof of model, zero where there is none.
struct Receipt {
    address user;
    address provider;
    bytes32 service;
    bytes32 modelDigest;
    bytes32 requestDigest;
    bytes32 responseDigest;
    uint256 inputTokens;
    uint256 outputTokens;
    uint256 inputPrice;
    uint256 outputPrice;
    uint256 fee;
    uint256 owed;
    bytes32 proofDigest;
}

/// What a provider lists; prices are ceilings per token, in neuron.
struct ServiceParams {
    string name;
    string kind;
    string url;
    string model;
    bytes32 modelDigest;
    string hardware;
    uint256 inputPrice;
    uint256 outputPrice;
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
    string verifiability;
    address signer;
    uint64 updatedAt;
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
