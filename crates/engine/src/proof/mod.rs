//! Proof of model: a compact fingerprint of the logits the model computed
//! for every generated token, recorded by the decode thread, kept for the
//! broker to fetch, and checked by anyone holding the weights with a
//! teacher-forced prefill (the `verify` module). docs/verification.md has the
//! method, the byte layout and why the threshold holds.

mod encoding;
mod store;

pub use encoding::{Proof, ProofError, tokens_digest};
pub(crate) use encoding::{Recorder, distance, marks};
pub(crate) use store::ProofStore;

/// The versioned name of this method, as `/v1/models` reports it and a
/// service registers it as its `verifiability` (defined in zg-core, which
/// the broker and the client check it with).
pub const PROOF_METHOD: &str = zg_core::verifiability::ZG_LOGITS_V1;
