//! Networks by name: where a ZgServing deployment lives (chain id, RPC,
//! contract, the block it was deployed in, an explorer). `chain deploy`
//! writes one TOML file per network into the networks folder; `--network
//! NAME` reads that file, else a preset (0G's Galileo testnet and mainnet,
//! and the local chain of `zg-serving dev`).

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zg_chain::ChainClient;
use zg_core::{Address, B256};

/// A deployment of ZgServing on one chain, as a network file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Network {
    pub name: String,
    pub chain_id: u64,
    pub rpc_url: String,
    /// None for a preset nobody deployed to yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_block: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explorer_url: Option<String>,
}

/// The presets' names, in the order errors list them.
pub(crate) const PRESETS: [&str; 3] = ["galileo", "mainnet", "dev"];

/// anvil's default chain id, which `zg-serving dev` runs.
const DEV_CHAIN_ID: u64 = 31337;

fn preset(name: &str) -> Result<Option<Network>> {
    let zero_g = |chain_id, rpc: &str, explorer: &str| Network {
        name: name.to_string(),
        chain_id,
        rpc_url: rpc.to_string(),
        contract: None,
        deployment_block: None,
        explorer_url: Some(explorer.to_string()),
    };
    Ok(match name {
        "galileo" => Some(zero_g(
            16602,
            "https://evmrpc-testnet.0g.ai",
            "https://chainscan-galileo.0g.ai",
        )),
        "mainnet" => Some(zero_g(
            16661,
            "https://evmrpc.0g.ai",
            "https://chainscan.0g.ai",
        )),
        "dev" => Some(dev_network()?),
        _ => None,
    })
}

/// The chain `zg-serving dev` runs: its port changes every start, so the
/// RPC URL and contract come from the record in dev's data directory.
fn dev_network() -> Result<Network> {
    let (dir, record) = crate::dev::recorded()?;
    let rpc_url = record.rpc_url.with_context(|| {
        format!(
            "the dev record in {} names no RPC URL (an older `zg-serving dev` wrote it): start `zg-serving dev` again",
            dir.display()
        )
    })?;
    Ok(Network {
        name: "dev".into(),
        chain_id: DEV_CHAIN_ID,
        rpc_url,
        contract: Some(record.contract),
        deployment_block: None,
        explorer_url: None,
    })
}

/// `--network` and where network files live; shared by `chain`, `user` and `gateway`.
#[derive(Args, Clone, Debug)]
pub(crate) struct NetworkArgs {
    /// A network by name: NAME.toml in the networks folder (written by
    /// `zg-serving chain deploy`), else a preset: galileo, mainnet, dev.
    #[arg(long, env = "ZG_NETWORK", global = true)]
    pub network: Option<String>,
    /// Folder of network files [default: $XDG_CONFIG_HOME/zg-serving/networks, else ~/.config/zg-serving/networks].
    #[arg(long, env = "ZG_NETWORKS_DIR", global = true)]
    pub networks_dir: Option<PathBuf>,
}

/// One deployment for the owner's commands: a network by name, its RPC URL
/// or contract overridden when given.
#[derive(Args)]
pub(crate) struct DeploymentArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// JSON-RPC URL of the chain (instead of the network's).
    #[arg(long, visible_alias = "rpc", env = "ZG_RPC_URL")]
    pub rpc_url: Option<String>,
    /// Address of the ZgServing contract (instead of the network's).
    #[arg(long, env = "ZG_CONTRACT")]
    pub contract: Option<Address>,
}

impl DeploymentArgs {
    /// The contract client on `key`'s wallet.
    pub(crate) async fn connect(&self, key: &B256) -> Result<ChainClient> {
        self.network
            .connect(self.rpc_url.as_deref(), self.contract, key)
            .await
    }
}

impl NetworkArgs {
    pub(crate) fn dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.networks_dir {
            return Ok(dir.clone());
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
            .context("no HOME to find the networks folder in: pass --networks-dir DIR or set ZG_NETWORKS_DIR")?;
        Ok(base.join("zg-serving").join("networks"))
    }

