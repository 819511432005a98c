//! What a deployment to a real network needs beyond sending it: the
//! chain id before anything is sent, confirmations (followed through a
//! reorg), and whether the code at the address is this build's ZgServing.

use std::time::{Duration, Instant};

use alloy::{
    primitives::B256,
    providers::{Provider, ProviderBuilder},
};

use crate::{ChainClient, ChainError, bindings::ZgServing};

/// How often confirmations are polled: about a block on most chains.
const POLL: Duration = Duration::from_secs(1);

/// PUSH32: solc leaves each immutable as a PUSH32 of zeros in the runtime
/// bytecode and the constructor writes the value in (here EIP-712's cached
/// domain: chain id, address, name and version hashes).
const PUSH32: u8 = 0x7f;
const PUSH1: u8 = 0x60;

impl ChainClient {
    /// The chain id the node at `rpc_url` serves; sends nothing.
    pub async fn chain_id_at(rpc_url: &str) -> Result<u64, ChainError> {
        let url = rpc_url.parse().map_err(|e| ChainError::Unexpected {
            action: "connecting to the chain".into(),
            reason: format!("RPC URL {rpc_url:?} is not a URL: {e}"),
        })?;
        let http = crate::tls::rpc_client().map_err(|e| ChainError::Unexpected {
            action: "connecting to the chain".into(),
            reason: e.to_string(),
        })?;
        ProviderBuilder::new()
            .connect_reqwest(http, url)
            .get_chain_id()
            .await
            .map_err(|e| ChainError::transport(format!("asking {rpc_url} for its chain id"), e))
    }

    /// Waits until transaction `tx` is `confirmations` blocks deep (1: mined)
    /// and returns the block that holds it. The receipt is read again on
    /// every poll, so a reorg that moved or dropped it is followed.
    pub async fn wait_confirmed(
        &self,
        tx: B256,
        confirmations: u64,
        timeout: Duration,
    ) -> Result<u64, ChainError> {
        let deadline = Instant::now() + timeout;
        let action = || format!("waiting for {confirmations} confirmations of {tx}");
        loop {
            let receipt = self
                .provider()
                .get_transaction_receipt(tx)
                .await
                .map_err(|e| ChainError::transport(action(), e))?;
            let latest = self.block_number().await?;
            let mined = receipt.and_then(|r| r.block_number);
            if let Some(block) = mined
                && latest.saturating_add(1) >= block.saturating_add(confirmations)
            {
                return Ok(block);
            }
            if Instant::now() >= deadline {
                return Err(ChainError::Unexpected {
                    action: action(),
                    reason: format!(
                        "after {timeout:?} the chain is at block {latest} and the transaction {}; \
                         wait longer (or check it on an explorer) before using the contract",
                        match mined {
                            Some(block) => format!("in block {block}"),
                            None => "in no block (dropped by a reorg, or still pending)".into(),
                        }
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Reads the code at the contract's address (eth_getCode) and checks it
    /// is the runtime bytecode of the committed artifact, immutables aside.
    pub async fn check_code(&self) -> Result<(), ChainError> {
        let address = self.contract_address();
        let code = self
            .provider()
            .get_code_at(address)
            .await
            .map_err(|e| ChainError::transport(format!("reading the code at {address}"), e))?;
        if runtime_matches(&ZgServing::DEPLOYED_BYTECODE, &code) {
            return Ok(());
        }
        Err(ChainError::CodeMismatch {
            address,
            chain_id: self.chain_id(),
            found: code.len(),
            expected: ZgServing::DEPLOYED_BYTECODE.len(),
        })
    }
}

/// Byte for byte equal, except inside the expected code's zeroed PUSH32
/// immediates (the immutables). Walks opcodes so a 0x7f inside another
/// push's data is not taken for a PUSH32.
fn runtime_matches(expected: &[u8], found: &[u8]) -> bool {
    if expected.len() != found.len() || expected.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < expected.len() {
        let op = expected[i];
        if op != found[i] {
            return false;
        }
        let data = if (PUSH1..=PUSH32).contains(&op) {
            usize::from(op - PUSH1) + 1
        } else {
            0
        };
        let end = (i + 1 + data).min(expected.len());
        let immediate = &expected[i + 1..end];
        let placeholder = op == PUSH32 && immediate.iter().all(|b| *b == 0);
        if !placeholder && immediate != &found[i + 1..end] {
            return false;
        }
        i = end;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutables_may_differ_and_nothing_else_may() {
        let mut expected = vec![PUSH1, 0x80, PUSH32];
        expected.extend([0u8; 32]);
        expected.extend([0x50, PUSH1 + 1, 0x7f, 0x00]);
        let mut found = expected.clone();
        found[3..35].copy_from_slice(&[0xab; 32]);
        assert!(runtime_matches(&expected, &found), "an immutable filled in");

        let mut changed_op = found.clone();
        changed_op[35] = 0x51;
        assert!(!runtime_matches(&expected, &changed_op));
        // 0x7f as PUSH2's data is not a placeholder.
        let mut changed_push_data = found.clone();
        changed_push_data[37] = 0x7e;
        assert!(!runtime_matches(&expected, &changed_push_data));
        assert!(!runtime_matches(&expected, &found[..found.len() - 1]));
        assert!(!runtime_matches(&[], &[]), "no code is never ours");
    }
}
