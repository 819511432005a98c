//! A fine-tuning job as the gateway keeps it (`<data dir>/fine_tuning/<id>.json`),
//! and its OpenAI shapes: the job object, its events (newest first) and its
//! checkpoints.

use super::{FtError, write_atomic};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use zg_core::{
    B256, U256,
    fine_tuning::{Checkpoint, Order, StepEvent},
    now_unix,
};

/// OpenAI's job statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Status {
    ValidatingFiles,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub(super) fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A line of the job's story told by the gateway itself (the provider's
/// training steps come as [`StepEvent`]s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Note {
    pub at: u64,
    /// "info", "warn" or "error", as OpenAI's event levels.
    pub level: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct JobRecord {
    /// The order's digest: the job's id on chain.
    pub id: B256,
    pub created_at: u64,
    pub finished_at: Option<u64>,
    /// The base model's name as the service lists it.
    pub model: String,
    pub suffix: Option<String>,
    /// Echoed as OpenAI does; the order does not bind it.
    pub seed: u64,
    pub training_file: String,
    pub validation_file: Option<String>,
    /// The fine-tuning service's base URL.
    pub url: String,
    pub order: Order,
    pub status: Status,
    /// The provider's count of one pass over the file, times the epochs.
    pub trained_tokens: Option<u64>,
    /// The fee charged at delivery, in neuron.
    pub fee: Option<U256>,
    pub deliverable: Option<B256>,
    /// The chain's `JobState`, as last read.
    pub state_on_chain: Option<String>,
    pub steps: Vec<StepEvent>,
    pub checkpoints: Vec<Checkpoint>,
    pub notes: Vec<Note>,
    /// Why the job failed: OpenAI's `error.code` and `error.message`.
    pub error: Option<(String, String)>,
    pub adapter_path: Option<PathBuf>,
    pub fine_tuned_model: Option<String>,
    /// The API key charged the order's maxFee when the job started: until
    /// the job ends and the key gets back what the job did not cost.
    #[serde(default)]
    pub key: Option<String>,
}

/// `ftjob-<64 hex>`: the on-chain id, in OpenAI's id shape.
pub(super) fn job_name(id: &B256) -> String {
    format!("ftjob-{}", hex::encode(id))
}

/// The on-chain id of `ftjob-<64 hex>`.
pub(super) fn parse_job_name(name: &str) -> Option<B256> {
    let hex = name.strip_prefix("ftjob-")?;
    (hex.len() == 64).then_some(())?;
    hex.parse().ok()
}

fn file_path(dir: &Path, id: &B256) -> PathBuf {
    dir.join(format!("{}.json", hex::encode(id)))
}

/// Every record under `dir`; a missing folder holds none.
pub(super) fn load_all(dir: &Path) -> Vec<JobRecord> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<JobRecord>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(record) => out.push(record),
            Err(error) => tracing::warn!(path = %path.display(), %error,
                "skipping a fine-tuning job record that does not read"),
        }
    }
    out
}

pub(super) async fn remove(dir: &Path, id: &B256) -> Result<(), FtError> {
    let path = file_path(dir, id);
    match tokio::fs::remove_file(&path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(FtError::io("removing", &path)(e))
        }
        _ => Ok(()),
    }
}

