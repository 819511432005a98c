//! `zg-serving engine`: the built-in inference server (crate zg-engine) on
//! a host and port.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use zg_engine::{Engine, EngineConfig};

#[derive(Args)]
pub(crate) struct EngineArgs {
    /// GGUF chat model (e.g. models/SmolLM2-135M-Instruct.Q4_1.gguf from `make model`).
    #[arg(long, env = "ZG_ENGINE_MODEL")]
    model: PathBuf,
    /// Directory of a BERT sentence-embedding model (e.g. models/all-MiniLM-L6-v2); enables /v1/embeddings.
    #[arg(long, env = "ZG_ENGINE_EMBEDDING_MODEL")]
    embedding_model: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1", env = "ZG_ENGINE_HOST")]
    host: String,
    #[arg(long, default_value_t = 8080, env = "ZG_ENGINE_PORT")]
    port: u16,
    /// Requests decoded together (slots); the context is split equally among them.
    #[arg(long, default_value_t = 4)]
    parallel: u32,
    /// CPU threads for inference [default: available CPUs, at most 8].
    #[arg(long)]
    threads: Option<u32>,
    /// Total context in tokens, shared by the slots.
    #[arg(long, default_value_t = 8192)]
    ctx: u32,
    /// LoRA adapter (GGUF, e.g. from zg-finetune) applied to the chat model.
    #[arg(long, value_name = "FILE", env = "ZG_ENGINE_LORA")]
    lora: Option<PathBuf>,
}

pub(crate) fn run(args: EngineArgs) -> anyhow::Result<()> {
    let mut config = EngineConfig::new(args.model);
    config.embedding_model = args.embedding_model;
    config.parallel = args.parallel;
    config.ctx = args.ctx;
    config.lora = args.lora;
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    let engine = Arc::new(Engine::load(&config)?);
    for card in engine.models() {
        tracing::info!(id = %card.id, kind = card.kind, sha256 = %card.sha256, "serving model");
    }
    let addr = format!("{}:{}", args.host, args.port);
    tokio::runtime::Runtime::new()
        .context("could not start the async runtime")?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("could not listen on {addr}"))?;
            tracing::info!("engine listening on http://{}/v1", listener.local_addr()?);
            zg_engine::serve(engine, listener)
                .await
                .context("the HTTP server failed")
        })
}
