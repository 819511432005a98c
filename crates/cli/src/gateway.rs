//! `zg-serving gateway`: the local OpenAI-compatible server (zg-gateway)
//! on a port, with its limits from flags or a TOML file, audits of proof
//! services' answers when given a models folder, and
//! `gateway keys add|list|revoke` for local API keys with spend limits.

use crate::user::{ChainArgs, Out, amount_arg};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::json;
use std::{path::PathBuf, time::Duration};
use zg_client::{AckPolicy, Book, ServiceFilter};
use zg_core::{Address, format_amount};
use zg_gateway::{AuditPolicy, Gateway, GatewayConfig, Keys, RankingPolicy, TopUpPolicy};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct GatewayArgs {
    #[command(flatten)]
    chain: ChainArgs,
    #[arg(long, default_value_t = 8000, env = "ZG_GATEWAY_PORT")]
    port: u16,
    #[arg(long, default_value = "127.0.0.1", env = "ZG_GATEWAY_HOST")]
    host: String,
    /// TOML file with the settings below (flags win).
    #[arg(long, env = "ZG_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Boxed: the settings are most of the command line's size.
    #[command(flatten)]
    settings: Box<Settings>,
    /// Print JSON (keys subcommands).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<GatewayCommand>,
}

/// The gateway's limits and policies; each also a key of the TOML file.
#[derive(Args, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    /// Highest input price accepted, 0G per token.
    #[arg(long)]
    max_input_price: Option<String>,
    /// Highest output price accepted, 0G per token.
    #[arg(long)]
    max_output_price: Option<String>,
    /// Only these providers (comma-separated).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    only_providers: Vec<Address>,
    /// Never these providers (comma-separated).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    ignore_providers: Vec<Address>,
    /// Required verifiability ("tee", ...).
    #[arg(long)]
    verifiability: Option<String>,
    /// Escrow moved to a provider that answers insufficient_escrow, in 0G.
    #[arg(long)]
    topup_amount: Option<String>,
    /// Most escrow the gateway may move in one run, in 0G.
    #[arg(long)]
    topup_budget: Option<String>,
    /// A provider this many ms slower counts as twice as expensive.
    #[arg(long)]
    latency_scale_ms: Option<f64>,
    /// Seconds a failed provider waits at the back of the queue (doubles per failure).
    #[arg(long)]
    failure_cooldown_s: Option<u64>,
    /// Providers tried per request.
    #[arg(long)]
    max_attempts: Option<usize>,
    /// Seconds of quiet before an acknowledgement voucher is sent.
    #[arg(long)]
    ack_after_s: Option<u64>,
    /// Audit answers of proof services with the GGUF files in DIR (those
    /// whose sha256 is a service's modelDigest); no audits without it.
    #[arg(long, value_name = "DIR")]
    audit_models_dir: Option<PathBuf>,
    /// Audit every answer of a provider's service for its first N answers (default 10).
    #[arg(long, value_name = "N")]
    audit_first: Option<u32>,
    /// Then this fraction of its answers, at random (default 0.05).
    #[arg(long, value_name = "F")]
    audit_fraction: Option<f64>,
    /// Open a dispute on chain when an audit fails (default true).
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    audit_dispute: Option<bool>,
    /// Highest dispute bond to post, in 0G (default 0.1); above it: no dispute.
    #[arg(long, value_name = "0G")]
    audit_max_bond: Option<String>,
    /// CPU threads of one audit check (default: half the cores, at most 4).
    #[arg(long, value_name = "N")]
    audit_threads: Option<u32>,
    /// The token that opens the web page at `/` (default: a random one,
    /// printed at start).
    #[arg(long, env = "ZG_GATEWAY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Block explorer for the page's transaction links (default: the network's).
    #[arg(long)]
    explorer_url: Option<String>,
    /// Where the files and fine-tuning APIs keep uploads, job records and
    /// adapters (default: the folder of the book).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// GGUF base models (found by sha256): the user's `ft:` models are
    /// answered on this machine with their adapters (default: the audit
    /// models folder, if any).
    #[arg(long, value_name = "DIR")]
    models_dir: Option<PathBuf>,
}

