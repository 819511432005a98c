//! zg-bench: the benchmarks of `make bench-broker`, `make bench-gateway` and
//! `make bench-pricing` (docs/bench-broker.md, docs/bench-gateway.md,
//! docs/bench-pricing.md), and the broker and the gateway they start in
//! processes of their own, so that each one's CPU time can be read from
//! /proc. Its own crate, not an example, so that the release build links
//! no llama.cpp.
//!
//! ```text
//! zg-bench run-broker --dir DIR     the broker benchmark (floor, direct, broker, LiteLLM)
//! zg-bench run-gateway --dir DIR    the gateway against the broker
//! zg-bench run-pricing --dir DIR    demand pricing: quotes under load, the gateway's choice
//!                                   (--flat: the control, without demand pricing)
//! zg-bench broker --config FILE     a broker (zg_provider::serve_until)
//! zg-bench gateway --rpc URL --contract ADDR --key HEX --book PATH --listen ADDR
//! ```

mod broker;
mod fixture;
mod gateway;
mod load;
mod pricing;
mod procs;
mod report;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: zg-bench run-broker --dir DIR | run-gateway --dir DIR \
    | run-pricing --dir DIR [--flat] \
    | broker --config FILE \
    | gateway --rpc URL --contract ADDR --key HEX --book PATH --listen ADDR";

fn main() -> Result<()> {
    let args = Args(std::env::args().skip(1).collect());
    match args.0.first().map(String::as_str) {
        Some("run-broker") => broker::run(&args.dir("bench/broker/run")),
        Some("run-gateway") => gateway::run(&args.dir("bench/gateway/run")),
        Some("run-pricing") => pricing::run(
            &args.dir("bench/pricing/run"),
            args.0.iter().any(|a| a == "--flat"),
        ),
        Some("broker") => {
            logs();
            broker::serve(Path::new(&args.required("--config")?))
        }
        Some("gateway") => {
            logs();
            gateway::serve(gateway_args(&args)?)
        }
        _ => bail!("{USAGE}"),
    }
}

/// `--name value` pairs after the subcommand.
struct Args(Vec<String>);

impl Args {
    fn flag(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
    }

    fn required(&self, name: &str) -> Result<String> {
        self.flag(name)
            .with_context(|| format!("missing {name}\n{USAGE}"))
    }

    fn dir(&self, default: &str) -> PathBuf {
        PathBuf::from(self.flag("--dir").unwrap_or_else(|| default.into()))
    }
}

fn gateway_args(args: &Args) -> Result<gateway::GatewayArgs> {
    Ok(gateway::GatewayArgs {
        rpc: args.required("--rpc")?,
        contract: args
            .required("--contract")?
            .parse()
            .context("--contract is not an address")?,
        key: args
            .required("--key")?
            .parse()
            .context("--key is not a private key")?,
        book: args.required("--book")?.into(),
        listen: args.required("--listen")?,
    })
}

/// Logs of a served process to stderr, filtered by RUST_LOG (the
/// benchmarks set warn: a warning is worth seeing, per-request lines would
/// cost the measured CPU).
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
