//! Disputes: opening one with a receipt's evidence, verifiers' verdicts,
//! expiry, the owner's verifier set and rules, and reading a dispute's
//! evidence back from the transaction that opened it.

use crate::{ChainClient, ChainError, Outcome, bindings::ZgServing, settlement::sol_receipt};
use alloy::{
    primitives::{Address, B128, B256, Bytes, FixedBytes, U256},
    providers::Provider,
    sol_types::SolCall,
};
use zg_core::{Evidence, Receipt, Signature, Verdict, headers::SignedReceipt};

/// The owner-set rules of disputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisputeRules {
    /// Seconds after a receipt's `issuedAt` in which it can be disputed.
    pub window: u64,
    /// Seconds verifiers have to reach quorum.
    pub voting_period: u64,
    /// Seconds a stake stays slashable after its last service is removed.
    pub unbonding_period: u64,
    /// Neuron a challenger posts.
    pub bond: U256,
    /// Share of the stake a guilty verdict takes, in basis points.
    pub slash_bps: u16,
    /// Share of the slash (after the user's refund) paid to the challenger.
    pub reward_bps: u16,
    /// Request + response + proof, in bytes.
    pub max_evidence_bytes: u32,
}

impl From<ZgServing::DisputeParams> for DisputeRules {
    fn from(p: ZgServing::DisputeParams) -> Self {
        Self {
            window: p.window,
            voting_period: p.votingPeriod,
            unbonding_period: p.unbondingPeriod,
            bond: p.bond,
            slash_bps: p.slashBps,
            reward_bps: p.rewardBps,
            max_evidence_bytes: p.maxEvidenceBytes,
        }
    }
}

impl From<DisputeRules> for ZgServing::DisputeParams {
    fn from(r: DisputeRules) -> Self {
        Self {
            window: r.window,
            votingPeriod: r.voting_period,
            unbondingPeriod: r.unbonding_period,
            bond: r.bond,
            slashBps: r.slash_bps,
            rewardBps: r.reward_bps,
            maxEvidenceBytes: r.max_evidence_bytes,
        }
    }
}

/// Where a dispute stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisputeState {
    /// No dispute has this id.
    None,
    Open,
    /// The provider was slashed.
    Guilty,
    /// The bond went to the provider.
    NotGuilty,
    /// No quorum before the deadline: the bond went back.
    Expired,
}

impl DisputeState {
    fn from_u8(state: u8) -> Self {
        match state {
            1 => Self::Open,
            2 => Self::Guilty,
            3 => Self::NotGuilty,
            4 => Self::Expired,
            _ => Self::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Open => "open",
            Self::Guilty => "guilty",
            Self::NotGuilty => "not_guilty",
            Self::Expired => "expired",
        }
    }
}

/// One dispute as the contract stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeInfo {
    pub id: u64,
    pub challenger: Address,
    pub provider: Address,
    pub user: Address,
    /// keccak256 of the service name.
    pub service: B256,
    pub receipt_digest: B256,
    pub bond: U256,
    pub fee: U256,
    pub opened_at: u64,
    pub deadline: u64,
    pub guilty_votes: u32,
    pub not_guilty_votes: u32,
    pub state: DisputeState,
}

/// A `DisputeOpened` event: which dispute, and the transaction whose
/// calldata holds its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedDispute {
    pub id: u64,
    pub provider: Address,
    pub service: B256,
    pub deadline: u64,
    pub block: u64,
    pub tx_hash: B256,
}

fn sol_evidence(e: &Evidence) -> Result<ZgServing::Evidence, ChainError> {
    let signature = e
        .receipt
        .signature()
        .map_err(|err| ChainError::Unexpected {
            action: "opening a dispute".into(),
            reason: format!("the receipt's signature is unreadable: {err}"),
        })?;
    Ok(ZgServing::Evidence {
        receipt: sol_receipt(&e.receipt.receipt),
        signature: Bytes::copy_from_slice(signature.as_bytes()),
        nonce: FixedBytes::<16>::from(e.nonce.0),
        request: Bytes::copy_from_slice(e.request.as_bytes()),
        response: Bytes::copy_from_slice(e.response.as_bytes()),
        proof: e.proof.clone(),
    })
}

