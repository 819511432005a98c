//! Fine-tuning jobs on chain: a service's terms, starting a job from a
//! user's signed order (which reserves its maximum fee from escrow),
//! delivery, acknowledgement, settlement with the sealed content key, and
//! the ways out (abandon, cancel). The FineTuning contract is the one
//! ZgServing deployed in its constructor, so its address is derived.

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    providers::DynProvider,
};
use zg_core::{Signature, fine_tuning::Order};

use crate::{
    ChainClient, ChainError, Outcome,
    bindings::FineTuning::{self, FineTuningInstance},
};

/// Where a job is in its life (the contract's `JobState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// No such job on chain.
    None,
    Training,
    Delivered,
    Acknowledged,
    Settled,
    Abandoned,
    Cancelled,
}

impl JobState {
    fn from_raw(raw: u8) -> Self {
        match raw {
            1 => Self::Training,
            2 => Self::Delivered,
            3 => Self::Acknowledged,
            4 => Self::Settled,
            5 => Self::Abandoned,
            6 => Self::Cancelled,
            _ => Self::None,
        }
    }
}

/// One job as the chain holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub user: Address,
    pub provider: Address,
    /// The key that signed the order: the content key is sealed to it.
    pub signer: Address,
    pub reserved: U256,
    pub fee: U256,
    pub price_per_token: U256,
    pub trained_tokens: U256,
    /// keccak256 of the sealed adapter, zero before delivery.
    pub deliverable: B256,
    pub started_at: u64,
    pub delivered_at: u64,
    pub state: JobState,
}

/// What a fine-tuning service accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FineTuningTerms {
    pub base_models: Vec<B256>,
    pub max_file_bytes: u64,
    pub max_epochs: u32,
}

/// The owner-set clocks of fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FineTuningRules {
    /// Seconds after the start from which an undelivered job may be abandoned.
    pub delivery_timeout: u64,
    /// Seconds after delivery from which the provider may settle unacknowledged.
    pub ack_timeout: u64,
    /// Share of the fee an unacknowledged delivery pays, in basis points.
    pub penalty_bps: u16,
}

impl ChainClient {
    /// The FineTuning contract: ZgServing's first creation (nonce 1).
    pub fn fine_tuning_address(&self) -> Address {
        self.contract_address().create(1)
    }

    fn jobs(&self) -> FineTuningInstance<DynProvider> {
        FineTuning::new(self.fine_tuning_address(), self.provider().clone())
    }

    async fn send_job<C: alloy::sol_types::SolCall>(
        &self,
        action: &str,
        call: alloy::contract::SolCallBuilder<&DynProvider, C>,
    ) -> Result<Outcome, ChainError> {
        self.send_mapped(action, call, ChainError::from_job_contract)
            .await
    }

    async fn view_job<C: alloy::sol_types::SolCall>(
        &self,
        action: &str,
        call: alloy::contract::SolCallBuilder<&DynProvider, C>,
    ) -> Result<C::Return, ChainError> {
        call.call()
            .await
            .map_err(|e| ChainError::from_job_contract(action, self.fine_tuning_address(), e))
    }

    /// Sets what the caller's fine-tuning service `name` accepts.
    pub async fn set_fine_tuning_terms(
        &self,
        name: &str,
        terms: &FineTuningTerms,
    ) -> Result<Outcome, ChainError> {
        let jobs = self.jobs();
        let action = format!("setting the fine-tuning terms of service {name:?}");
        let call = jobs.setTerms(
            name.to_owned(),
            terms.base_models.clone(),
            terms.max_file_bytes,
            terms.max_epochs,
        );
        self.send_job(&action, call).await
    }

    pub async fn fine_tuning_terms(
        &self,
        provider: Address,
        name: &str,
    ) -> Result<FineTuningTerms, ChainError> {
        let jobs = self.jobs();
        let action = format!("reading the fine-tuning terms of {name:?} at {provider}");
        let t = self
            .view_job(&action, jobs.terms(provider, name.to_owned()))
            .await?;
        Ok(FineTuningTerms {
            base_models: t.baseModels,
            max_file_bytes: t.maxFileBytes,
            max_epochs: t.maxEpochs,
        })
    }

    /// Starts the job `order` describes (the caller is its provider),
    /// reserving its maximum fee; returns the job id (the order's digest).
    pub async fn start_job(
        &self,
        order: &Order,
        signature: &Signature,
    ) -> Result<(B256, Outcome), ChainError> {
        let jobs = self.jobs();
        let id = order.digest(self.chain_id(), self.fine_tuning_address());
        let action = format!("starting fine-tuning job {id}");
        let call = jobs.startJob(
            convert_order(order),
            Bytes::copy_from_slice(signature.as_bytes()),
        );
        Ok((id, self.send_job(&action, call).await?))
    }