impl Settings {
    fn or(self, file: Settings) -> Settings {
        let pick = |a: Vec<Address>, b: Vec<Address>| if a.is_empty() { b } else { a };
        Settings {
            max_input_price: self.max_input_price.or(file.max_input_price),
            max_output_price: self.max_output_price.or(file.max_output_price),
            only_providers: pick(self.only_providers, file.only_providers),
            ignore_providers: pick(self.ignore_providers, file.ignore_providers),
            verifiability: self.verifiability.or(file.verifiability),
            topup_amount: self.topup_amount.or(file.topup_amount),
            topup_budget: self.topup_budget.or(file.topup_budget),
            latency_scale_ms: self.latency_scale_ms.or(file.latency_scale_ms),
            failure_cooldown_s: self.failure_cooldown_s.or(file.failure_cooldown_s),
            max_attempts: self.max_attempts.or(file.max_attempts),
            ack_after_s: self.ack_after_s.or(file.ack_after_s),
            audit_models_dir: self.audit_models_dir.or(file.audit_models_dir),
            audit_first: self.audit_first.or(file.audit_first),
            audit_fraction: self.audit_fraction.or(file.audit_fraction),
            audit_dispute: self.audit_dispute.or(file.audit_dispute),
            audit_max_bond: self.audit_max_bond.or(file.audit_max_bond),
            audit_threads: self.audit_threads.or(file.audit_threads),
            admin_token: self.admin_token.or(file.admin_token),
            explorer_url: self.explorer_url.or(file.explorer_url),
            data_dir: self.data_dir.or(file.data_dir),
            models_dir: self.models_dir.or(file.models_dir),
        }
    }

    /// The audit policy, when a models folder turns audits on.
    fn audits(&self) -> anyhow::Result<Option<(PathBuf, u32, AuditPolicy)>> {
        let Some(dir) = &self.audit_models_dir else {
            return Ok(None);
        };
        anyhow::ensure!(
            dir.is_dir(),
            "--audit-models-dir {} is not a folder: give the folder that holds the GGUF files of the models to audit",
            dir.display()
        );
        let defaults = AuditPolicy::default();
        let fraction = self.audit_fraction.unwrap_or(defaults.fraction);
        anyhow::ensure!(
            (0.0..=1.0).contains(&fraction),
            "--audit-fraction {fraction} is not a fraction: give 0 to 1 (0.05 audits one answer in twenty)"
        );
        let threads = match self.audit_threads {
            Some(0) => anyhow::bail!("--audit-threads must be at least 1"),
            Some(n) => n,
            None => {
                std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4) as u32)
            }
        };
        let policy = AuditPolicy {
            first: self.audit_first.unwrap_or(defaults.first),
            fraction,
            dispute: self.audit_dispute.unwrap_or(defaults.dispute),
            max_bond: match &self.audit_max_bond {
                Some(bond) => amount_arg(bond).context("--audit-max-bond (0G)")?,
                None => defaults.max_bond,
            },
            ..defaults
        };
        Ok(Some((dir.clone(), threads, policy)))
    }

    fn config(&self) -> anyhow::Result<GatewayConfig> {
        let price = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|t| amount_arg(t).with_context(|| format!("{flag} (0G per token)")))
                .transpose()
        };
        let topup = match (&self.topup_amount, &self.topup_budget) {
            (Some(a), Some(b)) => Some(TopUpPolicy {
                amount: amount_arg(a).context("--topup-amount")?,
                budget: amount_arg(b).context("--topup-budget")?,
            }),
            (None, None) => None,
            _ => {
                anyhow::bail!("--topup-amount and --topup-budget go together: give both or neither")
            }
        };
        let defaults = GatewayConfig::default();
        Ok(GatewayConfig {
            limits: ServiceFilter {
                max_input_price: price("--max-input-price", &self.max_input_price)?,
                max_output_price: price("--max-output-price", &self.max_output_price)?,
                verifiability: self.verifiability.clone(),
                only: self.only_providers.clone(),
                ignore: self.ignore_providers.clone(),
                ..Default::default()
            },
            ranking: RankingPolicy {
                latency_scale_ms: self
                    .latency_scale_ms
                    .unwrap_or(defaults.ranking.latency_scale_ms),
                failure_cooldown: self
                    .failure_cooldown_s
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.ranking.failure_cooldown),
            },
            topup,
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            admin_token: self.admin_token.clone(),
            explorer_url: self.explorer_url.clone(),
            ..defaults
        })
    }
}

#[derive(Subcommand)]
enum GatewayCommand {
    /// Local API keys, each with its own spend limit.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key (shown once).
    Add {
        name: String,
        /// Most this key may spend, in 0G; no limit when absent.
        #[arg(long)]
        limit: Option<String>,
    },
    List,
    /// Revoke by id or name.
    Revoke {
        key: String,
    },
}

