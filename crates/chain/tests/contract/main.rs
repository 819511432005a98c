//! Tests of the ZgServing contract through the Rust client, each against its
//! own anvil (so they run in parallel). One binary, one file per concern.

mod admin;
mod attacks;
mod common;
mod devchain;
mod digests;
mod disputes;
mod escrow;
mod fine_tuning;
mod ledger;
mod registry;
mod settlement;