fn core_receipt(r: ZgServing::Receipt) -> Receipt {
    Receipt {
        user: r.user,
        provider: r.provider,
        service: r.service,
        model_digest: r.modelDigest,
        request_digest: r.requestDigest,
        response_digest: r.responseDigest,
        input_tokens: r.inputTokens,
        output_tokens: r.outputTokens,
        cached_tokens: r.cachedTokens,
        input_price: r.inputPrice,
        output_price: r.outputPrice,
        cached_price: r.cachedPrice,
        fee: r.fee,
        owed: r.owed,
        proof_digest: r.proofDigest,
        issued_at: r.issuedAt,
    }
}

/// Evidence as `openDispute` carried it. Bodies that are not UTF-8 (no
/// client of ours sends them) are an error: the verifier reads JSON text.
fn core_evidence(e: ZgServing::Evidence) -> Result<Evidence, String> {
    let signature = Signature::from_slice(&e.signature).map_err(|err| err.to_string())?;
    let text = |bytes: Bytes, what: &str| {
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("the {what} is not UTF-8 text"))
    };
    Ok(Evidence {
        receipt: SignedReceipt::new(core_receipt(e.receipt), &signature),
        nonce: B128::from(e.nonce.0),
        request: text(e.request, "request")?,
        response: text(e.response, "response")?,
        proof: e.proof,
    })
}

impl ChainClient {
    /// Disputes the answer `evidence` names, posting the rules' bond.
    /// Returns the new dispute's id.
    pub async fn open_dispute(
        &self,
        evidence: &Evidence,
        bond: U256,
    ) -> Result<(u64, Outcome), ChainError> {
        let action = "opening a dispute";
        let call = self
            .contract()
            .openDispute(sol_evidence(evidence)?)
            .value(bond);
        let outcome = self.send(action, call).await?;
        let id = outcome
            .events
            .iter()
            .find_map(|e| match e {
                ZgServing::ZgServingEvents::DisputeOpened(d) => Some(d.id.saturating_to()),
                _ => None,
            })
            .ok_or_else(|| ChainError::Unexpected {
                action: action.into(),
                reason: "the transaction emitted no DisputeOpened event".into(),
            })?;
        Ok((id, outcome))
    }

    /// Sends a verdict signed by a verifier (this wallet only relays it).
    pub async fn submit_verdict(
        &self,
        verdict: Verdict,
        signature: &Signature,
    ) -> Result<Outcome, ChainError> {
        let action = format!(
            "submitting a {} verdict on dispute {}",
            if verdict.guilty {
                "guilty"
            } else {
                "not guilty"
            },
            verdict.dispute
        );
        let call = self.contract().submitVerdict(
            U256::from(verdict.dispute),
            verdict.guilty,
            Bytes::copy_from_slice(signature.as_bytes()),
        );
        self.send(&action, call).await
    }

    /// After its deadline without quorum, returns a dispute's bond.
    pub async fn expire_dispute(&self, id: u64) -> Result<Outcome, ChainError> {
        let action = format!("expiring dispute {id}");
        self.send(&action, self.contract().expireDispute(U256::from(id)))
            .await
    }

    pub async fn dispute(&self, id: u64) -> Result<DisputeInfo, ChainError> {
        let action = format!("reading dispute {id}");
        let d = self
            .view(&action, self.contract().dispute(U256::from(id)))
            .await?;
        Ok(DisputeInfo {
            id,
            challenger: d.challenger,
            provider: d.provider,
            user: d.user,
            service: d.service,
            receipt_digest: d.receiptDigest,
            bond: d.bond,
            fee: d.fee,
            opened_at: d.openedAt,
            deadline: d.deadline,
            guilty_votes: d.guiltyVotes,
            not_guilty_votes: d.notGuiltyVotes,
            state: DisputeState::from_u8(d.state),
        })
    }

    /// How many disputes were ever opened (ids are 1 ..= this).
    pub async fn dispute_count(&self) -> Result<u64, ChainError> {
        let n = self
            .view("counting disputes", self.contract().disputeCount())
            .await?;
        Ok(n.saturating_to())
    }