pub(crate) fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let runtime = zg_gateway::runtime().context("could not start the async runtime")?;
    runtime.block_on(async move {
        let out = Out { json: args.json };
        match args.command {
            Some(GatewayCommand::Keys(cmd)) => keys(&args.chain, cmd, out).await,
            None => serve(args).await,
        }
    })
}

async fn serve(args: GatewayArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a gateway config", path.display()))?
        }
        None => Settings::default(),
    };
    let settings = (*args.settings).clone().or(file);
    let mut config = settings.config()?;
    if config.explorer_url.is_none() {
        config.explorer_url = args.chain.network.load()?.and_then(|n| n.explorer_url);
    }
    // Uploads and adapters live next to the book unless told otherwise.
    config.data_dir = match settings.data_dir.clone() {
        Some(dir) => Some(dir),
        None => args
            .chain
            .book_path()?
            .parent()
            .map(std::path::Path::to_path_buf),
    };
    config.models_dir = settings
        .models_dir
        .clone()
        .or_else(|| settings.audit_models_dir.clone());
    let audits = settings.audits()?;
    let session = args.chain.session().await?;
    let ack = AckPolicy::WhenIdle(Duration::from_secs(settings.ack_after_s.unwrap_or(2)));
    let payer = args.chain.payer(&session, ack).await?;
    let gateway = Gateway::new(payer, session.chain.clone(), config).await?;
    if let Some((dir, threads, policy)) = audits {
        // The model-backed checker lives with the verifier node (crates/cli/src/verifier).
        let checker = crate::verifier::audit_checker(&dir, threads)?;
        tracing::info!(models = %dir.display(), first = policy.first, fraction = policy.fraction,
                       dispute = policy.dispute, "auditing answers of proof services");
        gateway.start_audits(checker, policy);
    }
    let addr = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| {
            format!("could not listen on {addr}: is the port taken? pick another with --port")
        })?;
    let models = gateway.services(false).await?.len();
    tracing::info!(%addr, user = %session.key.address(), services = models, "gateway ready");
    eprintln!(
        "gateway for {} at http://{addr}/v1 ({models} services listed); point any OpenAI SDK's base_url there",
        session.key.address()
    );
    match settings.admin_token {
        Some(_) => eprintln!("user page at http://{addr}/ (log in with the admin token you set)"),
        None => eprintln!(
            "user page at http://{addr}/ (admin token {}; set --admin-token or ZG_GATEWAY_ADMIN_TOKEN to keep one)",
            gateway.admin_token()
        ),
    }
    gateway.serve(listener).await.context("the gateway stopped")
}

async fn keys(chain: &ChainArgs, cmd: KeysCommand, out: Out) -> anyhow::Result<()> {
    let user = chain.key.load()?.address();
    let keys = Keys::open(Book::open(&chain.book_path()?, user).await?).await?;
    match cmd {
        KeysCommand::Add { name, limit } => {
            let limit = limit.as_deref().map(amount_arg).transpose()?;
            let (info, secret) = keys.add(&name, limit).await?;
            out.print(json!({ "id": info.id, "name": info.name, "key": secret,
                              "limit": limit.map(format_amount) }), || {
                format!(
                    "key {} ({name}, limit {}): {secret}\nshown once; use it as the OpenAI api_key",
                    info.id,
                    limit.map(|l| format!("{} 0G", format_amount(l))).unwrap_or("none".into())
                )
            });
        }
        KeysCommand::List => {
            let list = keys.list().await?;
            let rows: Vec<_> = list
                .iter()
                .map(|k| {
                    json!({ "id": k.id, "name": k.name, "limit": k.spend_limit.map(format_amount),
                                 "spent": format_amount(k.spent), "revoked": k.revoked })
                })
                .collect();
            out.print(json!(rows), || {
                if list.is_empty() {
                    return "no keys: the gateway is open to anyone on its address".into();
                }
                list.iter()
                    .map(|k| {
                        format!(
                            "{} {:<16} spent {} 0G of {}{}",
                            k.id,
                            k.name,
                            format_amount(k.spent),
                            k.spend_limit
                                .map(|l| format!("{} 0G", format_amount(l)))
                                .unwrap_or("no limit".into()),
                            if k.revoked { " (revoked)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        KeysCommand::Revoke { key } => {
            if !keys.revoke(&key).await? {
                anyhow::bail!("no key {key:?}: see `zg-serving gateway keys list`");
            }
            out.print(json!({ "revoked": key }), || format!("revoked {key}"));
        }
    }
    Ok(())
}
