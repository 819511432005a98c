//! A job's files under `work_dir/jobs/<id>/`: its record (`job.json`,
//! replaced atomically), the training and validation files, the trainer's
//! checkpoints, the adapter, the sealed adapter and its content key. A
//! restarted broker reads the records back and carries on from them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zg_core::{
    B256, Signature,
    fine_tuning::{JobStatus, JobView},
    seal::ContentKey,
};

/// What the broker keeps of a job beyond what it shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub(super) view: JobView,
    /// The order's signature: the content key is sealed to its signer.
    pub(super) signature: Signature,
}

impl JobRecord {
    pub(super) fn id(&self) -> B256 {
        self.view.id
    }

    pub(super) fn status(&self) -> JobStatus {
        self.view.status
    }
}

/// The folder of one job.
#[derive(Debug, Clone)]
pub(super) struct JobDir(PathBuf);

impl JobDir {
    pub(super) fn new(work_dir: &Path, id: &B256) -> Self {
        Self(work_dir.join("jobs").join(hex::encode(id)))
    }

    pub(super) fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.0)
    }

    pub(super) fn training(&self) -> PathBuf {
        self.0.join("training.jsonl")
    }

    pub(super) fn validation(&self) -> PathBuf {
        self.0.join("validation.jsonl")
    }

    pub(super) fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }

    pub(super) fn adapter(&self) -> PathBuf {
        self.0.join("adapter.gguf")
    }

    pub(super) fn sealed(&self) -> PathBuf {
        self.0.join("adapter.sealed")
    }

    fn key(&self) -> PathBuf {
        self.0.join("content.key")
    }

    fn record(&self) -> PathBuf {
        self.0.join("job.json")
    }

    /// Writes the record through a temporary file and a rename, so a crash
    /// leaves the old record or the new one, never half of one.
    pub(super) fn save(&self, record: &JobRecord) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        write_atomic(&self.record(), &json)
    }

    pub(super) fn load(&self) -> std::io::Result<JobRecord> {
        let bytes = std::fs::read(self.record())?;
        serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", self.record().display()),
            )
        })
    }

    /// The content key, written once before the sealed adapter is
    /// delivered (a restart between the two reuses both).
    pub(super) fn save_key(&self, key: &ContentKey) -> std::io::Result<()> {
        write_atomic(&self.key(), key.as_bytes())
    }

    pub(super) fn load_key(&self) -> std::io::Result<ContentKey> {
        let bytes = std::fs::read(self.key())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not 32 bytes", self.key().display()),
            )
        })?;
        Ok(ContentKey::from_bytes(bytes))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Every job record under `work_dir`; a folder without a readable record
/// is skipped with a warning (a crash before its first save).
pub(super) fn load_all(work_dir: &Path) -> std::io::Result<Vec<JobRecord>> {
    let jobs = work_dir.join("jobs");
    std::fs::create_dir_all(&jobs)?;
    let mut records = Vec::new();
    for entry in std::fs::read_dir(&jobs)? {
        let path = entry?.path();
        match JobDir(path.clone()).load() {
            Ok(record) => records.push(record),
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "skipping a job folder without a readable record")
            }
        }
    }
    records.sort_by_key(|r| r.view.created_at);
    Ok(records)
}
