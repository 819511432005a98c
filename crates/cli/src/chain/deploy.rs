//! `zg-serving chain deploy`: the contract onto any EVM chain by its RPC
//! URL, from a keystore's key (the contract's owner), checked before it is
//! sent (the chain id a preset expects) and after (confirmations, the code
//! at the address), then recorded in a network file.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::json;
use std::{path::PathBuf, time::Duration};
use zg_chain::{ChainClient, DEFAULT_LOCK_PERIOD, DeployParams};
use zg_core::{format_amount, parse_amount};

use crate::{
    keys::PasswordArgs,
    network::{self, Network, NetworkArgs},
    user::Out,
};

#[derive(Args)]
pub(super) struct DeployArgs {
    /// With --network: deploy to that network's chain (a preset's RPC and chain id).
    #[command(flatten)]
    network: NetworkArgs,
    /// JSON-RPC URL of the chain to deploy to (instead of the network's).
    #[arg(long, visible_alias = "rpc")]
    rpc_url: Option<String>,
    /// Name of the network file to write [default: --network's name].
    #[arg(long)]
    name: Option<String>,
    /// Encrypted JSON keystore of the deployer, who becomes the contract's owner.
    #[arg(long)]
    key_file: PathBuf,
    #[command(flatten)]
    password: PasswordArgs,
    /// Blocks the deployment must be deep before it is recorded (1: mined).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    confirmations: u64,
    /// Seconds to wait for the confirmations.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Block explorer of the chain [default: the preset's].
    #[arg(long)]
    explorer_url: Option<String>,
    /// Refund lock period of the new contract, in seconds (60 ..= 30 days).
    #[arg(long, default_value_t = DEFAULT_LOCK_PERIOD)]
    lock_period: u64,
    /// Minimum provider stake of the new contract, in 0G.
    #[arg(long, default_value = "0.1")]
    min_stake: String,
    /// Replace an existing network file of that name (its deployment is forgotten, not undone).
    #[arg(long)]
    force: bool,
}

pub(super) async fn run(args: DeployArgs, out: Out) -> Result<()> {
    let base = args.network.load()?;
    let rpc_url = match (&args.rpc_url, &base) {
        (Some(url), _) => url.clone(),
        (None, Some(n)) => n.rpc_url.clone(),
        (None, None) => bail!("where to? pass --rpc-url URL (any EVM chain) or --network NAME"),
    };
    let name = match (&args.name, &base) {
        (Some(name), _) => name.clone(),
        (None, Some(n)) => n.name.clone(),
        (None, None) => bail!(
            "pass --name NAME: the network file's name, which other commands take as --network NAME"
        ),
    };
    if name == "dev" {
        bail!(
            "`dev` names the chain `zg-serving dev` runs, which records its own contract \
             (a file named dev would hide it once dev restarts on another port): choose another --name"
        );
    }
    let file = args.network.file(&name)?;
    if file.exists() && !args.force {
        bail!(
            "{} exists: a deployment named {name} is recorded there. Choose another --name, \
             or pass --force to replace the file (the contract it names stays on chain)",
            file.display()
        );
    }
    let min_stake = parse_amount(&args.min_stake)
        .with_context(|| format!("--min-stake {:?}", args.min_stake))?;
    let key = args.password.unlock(&args.key_file)?;

    // Refused before anything is signed: a preset's chain id is what its
    // name promises, and a wrong RPC must not cost a deployment.
    let chain_id = ChainClient::chain_id_at(&rpc_url).await?;
    if let Some(expected) = base.as_ref().map(|n| n.chain_id)
        && expected != chain_id
    {
        bail!(
            "network {} is chain id {expected}, but {rpc_url} serves chain id {chain_id}: \
             nothing deployed. Point --rpc-url at a node of chain {expected}, \
             or deploy without --network (--rpc-url URL --name NAME)",
            base.as_ref().map(|n| n.name.as_str()).unwrap_or_default()
        );
    }

    eprintln!(
        "deploying ZgServing to chain {chain_id} at {rpc_url} from {} ...",
        key.address()
    );
    let params = DeployParams {
        lock_period: args.lock_period,
        min_stake,
    };
    let deployed = ChainClient::deploy_recorded(&rpc_url, &key.to_bytes(), params).await?;
    let contract = deployed.client.contract_address();
    eprintln!(
        "sent in {} (block {}); waiting for {} confirmation(s) ...",
        deployed.tx_hash, deployed.block, args.confirmations
    );
    let block = deployed
        .client
        .wait_confirmed(
            deployed.tx_hash,
            args.confirmations,
            Duration::from_secs(args.timeout_secs),
        )
        .await?;
    deployed.client.check_code().await?;

    let network = Network {
        name: name.clone(),
        chain_id,
        rpc_url,
        contract: Some(contract),
        deployment_block: Some(block),
        explorer_url: args
            .explorer_url
            .or_else(|| base.and_then(|n| n.explorer_url)),
    };
    network::write(&file, &network)?;
    let link = network
        .explorer_url
        .as_ref()
        .map(|e| format!("{}/address/{contract}", e.trim_end_matches('/')));
    out.print(
        json!({
            "network": network,
            "tx_hash": deployed.tx_hash,
            "owner": key.address(),
            "file": file,
            "explorer": link,
        }),
        || {
            format!(
                "deployed ZgServing {contract} on chain {chain_id} in block {block} (tx {}), owner {}\n\
                 lock period {} s, min stake {} 0G; the code at the address is this build's\n\
                 {}wrote {}: use it with --network {name}",
                deployed.tx_hash,
                key.address(),
                params.lock_period,
                format_amount(params.min_stake),
                link.map(|l| format!("explorer {l}\n")).unwrap_or_default(),
                file.display(),
            )
        },
    );
    Ok(())
}
