//! `zg-serving verifier serve --config verifier.toml`: a verifier node. It
//! watches the contract for disputes, reads each one's evidence from the
//! transaction that opened it, re-runs the proof with the registered weights
//! it holds (abstaining when it has none), and signs and submits its
//! verdict; `/metrics` says what it did. The owner registers its address
//! with `zg-serving chain set --add-verifier`.

pub(crate) mod node;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::Deserialize;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crate::{network::DeploymentArgs, user::wallet::KeyArgs};
pub(crate) use node::{Metrics, NodeSettings};
use zg_core::Evidence;
use zg_engine::verify::{Judgement, Shelf};
use zg_gateway::{AuditResult, Checker};

#[derive(Args)]
pub(crate) struct VerifierArgs {
    #[command(subcommand)]
    command: VerifierCommand,
}

#[derive(Subcommand)]
enum VerifierCommand {
    /// Watch for disputes and vote on them until Ctrl-C.
    Serve(ServeArgs),
    /// Write a commented verifier.toml to start from.
    Init {
        /// Where to write it.
        #[arg(long, default_value = "verifier.toml")]
        out: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// The node's settings (`zg-serving verifier init` writes an example).
    #[arg(long)]
    config: PathBuf,
    #[command(flatten)]
    deployment: DeploymentArgs,
    /// The verifier's key (its address is what the owner registers).
    #[command(flatten)]
    key: KeyArgs,
}

/// verifier.toml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    models_dir: PathBuf,
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default = "default_threads")]
    threads: u32,
    #[serde(default = "default_poll")]
    poll_secs: u64,
    /// First block to scan; absent: the latest block at start.
    from_block: Option<u64>,
}

fn default_listen() -> String {
    "127.0.0.1:9600".into()
}

fn default_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8) as u32)
}

fn default_poll() -> u64 {
    2
}

pub(crate) const EXAMPLE: &str = r#"# zg-serving verifier node: `zg-serving verifier serve --config verifier.toml
#   --network NAME --keystore keys/verifier.json` (or --rpc-url and --contract).
# The owner registers the key's address: `zg-serving chain set --add-verifier 0x...`.

# GGUF files this node holds (paths relative to where it runs). It judges a
# dispute only when one of them has the sha256 the service registered as its
# modelDigest, and abstains otherwise.
models_dir = "models"
# GET /metrics (Prometheus text) and GET /health.
listen = "127.0.0.1:9600"
# CPU threads per check.
threads = 2
# Seconds between looks at the chain for new disputes.
poll_secs = 2
# First block to scan for disputes (absent: the latest block at start).
# from_block = 0
"#;

/// The gateway's audit checker: the registered weights of `dir`, `threads`
/// CPU threads per check.
pub(crate) fn audit_checker(dir: &Path, threads: u32) -> Result<Arc<dyn Checker>> {
    anyhow::ensure!(
        dir.is_dir(),
        "the audit models folder {} is not a folder",
        dir.display()
    );
    Ok(Arc::new(ShelfChecker(Shelf::new(dir, threads))))
}

struct ShelfChecker(Shelf);

impl Checker for ShelfChecker {
    fn check(&self, evidence: &Evidence) -> Option<AuditResult> {
        match self.0.judge(evidence) {
            Judgement::Vote { guilty, why } => Some(AuditResult {
                pass: !guilty,
                detail: why,
            }),
            Judgement::Abstain(why) => {
                tracing::info!("audit skipped: {why}");
                None
            }
        }
    }
}

fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the verifier config {}", path.display()))?;
    let config: FileConfig = toml::from_str(&text)
        .with_context(|| format!("{} is not a verifier config", path.display()))?;
    anyhow::ensure!(
        config.threads >= 1,
        "{}: threads must be at least 1",
        path.display()
    );
    anyhow::ensure!(
        config.poll_secs >= 1,
        "{}: poll_secs must be at least 1",
        path.display()
    );
    anyhow::ensure!(
        config.models_dir.is_dir(),
        "{}: models_dir {} is not a folder",
        path.display(),
        config.models_dir.display()
    );
    Ok(config)
}

pub(crate) fn run(args: VerifierArgs) -> Result<()> {
    match args.command {
        VerifierCommand::Init { out } => {
            anyhow::ensure!(
                !out.exists(),
                "{} exists: not overwriting it",
                out.display()
            );
            std::fs::write(&out, EXAMPLE)
                .with_context(|| format!("could not write {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(())
        }
        VerifierCommand::Serve(a) => serve(a),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let config = load(&args.config)?;
    let key = args.key.load()?;
    tokio::runtime::Runtime::new()
        .context("could not start the async runtime")?
        .block_on(async move {
            let chain = args.deployment.connect(&key.to_bytes()).await?;
            if !chain.is_verifier(key.address()).await? {
                tracing::warn!(
                    verifier = %key.address(),
                    "this key is not a registered verifier: its verdicts will be refused until the owner runs `zg-serving chain set --add-verifier {}`",
                    key.address()
                );
            }
            let from_block = match config.from_block {
                Some(block) => block,
                None => chain.block_number().await?,
            };
            let shelf = Arc::new(Shelf::new(&config.models_dir, config.threads));
            let settings = NodeSettings {
                poll: Duration::from_secs(config.poll_secs),
                from_block,
            };
            let metrics = Arc::new(Metrics::default());
            let listener = tokio::net::TcpListener::bind(&config.listen)
                .await
                .with_context(|| format!("could not listen on {}", config.listen))?;
            println!(
                "verifier {} watching {} from block {from_block}; metrics at http://{}/metrics",
                key.address(),
                chain.contract_address(),
                listener.local_addr()?
            );
            let http = node::serve_metrics(listener, metrics.clone());
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let watch = tokio::spawn(node::watch(chain, key, shelf, settings, metrics, stop_rx));
            tokio::select! {
                r = http => r?,
                _ = crate::dev::stopped() => {}
            }
            let _ = stop_tx.send(true);
            watch.await.context("the watcher task failed")?
        })
}