    pub async fn deliver_job(
        &self,
        id: B256,
        deliverable: B256,
        trained_tokens: U256,
        fee: U256,
    ) -> Result<Outcome, ChainError> {
        let jobs = self.jobs();
        let action = format!("delivering fine-tuning job {id}");
        let call = jobs.deliver(id, deliverable, trained_tokens, fee);
        self.send_job(&action, call).await
    }

    pub async fn acknowledge_job(&self, id: B256) -> Result<Outcome, ChainError> {
        let jobs = self.jobs();
        let action = format!("acknowledging fine-tuning job {id}");
        self.send_job(&action, jobs.acknowledge(id)).await
    }

    /// Settles job `id`: with the sealed content key once acknowledged
    /// (the whole fee), or with none once the acknowledgement is overdue
    /// (the penalty share).
    pub async fn settle_job(&self, id: B256, sealed_key: &[u8]) -> Result<Outcome, ChainError> {
        let action = format!("settling fine-tuning job {id}");
        let jobs = self.jobs();
        let call = jobs.settleJob(id, Bytes::copy_from_slice(sealed_key));
        self.send_job(&action, call).await
    }

    pub async fn abandon_job(&self, id: B256) -> Result<Outcome, ChainError> {
        let jobs = self.jobs();
        let action = format!("abandoning fine-tuning job {id}");
        self.send_job(&action, jobs.abandon(id)).await
    }

    pub async fn cancel_job(&self, id: B256) -> Result<Outcome, ChainError> {
        let jobs = self.jobs();
        let action = format!("cancelling fine-tuning job {id}");
        self.send_job(&action, jobs.cancel(id)).await
    }

    pub async fn job(&self, id: B256) -> Result<JobInfo, ChainError> {
        let jobs = self.jobs();
        let action = format!("reading fine-tuning job {id}");
        let j = self.view_job(&action, jobs.getJob(id)).await?;
        Ok(JobInfo {
            user: j.user,
            provider: j.provider,
            signer: j.signer,
            reserved: j.reserved,
            fee: j.fee,
            price_per_token: j.pricePerToken,
            trained_tokens: j.trainedTokens,
            deliverable: j.deliverable,
            started_at: j.startedAt,
            delivered_at: j.deliveredAt,
            state: JobState::from_raw(j.state),
        })
    }

    /// The sealed content key of a settled job (empty before).
    pub async fn job_content_key(&self, id: B256) -> Result<Vec<u8>, ChainError> {
        let jobs = self.jobs();
        let action = format!("reading the content key of fine-tuning job {id}");
        Ok(self.view_job(&action, jobs.contentKey(id)).await?.to_vec())
    }

    pub async fn fine_tuning_rules(&self) -> Result<FineTuningRules, ChainError> {
        let jobs = self.jobs();
        let p = self
            .view_job("reading the fine-tuning rules", jobs.params())
            .await?;
        Ok(FineTuningRules {
            delivery_timeout: p.deliveryTimeout,
            ack_timeout: p.ackTimeout,
            penalty_bps: p.penaltyBps,
        })
    }

    /// Owner only: the clocks and the penalty share.
    pub async fn set_fine_tuning_rules(
        &self,
        rules: FineTuningRules,
    ) -> Result<Outcome, ChainError> {
        let jobs = self.jobs();
        let call = jobs.setParams(FineTuning::FineTuningParams {
            deliveryTimeout: rules.delivery_timeout,
            ackTimeout: rules.ack_timeout,
            penaltyBps: rules.penalty_bps,
        });
        self.send_job("setting the fine-tuning rules", call).await
    }
}

/// The core order in the binding's ABI type (the same fields, two types).
fn convert_order(order: &Order) -> FineTuning::FineTuningOrder {
    let o = order.to_sol();
    FineTuning::FineTuningOrder {
        user: o.user,
        provider: o.provider,
        service: o.service,
        baseModel: o.baseModel,
        trainingFile: o.trainingFile,
        validationFile: o.validationFile,
        epochs: o.epochs,
        batchSize: o.batchSize,
        rank: o.rank,
        learningRateMultiplierPpm: o.learningRateMultiplierPpm,
        maxFee: o.maxFee,
        startBy: o.startBy,
        nonce: o.nonce,
    }
}
