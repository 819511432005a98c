//! `zg-serving`: the one binary. Each subcommand lives in its own module.

mod chain;
mod dev;
mod engine;
mod gateway;
mod keys;
mod network;
mod provider;
mod user;
mod verifier;
mod verify;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zg-serving",
    version,
    about = "Decentralized marketplace for AI services"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deploy the ZgServing contract to a network, show a deployment, change its owner settings.
    Chain(chain::ChainArgs),
    /// Run the built-in OpenAI-compatible inference server on a GGUF model.
    Engine(engine::EngineArgs),
    /// Run the provider broker: paid, metered, signed serving with settlement.
    Provider(provider::ProviderArgs),
    /// The user's side: keys, money on chain, services, paid chat, receipts.
    User(user::UserArgs),
    /// Local OpenAI-compatible server in front of the whole marketplace.
    Gateway(gateway::GatewayArgs),
    /// A whole local marketplace in one command: chain, engine, provider, funded user, gateway.
    Dev(dev::DevArgs),
    /// Encrypted JSON keystores: new, import, list, address.
    Keys(keys::KeysArgs),
    /// Check that the registered model computed an answer: a receipt of the book or an evidence file.
    Verify(verify::VerifyArgs),
    /// A verifier node: watch for disputes, re-run their proofs, sign and submit verdicts.
    Verifier(verifier::VerifierArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,llama-cpp-2=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Chain(args) => chain::run(args),
        Command::Engine(args) => engine::run(args),
        Command::Provider(args) => provider::run(args),
        Command::User(args) => user::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Verifier(args) => verifier::run(args),
    }
}
