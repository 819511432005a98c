//! Starts the pieces of a local marketplace in one process, in the order
//! money needs them: chain and contract, engine, provider brokers (which
//! register on chain), a funded user, and the gateway in front of it all.

use super::state::{DataDir, Record};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use tokio::net::TcpListener;
use zg_chain::{ChainClient, DeployParams};
use zg_client::{Accounts, AckPolicy, Book, Payer};
use zg_core::{Address, B256, SigningKey, U256, format_amount, parse_amount};
use zg_devnet::{DevChain, DevChainOptions};
use zg_engine::{EngineConfig, ServerHandle};
use zg_gateway::{Gateway, GatewayConfig, TopUpPolicy};

/// What `dev` is asked to run.
pub(super) struct Plan {
    pub model: PathBuf,
    pub embedding_model: Option<PathBuf>,
    pub providers: usize,
    pub gateway_port: u16,
}

/// Service names every dev provider lists; the gateway routes by the model they serve.
pub(super) const CHAT_SERVICE: &str = "smollm2-135m-instruct";
pub(super) const EMBEDDINGS_SERVICE: &str = "all-minilm-l6-v2";

/// Prices of the first provider per token, in 0G; provider `i` charges `i + 1` times these.
const INPUT_PRICE: &str = "0.000000001";
const OUTPUT_PRICE: &str = "0.000000002";
/// What the user deposits, and funds each provider's escrow with, on a fresh chain.
const USER_DEPOSIT: &str = "100";
const ESCROW_PER_PROVIDER: &str = "10";

pub(super) struct Provider {
    pub address: Address,
    pub running: zg_provider::Running,
    pub config_path: PathBuf,
}

/// Everything running; [`Stack::shutdown`] stops it in order, anvil last so it saves its state.
pub(super) struct Stack {
    pub gateway_url: String,
    /// The chat model as the gateway lists it (what `model` names in a request).
    pub chat_model: String,
    pub api_key: String,
    pub user_key: B256,
    pub owner: ChainClient,
    pub user: Accounts,
    /// The user's voucher book and receipts, shared with the gateway.
    pub book: Book,
    pub providers: Vec<Provider>,
    pub engine: ServerHandle,
    pub chain: DevChain,
}

