//! A local dev chain: anvil on a free port, stopped when dropped. The project
//! installs anvil with npm (contracts/package-lock.json), so nothing global is needed.

use crate::DevnetError;
use alloy::{
    primitives::{Address, B256, U256},
    providers::{Provider, ProviderBuilder, ext::AnvilApi},
};
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Where npm puts anvil, relative to the workspace root.
const NPM_ANVIL: &str = "contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start the dev chain.
#[derive(Debug, Clone)]
pub struct DevChainOptions {
    pub chain_id: u64,
    /// Funded dev accounts (10 000 tokens each).
    pub accounts: usize,
    /// Keep the chain in this file: loaded at start, saved every second and
    /// on [`DevChain::stop`], so a restart continues where it stopped.
    pub state: Option<PathBuf>,
}

impl Default for DevChainOptions {
    fn default() -> Self {
        Self {
            chain_id: 31337,
            accounts: 10,
            state: None,
        }
    }
}

/// A running anvil. Dropping it kills the process.
#[derive(Debug)]
pub struct DevChain {
    /// Spawned with kill-on-drop.
    child: Child,
    url: String,
    chain_id: u64,
    keys: Vec<B256>,
}

impl DevChain {
    pub async fn start() -> Result<Self, DevnetError> {
        Self::start_with(DevChainOptions::default()).await
    }

    pub async fn start_with(options: DevChainOptions) -> Result<Self, DevnetError> {
        let path = find_anvil()?;
        let shown = path.display().to_string();
        let start_err = |reason: String| DevnetError::AnvilStart {
            path: shown.clone(),
            reason,
        };
        let mut child = Command::new(&path)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--chain-id", &options.chain_id.to_string()])
            .args(["--accounts", &options.accounts.to_string()])
            .args(options.state.iter().flat_map(|state| {
                [
                    OsStr::new("--state"),
                    state.as_os_str(),
                    OsStr::new("--state-interval"),
                    OsStr::new("1"),
                ]
            }))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| start_err(e.to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| start_err("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();

        // anvil prints its keys, then "Listening on 127.0.0.1:PORT" once it serves.
        let mut keys = Vec::new();
        let mut in_keys = false;
        let address = tokio::time::timeout(STARTUP_TIMEOUT, async {
            while let Some(line) = lines
                .next_line()
                .await
                .map_err(|e| start_err(e.to_string()))?
            {
                let line = line.trim();
                if let Some(address) = line.strip_prefix("Listening on ") {
                    return Ok(address.to_string());
                }
                if line.starts_with("Private Keys") {
                    in_keys = true;
                } else if in_keys && line.starts_with('(') {
                    let key = line
                        .split_whitespace()
                        .nth(1)
                        .and_then(|k| k.parse::<B256>().ok());
                    keys.extend(key);
                } else if in_keys && line.starts_with("Wallet") {
                    in_keys = false;
                }
            }
            Err(start_err("exited before listening".into()))
        })
        .await
        .map_err(|_| start_err(format!("not listening after {STARTUP_TIMEOUT:?}")))??;

        // Keep reading so anvil never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::trace!(target: "anvil", "{line}");
            }
        });

        if keys.len() != options.accounts {
            return Err(start_err(format!(
                "expected {} dev keys in its output, read {}",
                options.accounts,
                keys.len()
            )));
        }
        let chain = Self {
            child,
            url: format!("http://{address}"),
            chain_id: options.chain_id,
            keys,
        };
        tracing::debug!(url = %chain.url, "anvil started");
        Ok(chain)
    }

    /// Stops anvil with SIGINT, so that it saves its state, and waits for it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            // SAFETY: kill(2) on our own child's pid has no memory effects.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        }
    }

    /// The HTTP JSON-RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Private keys of the funded dev accounts.
    pub fn keys(&self) -> &[B256] {
        &self.keys
    }

    fn provider(&self) -> Result<impl Provider + AnvilApi<alloy::network::Ethereum>, DevnetError> {
        let url = self.url.parse().map_err(|e| DevnetError::Rpc {
            action: "connecting to anvil".into(),
            reason: format!("{}: {e}", self.url),
        })?;
        let http =
            zg_chain::tls::rpc_client().map_err(|e| DevnetError::rpc("connecting to anvil", e))?;
        Ok(ProviderBuilder::new().connect_reqwest(http, url))
    }

    /// Moves the chain's clock forward and mines a block at the new time.
    pub async fn advance_time(&self, seconds: u64) -> Result<(), DevnetError> {
        let provider = self.provider()?;
        provider
            .anvil_increase_time(seconds)
            .await
            .map_err(|e| DevnetError::rpc("advancing anvil's clock", e))?;
        provider
            .evm_mine(None)
            .await
            .map_err(|e| DevnetError::rpc("mining a block", e))?;
        Ok(())
    }

    /// Sets the native balance of `who` (to fund accounts beyond the dev keys).
    pub async fn set_balance(&self, who: Address, amount: U256) -> Result<(), DevnetError> {
        self.provider()?
            .anvil_set_balance(who, amount)
            .await
            .map_err(|e| DevnetError::rpc(format!("setting the balance of {who}"), e))
    }
}

/// `ZG_ANVIL`, then npm's copy in this workspace (found from where the crate
/// was built, then from the running executable's ancestors), then `PATH`.
pub fn find_anvil() -> Result<PathBuf, DevnetError> {
    let mut looked = Vec::new();
    if let Some(path) = std::env::var_os("ZG_ANVIL") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        looked.push(format!("ZG_ANVIL={}", path.display()));
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(NPM_ANVIL);
    let mut candidates = vec![built_in];
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(|dir| dir.join(NPM_ANVIL)));
    }
    for candidate in candidates {
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("anvil");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    looked.push("anvil on PATH".into());
    Err(DevnetError::AnvilNotFound {
        looked: looked.join(", "),
    })
}
