//! `zg-serving chain`: put ZgServing on a network (`deploy`, which records
//! it in a network file), show a deployment (`info`) and change its
//! owner-only settings (`set`).

mod deploy;
mod info;
mod set;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub(crate) struct ChainArgs {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ChainCommand,
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Deploy the ZgServing contract and write a network file that `--network NAME` reads.
    Deploy(deploy::DeployArgs),
    /// The network, the contract's parameters and its owner-only settings.
    Info(info::InfoArgs),
    /// Owner only: set the lock period, minimum stake, verifiers, quorum and dispute rules, or hand over ownership.
    Set(set::SetArgs),
}

pub(crate) fn run(args: ChainArgs) -> anyhow::Result<()> {
    let out = crate::user::Out { json: args.json };
    tokio::runtime::Runtime::new()
        .context("could not start the async runtime")?
        .block_on(async move {
            match args.command {
                ChainCommand::Deploy(a) => deploy::run(a, out).await,
                ChainCommand::Info(a) => info::run(a, out).await,
                ChainCommand::Set(a) => set::run(a, out).await,
            }
        })
}