impl JobRecord {
    pub(super) async fn write(&self, dir: &Path) -> Result<(), FtError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| FtError::Io {
            action: "encoding the record of",
            path: file_path(dir, &self.id),
            source: e.into(),
        })?;
        write_atomic(&file_path(dir, &self.id), &bytes).await
    }

    pub(super) fn name(&self) -> String {
        job_name(&self.id)
    }

    pub(super) fn note(&mut self, level: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::info!(job = %self.name(), %level, %message, "fine-tuning");
        self.notes.push(Note {
            at: now_unix(),
            level: level.into(),
            message,
        });
    }

    /// Ends the job with `status` (and an error for a failure).
    pub(super) fn finish(&mut self, status: Status, error: Option<(&str, String)>) {
        self.status = status;
        self.finished_at = Some(now_unix());
        if let Some((code, message)) = error {
            self.note("error", message.clone());
            self.error = Some((code.to_owned(), message));
        }
    }

    /// What the job cost the user once it ended: nothing when it was
    /// cancelled or abandoned, else at most the fee it was delivered for
    /// (a delivery never acknowledged pays only a share of it).
    pub(super) fn cost(&self) -> U256 {
        match self.status {
            Status::Cancelled => U256::ZERO,
            _ => self.fee.unwrap_or_default().min(self.order.max_fee),
        }
    }

    /// `ft:<base model>:<suffix or zg>:<first 8 hex of the job id>`.
    pub(super) fn model_name(&self) -> String {
        let suffix = self.suffix.as_deref().unwrap_or("zg");
        let id = hex::encode(self.id);
        format!("ft:{}:{suffix}:{}", self.model, &id[..8])
    }

    fn hyperparameters(&self) -> Value {
        let h = self.order.hyperparameters;
        json!({
            "n_epochs": h.epochs,
            "batch_size": h.batch_size,
            "learning_rate_multiplier": h.learning_rate_multiplier(),
        })
    }

    /// When training should end, from the pace of the steps so far.
    fn estimated_finish(&self) -> Option<u64> {
        if self.status != Status::Running {
            return None;
        }
        let (first, last) = (self.steps.first()?, self.steps.last()?);
        let done = last.step.checked_sub(first.step).filter(|d| *d > 0)?;
        let left = last.total_steps.saturating_sub(last.step);
        let per_step = last.at.saturating_sub(first.at) as f64 / done as f64;
        Some(last.at + (per_step * left as f64).round() as u64)
    }

    /// OpenAI's `fine_tuning.job`, with our own fields under `zg`.
    pub(super) fn to_openai(&self) -> Value {
        let error = self
            .error
            .as_ref()
            .map(|(code, message)| json!({ "code": code, "message": message, "param": null }));
        json!({
            "id": self.name(),
            "object": "fine_tuning.job",
            "model": self.model,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "fine_tuned_model": self.fine_tuned_model,
            "organization_id": self.order.user.to_string(),
            "result_files": [],
            "status": self.status,
            "training_file": self.training_file,
            "validation_file": self.validation_file,
            "hyperparameters": self.hyperparameters(),
            "method": { "type": "supervised", "supervised": { "hyperparameters": self.hyperparameters() } },
            "trained_tokens": self.trained_tokens,
            "error": error,
            "seed": self.seed,
            "estimated_finish": self.estimated_finish(),
            "user_provided_suffix": self.suffix,
            "integrations": null,
            "zg": {
                "provider": self.order.provider,
                "service": self.order.service,
                "base_model_digest": self.order.base_model,
                "lora_rank": self.order.hyperparameters.rank,
                "fee_neuron": self.fee.map(|f| f.to_string()),
                "max_fee_neuron": self.order.max_fee.to_string(),
                "deliverable": self.deliverable,
                "adapter_path": self.adapter_path,
                "state_on_chain": self.state_on_chain,
            },
        })
    }

    /// Events as OpenAI lists them: newest first, the provider's steps as
    /// `metrics` and the gateway's notes as `message`.
    pub(super) fn events(&self) -> Vec<Value> {
        let job = self.name();
        let mut all: Vec<(u64, Value)> = Vec::new();
        for s in &self.steps {
            all.push((
                s.at,
                json!({
                    "object": "fine_tuning.job.event",
                    "id": format!("ftevent-{}-step-{}", &job[6..14], s.step),
                    "created_at": s.at,
                    "level": "info",
                    "message": format!("Step {}/{}: training loss={:.4}", s.step, s.total_steps, s.train_loss),
                    "type": "metrics",
                    "data": { "step": s.step, "train_loss": s.train_loss, "total_steps": s.total_steps },
                }),
            ));
        }
        for (i, n) in self.notes.iter().enumerate() {
            all.push((
                n.at,
                json!({
                    "object": "fine_tuning.job.event",
                    "id": format!("ftevent-{}-note-{i}", &job[6..14]),
                    "created_at": n.at,
                    "level": n.level,
                    "message": n.message,
                    "type": "message",
                    "data": {},
                }),
            ));
        }
        // Stable: within one second, the later-recorded stays later.
        all.sort_by_key(|(at, _)| *at);
        all.into_iter().rev().map(|(_, v)| v).collect()
    }

    /// Checkpoints as OpenAI lists them, newest first.
    pub(super) fn checkpoints(&self) -> Vec<Value> {
        let base = self.model_name();
        self.checkpoints
            .iter()
            .rev()
            .map(|c| {
                json!({
                    "object": "fine_tuning.job.checkpoint",
                    "id": format!("ftckpt-{}-{}", &self.name()[6..14], c.step),
                    "created_at": c.at,
                    "fine_tuned_model_checkpoint": format!("{base}:ckpt-step-{}", c.step),
                    "fine_tuning_job_id": self.name(),
                    "step_number": c.step,
                    "metrics": { "step": c.step, "train_loss": c.train_loss, "valid_loss": c.valid_loss },
                })
            })
            .collect()
    }

    /// The `/v1/models` entry of a succeeded job.
    pub(super) fn model_entry(&self) -> Option<Value> {
        let name = self.fine_tuned_model.as_ref()?;
        (self.status == Status::Succeeded).then(|| {
            json!({
                "id": name,
                "object": "model",
                "created": self.finished_at.unwrap_or(self.created_at),
                "owned_by": self.order.user.to_string(),
                "kind": "fine-tuned",
                "root": self.model,
                "adapter_path": self.adapter_path,
            })
        })
    }
}
