//! Rust bindings of the contracts, generated at compile time from the
//! committed artifacts (contracts/artifacts), so building needs no Node or solc.

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    ZgServing,
    "../../contracts/artifacts/ZgServing.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    FineTuning,
    "../../contracts/artifacts/FineTuning.json"
);
