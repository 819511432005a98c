//! `zg-serving`: the one binary. Each subcommand lives in its own module.

use clap::Parser;

#[derive(Parser)]
#[command(name = "zg-serving", version, about = "Decentralized marketplace for AI services")]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
