//! Transactions driven step by step, for a caller that must survive a chain
//! that drops, delays or reorgs them: fees read and chosen by the caller,
//! signing apart from sending (the hash is known before the node is asked,
//! so a send whose answer is lost can still be found), sending again, and
//! the wallet's nonce as mined or as pending.

use alloy::{
    eips::eip2718::Encodable2718,
    network::{NetworkTransactionBuilder, TransactionBuilder},
    primitives::{B256, Bytes},
    providers::Provider,
    rpc::types::TransactionRequest,
};

use crate::{ChainClient, ChainError};

/// EIP-1559 fees of one transaction, in wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub max_fee: u128,
    pub priority_fee: u128,
}

/// A transaction the wallet signed; sending it (again) is [`ChainClient::broadcast`].
#[derive(Debug, Clone)]
pub struct SignedTx {
    pub hash: B256,
    pub nonce: u64,
    pub gas: u64,
    pub fees: Fees,
    raw: Bytes,
}

impl ChainClient {
    /// The chain's gas price now (`eth_gasPrice`: base fee plus a usual tip), wei.
    pub async fn gas_price(&self) -> Result<u128, ChainError> {
        self.provider()
            .get_gas_price()
            .await
            .map_err(|e| ChainError::transport("reading the gas price", e))
    }

    /// Fees that should get a transaction into one of the next blocks
    /// (from `eth_feeHistory`: twice the base fee plus the usual tip).
    pub async fn suggested_fees(&self) -> Result<Fees, ChainError> {
        let estimate = self
            .provider()
            .estimate_eip1559_fees()
            .await
            .map_err(|e| ChainError::transport("estimating fees from the fee history", e))?;
        Ok(Fees {
            max_fee: estimate.max_fee_per_gas,
            priority_fee: estimate.max_priority_fee_per_gas,
        })
    }

    /// The wallet's nonce: transactions mined (`pending`: also those in the
    /// node's pool).
    pub async fn nonce(&self, pending: bool) -> Result<u64, ChainError> {
        let call = self.provider().get_transaction_count(self.wallet());
        let call = if pending {
            call.pending()
        } else {
            call.latest()
        };
        call.await
            .map_err(|e| ChainError::transport("reading the wallet's nonce", e))
    }

    /// Gas a call of the contract with `input` would use now.
    pub(crate) async fn estimate(&self, action: &str, input: Bytes) -> Result<u64, ChainError> {
        let tx = self.request(input);
        self.provider()
            .estimate_gas(tx)
            .await
            .map_err(|e| ChainError::from_contract(action, self.contract_address(), e.into()))
    }

    /// Signs a call of the contract with `input` at `nonce`; sends nothing.
    pub(crate) async fn sign(
        &self,
        input: Bytes,
        nonce: u64,
        gas: u64,
        fees: Fees,
    ) -> Result<SignedTx, ChainError> {
        let tx = self
            .request(input)
            .with_chain_id(self.chain_id())
            .with_nonce(nonce)
            .with_gas_limit(gas)
            .with_max_fee_per_gas(fees.max_fee)
            .with_max_priority_fee_per_gas(fees.priority_fee.min(fees.max_fee));
        let envelope = tx
            .build(self.eth_wallet())
            .await
            .map_err(|e| ChainError::Unexpected {
                action: "signing a transaction".into(),
                reason: e.to_string(),
            })?;
        Ok(SignedTx {
            hash: *envelope.tx_hash(),
            nonce,
            gas,
            fees,
            raw: envelope.encoded_2718().into(),
        })
    }

    /// Sends a signed transaction (again). A node that already holds it is
    /// not an error.
    pub async fn broadcast(&self, tx: &SignedTx) -> Result<(), ChainError> {
        match self.provider().send_raw_transaction(&tx.raw).await {
            Ok(_) => Ok(()),
            Err(e) if already_known(&e) => Ok(()),
            Err(e) => Err(ChainError::transport(
                format!("sending transaction {} (nonce {})", tx.hash, tx.nonce),
                e,
            )),
        }
    }

    fn request(&self, input: Bytes) -> TransactionRequest {
        TransactionRequest::default()
            .with_from(self.wallet())
            .with_to(self.contract_address())
            .with_input(input)
    }
}

/// Whether a node refused a transaction because its pool has it already
/// (geth says "already known", anvil "already imported").
fn already_known(e: &alloy::transports::TransportError) -> bool {
    e.as_error_resp().is_some_and(|resp| {
        let m = resp.message.to_ascii_lowercase();
        m.contains("already known")
            || m.contains("already imported")
            || m.contains("known transaction")
    })
}
