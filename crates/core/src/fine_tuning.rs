//! Fine-tuning orders: what a user signs to start a job (the base model,
//! the training file's hash, the hyperparameters and the most it pays),
//! hashed under the FineTuning contract's own EIP-712 domain, whose digest
//! is the job's id on chain; the trained-token count a fee is priced by;
//! and the JSON of the provider's job API (`routes`), which the gateway
//! turns into OpenAI's fine-tuning API.

use alloy_primitives::{Address, B128, B256, U256, keccak256};
use alloy_sol_types::{SolStruct, eip712_domain};
use serde::{Deserialize, Serialize};

use crate::{Signature, SignatureError, SigningKey};

alloy_sol_types::sol! {
    /// On-chain shape of an order (contracts/src/Types.sol).
    struct FineTuningOrder {
        address user;
        address provider;
        string service;
        bytes32 baseModel;
        bytes32 trainingFile;
        bytes32 validationFile;
        uint32 epochs;
        uint32 batchSize;
        uint32 rank;
        uint32 learningRateMultiplierPpm;
        uint256 maxFee;
        uint64 startBy;
        bytes16 nonce;
    }
}

/// The training knobs an order binds (OpenAI's `hyperparameters`, plus
/// the LoRA rank). The learning-rate multiplier travels in millionths so
/// that the signed value is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub epochs: u32,
    pub batch_size: u32,
    pub rank: u32,
    pub learning_rate_multiplier_ppm: u32,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 4,
            rank: 8,
            learning_rate_multiplier_ppm: 1_000_000,
        }
    }
}

impl Hyperparameters {
    pub fn learning_rate_multiplier(&self) -> f64 {
        f64::from(self.learning_rate_multiplier_ppm) / 1e6
    }

    /// `multiplier` in millionths, refusing what cannot be a multiplier.
    pub fn multiplier_ppm(multiplier: f64) -> Option<u32> {
        let ppm = (multiplier * 1e6).round();
        (multiplier.is_finite() && multiplier > 0.0 && ppm >= 1.0 && ppm <= f64::from(u32::MAX))
            .then_some(ppm as u32)
    }
}

/// A fine-tuning order as it travels (JSON between gateway and provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub user: Address,
    pub provider: Address,
    /// The fine-tuning service's name at the provider.
    pub service: String,
    /// The digest of the base model's GGUF (as services register it).
    pub base_model: B256,
    /// keccak256 of the training file's bytes.
    pub training_file: B256,
    /// keccak256 of the validation file's bytes, if there is one.
    pub validation_file: Option<B256>,
    pub hyperparameters: Hyperparameters,
    /// The most the job may cost, in neuron: reserved from escrow at start.
    pub max_fee: U256,
    /// Unix seconds after which the provider can no longer start the job:
    /// an order the provider refused, or whose answer was lost, cannot be
    /// started long after the user moved on.
    pub start_by: u64,
    /// Makes two otherwise equal orders two jobs.
    pub nonce: B128,
}

impl Order {
    fn sol(&self) -> FineTuningOrder {
        let h = self.hyperparameters;
        FineTuningOrder {
            user: self.user,
            provider: self.provider,
            service: self.service.clone(),
            baseModel: self.base_model,
            trainingFile: self.training_file,
            validationFile: self.validation_file.unwrap_or_default(),
            epochs: h.epochs,
            batchSize: h.batch_size,
            rank: h.rank,
            learningRateMultiplierPpm: h.learning_rate_multiplier_ppm,
            maxFee: self.max_fee,
            startBy: self.start_by,
            nonce: self.nonce.0.into(),
        }
    }

    /// The EIP-712 digest the user signs: the job's id on chain.
    pub fn digest(&self, chain_id: u64, fine_tuning: Address) -> B256 {
        let domain = eip712_domain! {
            name: "zg-serving fine-tuning",
            version: "1",
            chain_id: chain_id,
            verifying_contract: fine_tuning,
        };
        self.sol().eip712_signing_hash(&domain)
    }

    pub fn sign(&self, key: &SigningKey, chain_id: u64, fine_tuning: Address) -> Signature {
        key.sign_hash(&self.digest(chain_id, fine_tuning))
    }

    /// Who signed `signature` over this order (the user or their delegate).
    pub fn signer(
        &self,
        signature: &Signature,
        chain_id: u64,
        fine_tuning: Address,
    ) -> Result<Address, SignatureError> {
        signature.recover(&self.digest(chain_id, fine_tuning))
    }

    /// The order in the contract's ABI shape, for `startJob`.
    pub fn to_sol(&self) -> FineTuningOrder {
        self.sol()
    }
}

/// The provider's fine-tuning routes (the gateway's are OpenAI's).
pub mod routes {
    /// `POST`, body [`super::CountRequest`]: validates a training file and
    /// counts its tokens as the provider trains on them ([`super::Count`]).
    pub const COUNT: &str = "/v1/fine-tuning/count";
    /// `POST`, body [`super::StartJob`]: starts a job ([`super::JobView`]).
    pub const JOBS: &str = "/v1/fine-tuning/jobs";
    /// `GET`: a job's state, events and checkpoints ([`super::JobView`]).
    pub const JOB: &str = "/v1/fine-tuning/jobs/{id}";
    /// `POST`, body [`super::CancelJob`]: the user stops a running job.
    pub const CANCEL: &str = "/v1/fine-tuning/jobs/{id}/cancel";
    /// `GET`: the sealed adapter (HTTP range requests resume a download).
    pub const ADAPTER: &str = "/v1/fine-tuning/jobs/{id}/adapter";

    pub fn job(id: impl std::fmt::Display) -> String {
        format!("/v1/fine-tuning/jobs/{id}")
    }

