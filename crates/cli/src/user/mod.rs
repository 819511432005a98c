//! `zg-serving user`: the user's side of the marketplace from a terminal:
//! money on chain, discovery, chat with a paid and checked answer, the
//! receipts kept as evidence, and book recovery. Output for people by
//! default, `--json` for scripts; amounts in decimal 0G.

mod chat;
mod market;
mod money;
pub(crate) mod wallet;

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use zg_chain::ChainClient;
use zg_client::{AckPolicy, Book, Payer};
use zg_core::{Address, SigningKey, U256, parse_amount};

/// Where the chain and the local book are, shared by `user` and `gateway`.
#[derive(Args, Clone, Debug)]
pub(crate) struct ChainArgs {
    #[command(flatten)]
    pub network: crate::network::NetworkArgs,
    /// JSON-RPC URL of the chain (instead of the network's) [default: http://127.0.0.1:8545].
    #[arg(long, visible_alias = "rpc", env = "ZG_RPC_URL", global = true)]
    pub rpc_url: Option<String>,
    /// Address of the ZgServing contract (instead of the network's).
    #[arg(long, env = "ZG_CONTRACT", global = true)]
    pub contract: Option<Address>,
    /// The local voucher book and receipts (SQLite).
    #[arg(long, env = "ZG_BOOK", global = true)]
    pub book: Option<PathBuf>,
    #[command(flatten)]
    pub key: wallet::KeyArgs,
}

#[derive(Args)]
pub(crate) struct UserArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Make a new key in an encrypted JSON keystore (password from --password-env or a prompt).
    NewKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// Move tokens from the wallet into the ledger.
    Deposit {
        #[arg(long)]
        amount: String,
    },
    /// Move free ledger balance back to the wallet.
    Withdraw {
        #[arg(long)]
        amount: String,
    },
    /// Move ledger balance into escrow for a provider.
    Fund {
        #[arg(long)]
        provider: Address,
        #[arg(long)]
        amount: String,
    },
    /// Ask for escrow back from a provider (claimable after the lock period).
    Refund {
        #[arg(long)]
        provider: Address,
        #[arg(long)]
        amount: String,
    },
    /// Claim an unlocked refund back into the ledger.
    Claim {
        #[arg(long)]
        provider: Address,
    },
    /// Let another key sign vouchers for this user (e.g. a gateway's hot key).
    SetSigner {
        #[arg(long)]
        signer: Address,
    },
    /// Wallet, ledger balance, escrows and what the book says is owed.
    Ledger,
    /// Services in the registry, cheapest first.
    Services(market::ServicesArgs),
    /// One prompt, or an interactive chat when none is given; streams the answer.
    Chat(chat::ChatArgs),
    /// Receipts in the local book, newest first, with their audits.
    Receipts(market::ReceiptsArgs),
    /// Check a receipt's answer against the registered weights now, and keep the verdict.
    Verify(crate::verify::UserVerifyArgs),
    /// Rebuild the local book from the providers' signed statements and the chain.
    Recover,
}

pub(crate) fn run(args: UserArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("could not start the async runtime")?;
    runtime.block_on(async move {
        let out = Out { json: args.json };
        let c = &args.chain;
        match args.command {
            UserCommand::NewKey { out: path } => money::new_key(&c.key, &path, out),
            UserCommand::Deposit { amount } => money::deposit(c, amount_arg(&amount)?, out).await,
            UserCommand::Withdraw { amount } => money::withdraw(c, amount_arg(&amount)?, out).await,
            UserCommand::Fund { provider, amount } => {
                money::fund(c, provider, amount_arg(&amount)?, out).await
            }
            UserCommand::Refund { provider, amount } => {
                money::refund(c, provider, amount_arg(&amount)?, out).await
            }
            UserCommand::Claim { provider } => money::claim(c, provider, out).await,
            UserCommand::SetSigner { signer } => money::set_signer(c, signer, out).await,
            UserCommand::Ledger => money::ledger(c, out).await,
            UserCommand::Services(a) => market::services(c, a, out).await,
            UserCommand::Chat(a) => chat::chat(c, a, out).await,
            UserCommand::Receipts(a) => market::receipts(c, a, out).await,
            UserCommand::Verify(a) => crate::verify::user_verify(c, a, out).await,
            UserCommand::Recover => market::recover(c, out).await,
        }
    })
}

/// Text or JSON output.
#[derive(Clone, Copy)]
pub(crate) struct Out {
    pub json: bool,
}

impl Out {
    pub(crate) fn print(&self, value: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        } else {
            println!("{}", text());
        }
    }
}

pub(crate) fn amount_arg(text: &str) -> anyhow::Result<U256> {
    parse_amount(text).with_context(|| format!("--amount {text:?}"))
}

/// The book `--book` names, else `~/.zg-serving/book.sqlite`.
pub(crate) fn book_path(given: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let home = std::env::var_os("HOME").context("no HOME: pass --book FILE or set ZG_BOOK")?;
    Ok(PathBuf::from(home).join(".zg-serving").join("book.sqlite"))
}

/// A connected user: key, chain client on the user's wallet, book.
pub(crate) struct Session {
    pub key: SigningKey,
    pub chain: ChainClient,
}

impl ChainArgs {
    pub(crate) async fn session(&self) -> anyhow::Result<Session> {
        let key = self.key.load()?;
        let chain = self
            .network
            .connect(self.rpc_url.as_deref(), self.contract, &key.to_bytes())
            .await?;
        Ok(Session { key, chain })
    }

    pub(crate) fn book_path(&self) -> anyhow::Result<PathBuf> {
        book_path(self.book.as_deref())
    }

    pub(crate) async fn payer(&self, session: &Session, ack: AckPolicy) -> anyhow::Result<Payer> {
        let book = Book::open(&self.book_path()?, session.key.address()).await?;
        Ok(Payer::new(
            session.key.clone(),
            session.chain.domain(),
            book,
            ack,
        ))
    }
}
