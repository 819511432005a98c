//! zg-devnet: the local marketplace that `zg-serving dev`, the benchmarks
//! and every test suite stand on. [`DevChain`] is anvil on a free port;
//! [`Market`] is that chain with the ZgServing contract deployed and users
//! who deposited and funded providers' escrow; [`contracts`] holds the
//! contracts that exist only to attack ZgServing in tests.

mod anvil;
pub mod contracts;
mod error;
mod market;

pub use anvil::{DevChain, DevChainOptions, find_anvil};
pub use error::DevnetError;
pub use market::Market;