    pub fn cancel(id: impl std::fmt::Display) -> String {
        format!("/v1/fine-tuning/jobs/{id}/cancel")
    }

    pub fn adapter(id: impl std::fmt::Display) -> String {
        format!("/v1/fine-tuning/jobs/{id}/adapter")
    }
}

/// Asks a provider's fine-tuning service to count a training file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountRequest {
    pub service: String,
    /// The JSONL file, as text.
    pub training: String,
}

/// A training file's size as the provider trains on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub examples: u64,
    /// Tokens of one pass over the file (what one epoch trains on).
    pub tokens: u64,
    /// The service's price per trained token now, in neuron.
    pub price_per_token: U256,
}

/// A signed order and the files it names, to start a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartJob {
    pub order: Order,
    pub signature: Signature,
    /// The training JSONL; its keccak256 is `order.training_file`.
    pub training: String,
    /// The validation JSONL, when the order names one.
    pub validation: Option<String>,
}

/// The user's request to stop a running job: their signature (or their
/// voucher signer's) over [`cancel_digest`] of the job id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelJob {
    pub signature: Signature,
}

/// What a cancel request signs: not a valid order or voucher digest.
pub fn cancel_digest(job: &B256) -> B256 {
    keccak256(
        [
            b"zg-serving cancel fine-tuning job ".as_slice(),
            job.as_slice(),
        ]
        .concat(),
    )
}

/// Where a job is, in OpenAI's words where OpenAI has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Reserved on chain, waiting for the worker.
    Queued,
    Running,
    /// Trained, sealed and delivered on chain: the user may acknowledge.
    Delivered,
    /// Settled: the content key is on chain.
    Succeeded,
    Failed,
    Cancelled,
}

/// One training step's report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub step: u64,
    pub total_steps: u64,
    pub train_loss: f64,
    /// Unix seconds.
    pub at: u64,
}

/// A saved point of a job's training (the broker resumes from the last).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub step: u64,
    pub train_loss: f64,
    /// Held-out loss on the validation file, when there is one.
    pub valid_loss: Option<f64>,
    pub at: u64,
}

/// A job as the provider reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// The order's digest: the job's id on chain.
    pub id: B256,
    pub status: JobStatus,
    pub order: Order,
    pub created_at: u64,
    pub finished_at: Option<u64>,
    /// Tokens of the training file times the epochs.
    pub trained_tokens: u64,
    /// What the provider charges at delivery (at most `order.max_fee`).
    pub fee: U256,
    pub events: Vec<StepEvent>,
    pub checkpoints: Vec<Checkpoint>,
    /// keccak256 of the sealed adapter, once delivered.
    pub deliverable: Option<B256>,
    /// The sealed adapter's size in bytes, once delivered.
    pub adapter_bytes: Option<u64>,
    /// Why the job failed or was cancelled.
    pub error: Option<String>,
}

/// The id a file is known by in orders: keccak256 of its bytes.
pub fn file_hash(bytes: &[u8]) -> B256 {
    keccak256(bytes)
}

/// Tokens a job trains on: the training file's tokens times the epochs.
pub fn trained_tokens(file_tokens: u64, epochs: u32) -> U256 {
    U256::from(file_tokens) * U256::from(epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Order {
        Order {
            user: Address::repeat_byte(1),
            provider: Address::repeat_byte(2),
            service: "tune".into(),
            base_model: B256::repeat_byte(3),
            training_file: B256::repeat_byte(4),
            validation_file: None,
            hyperparameters: Hyperparameters::default(),
            max_fee: U256::from(1000),
            start_by: 1_700_000_000,
            nonce: B128::repeat_byte(5),
        }
    }

    #[test]
    fn type_string_matches_the_contract() {
        assert_eq!(
            FineTuningOrder::eip712_encode_type(),
            "FineTuningOrder(address user,address provider,string service,bytes32 baseModel,\
             bytes32 trainingFile,bytes32 validationFile,uint32 epochs,uint32 batchSize,\
             uint32 rank,uint32 learningRateMultiplierPpm,uint256 maxFee,uint64 startBy,\
             bytes16 nonce)"
        );
    }

    #[test]
    fn every_field_and_the_domain_change_the_digest() {
        let contract = Address::repeat_byte(9);
        let base = order().digest(1, contract);
        assert_ne!(base, order().digest(2, contract));
        assert_ne!(base, order().digest(1, Address::repeat_byte(8)));
        let mut more = order();
        more.max_fee += U256::from(1);
        assert_ne!(base, more.digest(1, contract));
        let mut later = order();
        later.start_by += 1;
        assert_ne!(base, later.digest(1, contract));
        let mut epochs = order();
        epochs.hyperparameters.epochs += 1;
        assert_ne!(base, epochs.digest(1, contract));
        let mut validation = order();
        validation.validation_file = Some(B256::repeat_byte(7));
        assert_ne!(base, validation.digest(1, contract));
    }

    #[test]
    fn the_signer_is_recovered() {
        let key = SigningKey::random();
        let contract = Address::repeat_byte(9);
        let sig = order().sign(&key, 1, contract);
        assert_eq!(order().signer(&sig, 1, contract), Ok(key.address()));
    }

    #[test]
    fn multipliers_are_exact_millionths() {
        assert_eq!(Hyperparameters::multiplier_ppm(1.0), Some(1_000_000));
        assert_eq!(Hyperparameters::multiplier_ppm(0.05), Some(50_000));
        assert_eq!(Hyperparameters::multiplier_ppm(0.0), None);
        assert_eq!(Hyperparameters::multiplier_ppm(-1.0), None);
        assert_eq!(Hyperparameters::multiplier_ppm(f64::NAN), None);
        assert_eq!(Hyperparameters::multiplier_ppm(1e12), None);
    }
}
