//! Contracts that exist only to attack ZgServing in tests.

/// Its `receive` calls back into the contract paying it.
pub mod reentrancy {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        ReentrancyAttacker,
        "../../contracts/artifacts/test/ReentrancyAttacker.json"
    );
}
