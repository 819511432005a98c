//! The dev marketplace's directory: anvil's state, the deployment record,
//! the providers' configs and databases, the user's book and the API key.
//! A restart with the same directory continues where the last run stopped.

use crate::DevnetError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zg_core::Address;

/// What a later run needs to find again: the contract, and the gateway's key
/// (only its hash is in the book, so the secret is kept here for the person).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub contract: Address,
    pub api_key: Option<String>,
    /// The chain's URL on its latest start (its port changes), for `--network dev`.
    #[serde(default)]
    pub rpc_url: Option<String>,
}

pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens `root` (made if missing); `fresh` wipes what an earlier run left.
    pub fn open(root: PathBuf, fresh: bool) -> Result<Self, DevnetError> {
        if fresh && root.exists() {
            std::fs::remove_dir_all(&root)
                .map_err(|e| DevnetError::file("cannot clear (for --fresh)", &root, e))?;
        }
        std::fs::create_dir_all(&root)
            .map_err(|e| DevnetError::file("cannot create the data directory", &root, e))?;
        Ok(Self { root })
    }

    /// `root` as it is, for reading what a run left there.
    pub fn existing(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn chain_state(&self) -> PathBuf {
        self.path("chain-state.json")
    }

    /// The record of an earlier run, if there was one and its chain survived.
    pub fn record(&self) -> Result<Option<Record>, DevnetError> {
        let path = self.path("dev.json");
        if !path.exists() || !self.chain_state().exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| DevnetError::file("cannot read", &path, e))?;
        let record = serde_json::from_str(&text).map_err(|e| {
            DevnetError::file("is not a dev record (start over with --fresh):", &path, e)
        })?;
        Ok(Some(record))
    }

    pub fn save_record(&self, record: &Record) -> Result<(), DevnetError> {
        let path = self.path("dev.json");
        let text = serde_json::to_string_pretty(record)
            .map_err(|e| DevnetError::file("cannot encode", &path, e))?;
        self.write(&path, &text)
    }

    /// Writes `text` to `path`, saying which file failed.
    pub(crate) fn write(&self, path: &Path, text: &str) -> Result<(), DevnetError> {
        std::fs::write(path, text).map_err(|e| DevnetError::file("cannot write", path, e))
    }
}

/// `$XDG_DATA_HOME/zg-serving/dev`, else `~/.local/share/zg-serving/dev`.
pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("zg-serving").join("dev")
}
