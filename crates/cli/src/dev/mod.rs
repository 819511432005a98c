//! `zg-serving dev`: a whole marketplace on one machine in one command. It
//! owns the data directory and the order things start and stop in; the
//! pieces themselves are the real chain, engine, broker and gateway, the
//! gateway's audits and two verifier nodes (with `--cheater`, a provider
//! that serves a substitute model for them to catch).

mod banner;
mod demo;
mod finetune;

use anyhow::{Context, Result};
use clap::Args;
use std::{path::PathBuf, sync::Arc, time::Duration};
use zg_core::SigningKey;
use zg_devnet::{DataDir, Stack, StackPlan};
use zg_engine::verify::Shelf;
use zg_gateway::AuditPolicy;

use crate::verifier::{self, Metrics, NodeSettings};

/// Verifier nodes `dev` runs; every one must vote for a verdict.
const VERIFIERS: usize = 2;

#[derive(Args)]
pub(crate) struct DevArgs {
    /// Where the chain, the databases and the keys live; a restart continues from it.
    #[arg(long, env = "ZG_DEV_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Start over: wipe the data directory first.
    #[arg(long)]
    fresh: bool,
    /// Providers to start, at prices 1x, 2x, ... so routing has a choice.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    providers: u16,
    /// Port of the gateway (the OpenAI base URL is http://127.0.0.1:PORT/v1).
    #[arg(long, default_value_t = 4000)]
    port: u16,
    /// GGUF chat model for the built-in engine.
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
    /// Embedding model directory; `none` serves no embeddings.
    #[arg(long, default_value = "models/all-MiniLM-L6-v2")]
    embedding_model: PathBuf,
    /// Run the end-to-end demo once (chat, stream, receipts, settlement) and exit.
    #[arg(long)]
    demo: bool,
    /// Run the fine-tuning demo once (upload, job, events, sealed delivery,
    /// acknowledgement, settlement, chat with the tuned model) and exit.
    #[arg(long)]
    demo_finetune: bool,
    /// Add a provider that registers the honest model's digest but serves a
    /// cheaper requantized substitute, at half the price, for the audits to catch.
    #[arg(long)]
    cheater: bool,
}

/// The data directory `ZG_DEV_DATA_DIR` (or the default) names, and the
/// record of the dev marketplace that ran there (for `--network dev`).
pub(crate) fn recorded() -> Result<(PathBuf, zg_devnet::Record)> {
    let root = std::env::var_os("ZG_DEV_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(zg_devnet::default_data_dir);
    let record = DataDir::existing(root.clone()).record()?.with_context(|| {
        format!(
            "no `zg-serving dev` has run with the data directory {} (set ZG_DEV_DATA_DIR to the one it used): \
             start it, or pass --rpc-url and --contract",
            root.display()
        )
    })?;
    Ok((root, record))
}

pub(crate) fn run(args: DevArgs) -> Result<()> {
    let dir = DataDir::open(
        args.data_dir.unwrap_or_else(zg_devnet::default_data_dir),
        args.fresh,
    )?;
    let embedding_model =
        (args.embedding_model.as_os_str() != "none").then_some(args.embedding_model);
    for path in std::iter::once(&args.model).chain(embedding_model.iter()) {
        if !path.exists() {
            anyhow::bail!(
                "model {} is missing: run `make model` first (or pass --model)",
                path.display()
            );
        }
    }
    // The weights the audits and the verifiers hold: the folder of the model.
    let models_dir = match args.model.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let shelf = Arc::new(Shelf::new(&models_dir, 1));
    let model = args.model.clone();
    let plan = StackPlan {
        model: args.model,
        embedding_model,
        providers: usize::from(args.providers),
        gateway_port: args.port,
        progress: |step| println!("{step}"),
        cheater: args.cheater,
        verifiers: VERIFIERS,
        audits: Some((
            verifier::audit_checker(&models_dir, 1)?,
            AuditPolicy::default(),
        )),
    };
    tokio::runtime::Runtime::new()
        .context("could not start the async runtime")?
        .block_on(async move {
            let stack = Stack::start(&dir, &plan).await?;
            let (stop, verifiers) = start_verifiers(&stack, &shelf).await?;
            let outcome = if args.demo {
                demo::run(&stack).await
            } else if args.demo_finetune {
                finetune::run(&stack, &model).await
            } else {
                banner::print(&stack, dir.root());
                stopped().await;
                println!("\nstopping: finishing requests in flight ...");
                Ok(())
            };
            let _ = stop.send(true);
            for node in verifiers {
                let _ = node.await;
            }
            stack.shutdown().await;
            outcome
        })
}

/// The verifier nodes of the stack's registered keys, sharing one shelf of
/// weights, watching from the current block until `stop`.
async fn start_verifiers(
    stack: &Stack,
    shelf: &Arc<Shelf>,
) -> Result<(
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<Result<()>>>,
)> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let from_block = stack.owner.block_number().await?;
    let mut nodes = Vec::new();
    for key in &stack.verifier_keys {
        let chain = stack.owner.with_key(key)?;
        let settings = NodeSettings {
            poll: Duration::from_millis(500),
            from_block,
        };
        nodes.push(tokio::spawn(verifier::node::watch(
            chain,
            SigningKey::from_bytes(key)?,
            shelf.clone(),
            settings,
            Arc::new(Metrics::default()),
            stopped.clone(),
        )));
    }
    Ok((stop, nodes))
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
