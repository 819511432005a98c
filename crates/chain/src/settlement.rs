//! Settlement: delegated voucher signers, batch `settle`, and the contract's
//! own EIP-712 digests (so clients can prove theirs match).

use crate::{
    ChainClient, ChainError, Fees, Outcome, SignedTx,
    bindings::ZgServing::{self, ZgServingEvents},
};
use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::Provider,
    sol_types::SolCall,
};
use tracing::Instrument;
use zg_core::{Receipt, Signature, Voucher};

/// Why the contract skipped a voucher (the `reason` of `VoucherRejected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The voucher names another provider than the one settling.
    WrongProvider,
    /// Malformed, high-s, or signed by neither the user nor their delegated signer.
    BadSignature,
    /// `cumulative` is not above what was already settled.
    NotNewer,
    /// The escrow is empty; the voucher stays good for after a top-up.
    EscrowEmpty,
    /// A code this client doesn't know (a newer contract).
    Other(u8),
}

impl From<u8> for RejectReason {
    fn from(code: u8) -> Self {
        match code {
            1 => Self::WrongProvider,
            2 => Self::BadSignature,
            3 => Self::NotNewer,
            4 => Self::EscrowEmpty,
            other => Self::Other(other),
        }
    }
}

/// A voucher that paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledVoucher {
    pub user: Address,
    pub paid: U256,
    /// The user's settled total at this provider afterwards.
    pub settled: U256,
    /// What is left in the user's escrow at this provider.
    pub escrow: U256,
}

/// A voucher the contract skipped; the rest of the batch went on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectedVoucher {
    /// Position in the batch.
    pub index: usize,
    pub user: Address,
    pub provider: Address,
    pub reason: RejectReason,
}

/// The result of one `settle` transaction.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub outcome: Outcome,
    pub settled: Vec<SettledVoucher>,
    pub rejected: Vec<RejectedVoucher>,
    /// The sum paid to the provider's ledger balance by this batch.
    pub paid: U256,
    /// The provider's ledger balance afterwards.
    pub provider_balance: U256,
}

impl Settlement {
    fn from_outcome(outcome: Outcome) -> Self {
        let mut settlement = Self {
            settled: vec![],
            rejected: vec![],
            paid: U256::ZERO,
            provider_balance: U256::ZERO,
            outcome,
        };
        for event in &settlement.outcome.events {
            match event {
                ZgServingEvents::VoucherSettled(e) => settlement.settled.push(SettledVoucher {
                    user: e.user,
                    paid: e.paid,
                    settled: e.settled,
                    escrow: e.escrow,
                }),
                ZgServingEvents::VoucherRejected(e) => settlement.rejected.push(RejectedVoucher {
                    index: e.index.saturating_to(),
                    user: e.user,
                    provider: e.provider,
                    reason: RejectReason::from(e.reason),
                }),
                ZgServingEvents::BatchSettled(e) => {
                    settlement.paid = e.paid;
                    settlement.provider_balance = e.balance;
                }
                _ => {}
            }
        }
        settlement
    }
}

/// Where a sent settle transaction stands.
#[derive(Debug, Clone)]
pub enum TxState {
    /// No receipt: not mined (in a pool, dropped, or removed by a reorg).
    Unknown,
    /// Mined and succeeded, in `settlement.outcome.block`.
    Mined(Box<Settlement>),
    /// Mined but reverted: its nonce is spent, its vouchers are not.
    Failed { block: u64 },
}

fn settle_input(vouchers: &[(Voucher, Signature)]) -> Bytes {
    let (vouchers, signatures) = vouchers
        .iter()
        .map(|(v, s)| (sol_voucher(v), Bytes::copy_from_slice(s.as_bytes())))
        .unzip();
    ZgServing::settleCall {
        vouchers,
        signatures,
    }
    .abi_encode()
    .into()
}

fn sol_voucher(v: &Voucher) -> ZgServing::Voucher {
    ZgServing::Voucher {
        user: v.user,
        provider: v.provider,
        cumulative: v.cumulative,
        requestDigest: v.request_digest,
    }
}

pub(crate) fn sol_receipt(r: &Receipt) -> ZgServing::Receipt {
    ZgServing::Receipt {
        user: r.user,
        provider: r.provider,
        service: r.service,
        modelDigest: r.model_digest,
        requestDigest: r.request_digest,
        responseDigest: r.response_digest,
        inputTokens: r.input_tokens,
        outputTokens: r.output_tokens,
        cachedTokens: r.cached_tokens,
        inputPrice: r.input_price,
        outputPrice: r.output_price,
        cachedPrice: r.cached_price,
        fee: r.fee,
        owed: r.owed,
        proofDigest: r.proof_digest,
        issuedAt: r.issued_at,
    }
}

