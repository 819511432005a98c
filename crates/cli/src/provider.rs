//! `zg-serving provider`: run the provider broker (`serve`), write a
//! commented config (`init`), settle now (`settle`), show the books (`status`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub(crate) struct ProviderArgs {
    #[command(subcommand)]
    command: ProviderCommand,
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Serve paid, metered, signed OpenAI-compatible requests and settle them.
    Serve {
        #[arg(
            long,
            short,
            default_value = "provider.toml",
            env = "ZG_PROVIDER_CONFIG"
        )]
        config: PathBuf,
    },
    /// Write a commented example config.
    Init {
        #[arg(long, short, default_value = "provider.toml")]
        config: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Settle every user's newest unsettled voucher now.
    Settle {
        #[arg(
            long,
            short,
            default_value = "provider.toml",
            env = "ZG_PROVIDER_CONFIG"
        )]
        config: PathBuf,
    },
    /// Remove the configured services from the registry; removing the last
    /// starts the stake's unbonding period.
    Unregister {
        #[arg(
            long,
            short,
            default_value = "provider.toml",
            env = "ZG_PROVIDER_CONFIG"
        )]
        config: PathBuf,
    },
    /// Take the stake back once unregistered, unbonded and free of open disputes.
    WithdrawStake {
        #[arg(
            long,
            short,
            default_value = "provider.toml",
            env = "ZG_PROVIDER_CONFIG"
        )]
        config: PathBuf,
    },
    /// Show services, users, owed, settled and earnings.
    Status {
        #[arg(
            long,
            short,
            default_value = "provider.toml",
            env = "ZG_PROVIDER_CONFIG"
        )]
        config: PathBuf,
    },
}

pub(crate) fn run(args: ProviderArgs) -> anyhow::Result<()> {
    if let ProviderCommand::Init { config, force } = &args.command {
        if config.exists() && !force {
            anyhow::bail!("{} exists: pass --force to overwrite it", config.display());
        }
        std::fs::write(config, zg_provider::EXAMPLE)
            .with_context(|| format!("writing {}", config.display()))?;
        let dir = config
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
            .join("keys");
        let d = dir.display();
        println!(
            "wrote {c}: make its keys (a wallet and a separate receipt signer, one password):\n  \
             zg-serving keys new {d}/provider.json --password-file {d}/password\n  \
             zg-serving keys new {d}/signer.json --password-file {d}/password\n\
             (write the password into {d}/password first, chmod 600), fill in the chain and services, \
             then `zg-serving provider serve --config {c}`",
            c = config.display(),
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            ProviderCommand::Serve { config } => {
                let config = zg_provider::Config::load(&config)?;
                zg_provider::serve_until(config, shutdown_signal()).await?;
            }
            ProviderCommand::Settle { config } => {
                let config = zg_provider::Config::load(&config)?;
                let broker = zg_provider::Broker::open(config).await?;
                let round = broker.settler().settle_now().await?;
                println!(
                    "settled {} vouchers ({} rejected), paid {} 0G, transactions {:?}",
                    round.settled,
                    round.rejected,
                    zg_core::format_amount(round.paid),
                    round.txs
                );
            }
            ProviderCommand::Unregister { config } => {
                let broker = zg_provider::Broker::open(zg_provider::Config::load(&config)?).await?;
                let removed = broker.unregister().await?;
                println!(
                    "removed {} service(s) from the registry: {}",
                    removed.len(),
                    removed.join(", ")
                );
                print!("{}", broker.status().await?);
            }
            ProviderCommand::WithdrawStake { config } => {
                let broker = zg_provider::Broker::open(zg_provider::Config::load(&config)?).await?;
                let stake = broker.withdraw_stake().await?;
                println!(
                    "withdrew the stake: {} 0G back to the provider's wallet",
                    zg_core::format_amount(stake)
                );
            }
            ProviderCommand::Status { config } => {
                let config = zg_provider::Config::load(&config)?;
                let broker = zg_provider::Broker::open(config).await?;
                print!("{}", broker.status().await?);
            }
            ProviderCommand::Init { .. } => {}
        }
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