    /// The network `--network` names, if it names one.
    pub(crate) fn load(&self) -> Result<Option<Network>> {
        self.network
            .as_deref()
            .map(|name| find(name, &self.dir()?))
            .transpose()
    }

    /// The file `chain deploy` writes for network `name`.
    pub(crate) fn file(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir()?.join(format!("{name}.toml")))
    }

    /// Connects `key`'s wallet to the deployment that `--network` names,
    /// with `rpc_url` or `contract`, when given, instead of the network's.
    /// Refuses an RPC that serves another chain than the network's.
    pub(crate) async fn connect(
        &self,
        rpc_url: Option<&str>,
        contract: Option<Address>,
        key: &B256,
    ) -> Result<ChainClient> {
        let network = self.load()?;
        let rpc_url = match (rpc_url, &network) {
            (Some(url), _) => url.to_string(),
            (None, Some(n)) => n.rpc_url.clone(),
            // The CLI's default all along: a node on this machine.
            (None, None) => "http://127.0.0.1:8545".into(),
        };
        let contract = match (contract, &network) {
            (Some(c), _) => c,
            (
                None,
                Some(Network {
                    contract: Some(c), ..
                }),
            ) => *c,
            (None, Some(n)) => bail!(
                "network {name} has no ZgServing contract yet: deploy one with \
                 `zg-serving chain deploy --network {name} --key-file KEYSTORE`, or pass --contract 0x...",
                name = n.name
            ),
            (None, None) => bail!(
                "no contract: pass --network NAME (see `zg-serving chain info --help`), or --contract 0x... \
                 (or set ZG_CONTRACT; `zg-serving dev` prints it)"
            ),
        };
        let chain = ChainClient::connect(&rpc_url, contract, key)
            .await
            .with_context(|| format!("connecting to {rpc_url} (is the chain up?)"))?;
        if let Some(n) = &network
            && n.chain_id != chain.chain_id()
        {
            bail!(
                "network {} is chain id {}, but {rpc_url} serves chain id {}: fix the RPC URL, or the network file",
                n.name,
                n.chain_id,
                chain.chain_id()
            );
        }
        Ok(chain)
    }
}

/// A name is a file name in the networks folder: nothing that leaves it.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!(
            "network name {name:?}: expected 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'"
        );
    }
    Ok(())
}

/// The file `dir/NAME.toml` if there is one (a deployment to a preset's
/// chain is recorded under the preset's name and wins), else the preset.
fn find(name: &str, dir: &Path) -> Result<Network> {
    check_name(name)?;
    let path = dir.join(format!("{name}.toml"));
    if path.exists() {
        return read(&path);
    }
    if let Some(network) = preset(name)? {
        return Ok(network);
    }
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|f| f.strip_suffix(".toml").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    bail!(
        "no network {name:?}: no file {} and no preset of that name (presets: {}; files in {}: {}); \
         deploy one with `zg-serving chain deploy --rpc-url URL --key-file KEYSTORE --name {name}`",
        path.display(),
        PRESETS.join(", "),
        dir.display(),
        if files.is_empty() {
            "none".to_string()
        } else {
            files.join(", ")
        }
    )
}

fn read(path: &Path) -> Result<Network> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the network file {}", path.display()))?;
    let network: Network = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the network file {} is not a network: {}expected name, chain_id, rpc_url and optionally \
             contract, deployment_block, explorer_url (what `zg-serving chain deploy` writes)",
            path.display(),
            // toml's message ends with a newline after the offending line.
            e.to_string().trim_end().to_string() + "; "
        )
    })?;
    if !(network.rpc_url.starts_with("http://") || network.rpc_url.starts_with("https://")) {
        bail!(
            "the network file {}: rpc_url {:?} is not an http:// or https:// URL",
            path.display(),
            network.rpc_url
        );
    }
    Ok(network)
}

/// Writes `network` to `path`, whole or not at all.
pub(crate) fn write(path: &Path, network: &Network) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the networks folder {}", dir.display()))?;
    let text = format!(
        "# A ZgServing deployment, written by `zg-serving chain deploy`;\n\
         # commands read it with `--network {}`.\n{}",
        network.name,
        toml::to_string(network).context("encoding the network file")?
    );
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