impl ChainClient {
    /// Lets `signer` sign vouchers for this wallet; `Address::ZERO` revokes.
    pub async fn set_voucher_signer(&self, signer: Address) -> Result<Outcome, ChainError> {
        let action = format!("delegating voucher signing to {signer}");
        self.send(&action, self.contract().setVoucherSigner(signer))
            .await
    }

    /// The key `user` delegated voucher signing to, if any.
    pub async fn voucher_signer(&self, user: Address) -> Result<Option<Address>, ChainError> {
        let action = format!("reading the voucher signer of {user}");
        let signer = self
            .view(&action, self.contract().voucherSigner(user))
            .await?;
        Ok((!signer.is_zero()).then_some(signer))
    }

    /// Settles signed vouchers as the provider (this wallet). Bad vouchers are
    /// reported in [`Settlement::rejected`], not as an error.
    pub async fn settle(
        &self,
        vouchers: &[(Voucher, Signature)],
    ) -> Result<Settlement, ChainError> {
        let (sol, sigs) = vouchers
            .iter()
            .map(|(v, s)| (sol_voucher(v), Bytes::copy_from_slice(s.as_bytes())))
            .unzip();
        self.settle_raw(sol, sigs).await
    }

    /// `settle` with the contract's own types, for signatures that are not
    /// well-formed (which [`Signature`] refuses to hold).
    pub async fn settle_raw(
        &self,
        vouchers: Vec<ZgServing::Voucher>,
        signatures: Vec<Bytes>,
    ) -> Result<Settlement, ChainError> {
        let action = format!("settling {} vouchers", vouchers.len());
        let span =
            tracing::info_span!("settle", provider = %self.wallet(), vouchers = vouchers.len());
        let outcome = self
            .send(&action, self.contract().settle(vouchers, signatures))
            .instrument(span)
            .await?;
        let settlement = Settlement::from_outcome(outcome);
        tracing::info!(
            settled = settlement.settled.len(),
            rejected = settlement.rejected.len(),
            paid = %settlement.paid,
            gas = settlement.outcome.gas_used,
            "settled"
        );
        Ok(settlement)
    }

    /// Gas a `settle` of `vouchers` would use now.
    pub async fn settle_gas(&self, vouchers: &[(Voucher, Signature)]) -> Result<u64, ChainError> {
        let action = format!("estimating the gas to settle {} vouchers", vouchers.len());
        self.estimate(&action, settle_input(vouchers)).await
    }

    /// Signs a `settle` of `vouchers` at `nonce` with `fees`; sends nothing
    /// ([`ChainClient::broadcast`] does, as often as needed).
    pub async fn sign_settle(
        &self,
        vouchers: &[(Voucher, Signature)],
        nonce: u64,
        gas: u64,
        fees: Fees,
    ) -> Result<SignedTx, ChainError> {
        self.sign(settle_input(vouchers), nonce, gas, fees).await
    }

    /// Reads the receipt of settle transaction `tx`, if it was mined.
    pub async fn settle_state(&self, tx: B256) -> Result<TxState, ChainError> {
        let receipt = self
            .provider()
            .get_transaction_receipt(tx)
            .await
            .map_err(|e| ChainError::transport(format!("reading the receipt of {tx}"), e))?;
        let Some(receipt) = receipt else {
            return Ok(TxState::Unknown);
        };
        let block = receipt.block_number.unwrap_or_default();
        match self.outcome("settling", &receipt) {
            Ok(outcome) => Ok(TxState::Mined(Box::new(Settlement::from_outcome(outcome)))),
            Err(ChainError::TxFailed { .. }) => Ok(TxState::Failed { block }),
            Err(e) => Err(e),
        }
    }

    /// The contract's EIP-712 digest of `voucher` (what the user signs).
    pub async fn voucher_digest(&self, voucher: &Voucher) -> Result<B256, ChainError> {
        self.view(
            "hashing a voucher on chain",
            self.contract().voucherDigest(sol_voucher(voucher)),
        )
        .await
    }

    /// The contract's EIP-712 digest of `receipt` (what the provider's signer signs).
    pub async fn receipt_digest(&self, receipt: &Receipt) -> Result<B256, ChainError> {
        self.view(
            "hashing a receipt on chain",
            self.contract().receiptDigest(sol_receipt(receipt)),
        )
        .await
    }

    /// The contract's EIP-712 domain separator.
    pub async fn domain_separator(&self) -> Result<B256, ChainError> {
        self.view(
            "reading the domain separator",
            self.contract().domainSeparator(),
        )
        .await
    }
}