impl Stack {
    pub(super) async fn start(dir: &DataDir, plan: &Plan) -> Result<Self> {
        let record = dir.record()?;
        let keys_needed = plan.providers + 2;
        let chain = DevChain::start_with(DevChainOptions {
            accounts: keys_needed.max(10),
            state: Some(dir.chain_state()),
            ..DevChainOptions::default()
        })
        .await
        .context("starting the local chain (anvil)")?;
        let keys = chain.keys().to_vec();
        if keys.len() < keys_needed {
            bail!(
                "anvil gave {} accounts, {keys_needed} are needed",
                keys.len()
            );
        }
        let (owner_key, user_key) = (keys[0], keys[1]);
        let provider_keys = &keys[2..2 + plan.providers];

        let owner = match &record {
            Some(r) => ChainClient::connect(chain.url(), r.contract, &owner_key).await?,
            None => {
                println!("deploying the ZgServing contract ...");
                ChainClient::deploy(chain.url(), &owner_key, DeployParams::default()).await?
            }
        };
        let mut record = record.unwrap_or(Record {
            contract: owner.contract_address(),
            api_key: None,
            rpc_url: None,
        });
        record.rpc_url = Some(chain.url().to_string());
        dir.save_record(&record)?;

        println!("loading the models into the built-in engine ...");
        let mut engine_config = EngineConfig::new(&plan.model);
        if let Some(embedding) = &plan.embedding_model {
            engine_config = engine_config.with_embedding_model(embedding);
        }
        let engine = zg_engine::spawn(engine_config, TcpListener::bind("127.0.0.1:0").await?)
            .await
            .context("starting the built-in engine")?;

        let mut providers = Vec::new();
        for (i, key) in provider_keys.iter().enumerate() {
            providers.push(start_provider(dir, &owner, &engine, i, key).await?);
        }

        let user = Accounts::new(owner.with_key(&user_key)?);
        fund_user(&user, &providers).await?;

        let signing_key = SigningKey::from_bytes(&user_key)?;
        let book = Book::open(&dir.path("user-book.sqlite"), signing_key.address()).await?;
        let payer = Payer::new(
            signing_key,
            owner.domain(),
            book.clone(),
            AckPolicy::WhenIdle(std::time::Duration::from_millis(500)),
        );
        let config = GatewayConfig {
            topup: Some(TopUpPolicy {
                amount: parse_amount("1")?,
                budget: parse_amount("20")?,
            }),
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(payer, user.chain().clone(), config).await?;
        let api_key = match record.api_key.clone() {
            Some(key) => key,
            None => {
                let (_, secret) = gateway.keys().add("dev", None).await?;
                record.api_key = Some(secret.clone());
                dir.save_record(&record)?;
                secret
            }
        };
        let listener = TcpListener::bind(("127.0.0.1", plan.gateway_port))
            .await
            .with_context(|| {
                format!(
                    "port {} is taken: pick another with --port",
                    plan.gateway_port
                )
            })?;
        let addr = gateway.clone().spawn(listener).await?;

        let chat_model = engine
            .engine()
            .models()
            .iter()
            .find(|card| card.kind == "chat")
            .map(|card| card.id.clone())
            .unwrap_or_default();
        Ok(Self {
            gateway_url: format!("http://{addr}/v1"),
            chat_model,
            api_key,
            user_key,
            owner,
            user,
            book,
            providers,
            engine,
            chain,
        })
    }

    /// Stops the brokers (finishing requests in flight), the engine, then anvil.
    pub(super) async fn shutdown(self) {
        for provider in self.providers {
            if let Err(e) = provider.running.shutdown().await {
                eprintln!("provider {} did not stop cleanly: {e}", provider.address);
            }
        }
        if let Err(e) = self.engine.shutdown().await {
            eprintln!("engine did not stop cleanly: {e}");
        }
        self.chain.stop().await;
    }
}

async fn start_provider(
    dir: &DataDir,
    owner: &ChainClient,
    engine: &ServerHandle,
    i: usize,
    key: &B256,
) -> Result<Provider> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let digest = |kind: &str| {
        engine
            .engine()
            .models()
            .iter()
            .find(|card| card.kind == kind)
            .map(|card| (card.id.clone(), card.sha256.clone()))
    };
    let price = |base: &str| -> Result<String> {
        Ok(format_amount(parse_amount(base)? * U256::from(i + 1)))
    };
    let mut services = String::new();
    for (kind, name) in [("chat", CHAT_SERVICE), ("embeddings", EMBEDDINGS_SERVICE)] {
        let Some((model, sha256)) = digest(kind) else {
            continue;
        };
        services.push_str(&format!(
            "\n[[services]]\nname = \"{name}\"\nkind = \"{kind}\"\nmodel = \"{model}\"\n\
             model_digest = \"0x{sha256}\"\nhardware = \"cpu\"\nverifiability = \"none\"\n\
             upstream = \"{upstream}\"\ninput_price = \"{input}\"\noutput_price = \"{output}\"\n\
             credit_limit = \"0.01\"\nmax_output_tokens = 512\n",
            upstream = engine.base_url(),
            input = price(INPUT_PRICE)?,
            output = price(OUTPUT_PRICE)?,
        ));
    }
    let db = dir.path(&format!("provider-{i}.sqlite"));
    let text = format!(
        "# Provider {i} of `zg-serving dev`, written on every start.\n\
         listen = \"{addr}\"\npublic_url = \"http://{addr}\"\nstake = \"0.1\"\n\n\
         [chain]\nrpc_url = \"{rpc}\"\ncontract = \"{contract}\"\n\n\
         [keys]\ndev = true\nprovider = \"{key}\"\n\n\
         [database]\nurl = \"sqlite://{db}\"\n\n\
         [settlement]\nenabled = true\ninterval_secs = 60\nthreshold = \"1\"\nrefund_margin_secs = 30\nbatch_size = 100\n{services}",
        rpc = owner.rpc_url(),
        contract = owner.contract_address(),
        db = db.display(),
    );
    let config_path = dir.path(&format!("provider-{i}.toml"));
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = zg_provider::Config::parse(
        &std::fs::read_to_string(&config_path)?,
        &config_path.display().to_string(),
        std::iter::empty(),
    )?;
    let address = config.keys.provider.address();
    let running = zg_provider::start(config, listener)
        .await
        .with_context(|| format!("starting provider {i} ({address})"))?;
    Ok(Provider {
        address,
        running,
        config_path,
    })
}

/// On a fresh chain: deposit, and fund every provider's escrow.
async fn fund_user(user: &Accounts, providers: &[Provider]) -> Result<()> {
    let summary = user.summary().await?;
    let per_provider = parse_amount(ESCROW_PER_PROVIDER)?;
    let mut missing = Vec::new();
    for provider in providers {
        if user.escrow(provider.address).await?.escrow.is_zero() {
            missing.push(provider.address);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let needed = per_provider * U256::from(missing.len());
    if summary.balance < needed {
        user.deposit(parse_amount(USER_DEPOSIT)?.max(needed))
            .await?;
    }
    for provider in missing {
        user.fund(provider, per_provider).await?;
    }
    Ok(())
}
