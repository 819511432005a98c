//! The dev marketplace's directory: anvil's state, the deployment record,
//! the providers' configs and databases, the user's book and the API key.
//! A restart with the same directory continues where the last run stopped.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zg_core::Address;

/// What a later run needs to find again: the contract, and the gateway's key
/// (only its hash is in the book, so the secret is kept here for the person).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub contract: Address,
    pub api_key: Option<String>,
    /// The chain's URL on its latest start (its port changes), for `--network dev`.
    #[serde(default)]
    pub rpc_url: Option<String>,
}

pub(super) struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens `root` (made if missing); `fresh` wipes what an earlier run left.
    pub(super) fn open(root: PathBuf, fresh: bool) -> Result<Self> {
        if fresh && root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("cannot clear {} for --fresh", root.display()))?;
        }
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create the data directory {}", root.display()))?;
        Ok(Self { root })
    }

    /// `root` as it is, for reading what a run left there.
    pub(super) fn existing(root: PathBuf) -> Self {
        Self { root }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub(super) fn chain_state(&self) -> PathBuf {
        self.path("chain-state.json")
    }

    /// The record of an earlier run, if there was one and its chain survived.
    pub(super) fn record(&self) -> Result<Option<Record>> {
        let path = self.path("dev.json");
        if !path.exists() || !self.chain_state().exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let record = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a dev record; start over with --fresh",
                path.display()
            )
        })?;
        Ok(Some(record))
    }

    pub(super) fn save_record(&self, record: &Record) -> Result<()> {
        let path = self.path("dev.json");
        let text = serde_json::to_string_pretty(record)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// `$XDG_DATA_HOME/zg-serving/dev`, else `~/.local/share/zg-serving/dev`.
pub(super) fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("zg-serving").join("dev")
}