    pub async fn dispute_rules(&self) -> Result<DisputeRules, ChainError> {
        let p = self
            .view("reading the dispute rules", self.contract().disputeParams())
            .await?;
        Ok(p.into())
    }

    /// Owner only: sets the dispute rules (bounds in the contract).
    pub async fn set_dispute_rules(&self, rules: DisputeRules) -> Result<Outcome, ChainError> {
        self.send(
            "setting the dispute rules",
            self.contract().setDisputeParams(rules.into()),
        )
        .await
    }

    /// Owner only: registers (`active`) or removes a verifier.
    pub async fn set_verifier(
        &self,
        verifier: Address,
        active: bool,
    ) -> Result<Outcome, ChainError> {
        let action = format!(
            "{} verifier {verifier}",
            if active { "registering" } else { "removing" }
        );
        self.send(&action, self.contract().setVerifier(verifier, active))
            .await
    }

    /// Owner only: verdicts needed on one side to decide a dispute.
    pub async fn set_quorum(&self, quorum: u32) -> Result<Outcome, ChainError> {
        let action = format!("setting the verifier quorum to {quorum}");
        self.send(&action, self.contract().setQuorum(quorum)).await
    }

    pub async fn is_verifier(&self, who: Address) -> Result<bool, ChainError> {
        let action = format!("checking whether {who} is a verifier");
        self.view(&action, self.contract().isVerifier(who)).await
    }

    /// (registered verifiers, quorum).
    pub async fn verifier_set(&self) -> Result<(u32, u32), ChainError> {
        let count = self
            .view("counting verifiers", self.contract().verifierCount())
            .await?;
        let quorum = self
            .view("reading the quorum", self.contract().quorum())
            .await?;
        Ok((count, quorum))
    }

    pub async fn has_voted(&self, id: u64, verifier: Address) -> Result<bool, ChainError> {
        let action = format!("checking whether {verifier} voted on dispute {id}");
        self.view(&action, self.contract().hasVoted(U256::from(id), verifier))
            .await
    }

    /// Slashed neuron that went to neither user nor challenger.
    pub async fn burned(&self) -> Result<U256, ChainError> {
        self.view("reading the burnt total", self.contract().burned())
            .await
    }

    /// Returns this provider's stake once it lists nothing, its unbonding
    /// is over and no dispute against it is open.
    pub async fn withdraw_stake(&self) -> Result<Outcome, ChainError> {
        self.send("withdrawing the stake", self.contract().withdrawStake())
            .await
    }

    /// Every `DisputeOpened` event from `from_block` to the latest block.
    pub async fn opened_disputes(&self, from_block: u64) -> Result<Vec<OpenedDispute>, ChainError> {
        Ok(self
            .events(from_block)
            .await?
            .into_iter()
            .filter_map(|e| match e.event {
                ZgServing::ZgServingEvents::DisputeOpened(d) => Some(OpenedDispute {
                    id: d.id.saturating_to(),
                    provider: d.provider,
                    service: d.service,
                    deadline: d.deadline,
                    block: e.block,
                    tx_hash: e.tx_hash,
                }),
                _ => None,
            })
            .collect())
    }

    /// The evidence a dispute was opened with, decoded from the calldata of
    /// the transaction `tx` that called `openDispute` directly.
    pub async fn dispute_evidence(&self, tx: B256) -> Result<Evidence, ChainError> {
        let action = format!("reading the evidence of dispute transaction {tx}");
        let unexpected = |reason: String| ChainError::Unexpected {
            action: action.clone(),
            reason,
        };
        let found = self
            .provider()
            .get_transaction_by_hash(tx)
            .await
            .map_err(|e| ChainError::transport(action.clone(), e))?
            .ok_or_else(|| unexpected("no such transaction".into()))?;
        let input = alloy::consensus::Transaction::input(&found);
        let call = ZgServing::openDisputeCall::abi_decode(input).map_err(|e| {
            unexpected(format!(
                "its calldata is not an openDispute call of this contract: {e}"
            ))
        })?;
        core_evidence(call.e).map_err(unexpected)
    }
}
