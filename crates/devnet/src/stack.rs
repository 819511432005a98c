//! Starts the pieces of a local marketplace in one process, in the order
//! money needs them: chain and contract, engine, provider brokers (which
//! register on chain), a funded user, and the gateway in front of it all.
//! With `cheater`, one more provider registers the same model digest as the
//! honest ones but serves a cheaper requantized substitute, cheaper, so
//! routing tries it first and the gateway's audits catch it.

use crate::{
    BrokerPlan, DevChain, DevChainOptions, DevnetError, FineTuningPlan, ServicePlan,
    SettlementPlan,
    data_dir::{DataDir, Record},
    start_broker,
};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::net::TcpListener;
use zg_chain::{ChainClient, DeployParams};
use zg_client::{Accounts, AckPolicy, Book, Payer};
use zg_core::{Address, B256, ServiceKind, SigningKey, U256, format_amount, parse_amount};
use zg_engine::{EngineConfig, ServerHandle};
use zg_gateway::{AuditPolicy, Checker, Gateway, GatewayConfig, TopUpPolicy};

/// What `dev` is asked to run.
pub struct StackPlan {
    pub model: PathBuf,
    pub embedding_model: Option<PathBuf>,
    pub providers: usize,
    pub gateway_port: u16,
    /// Where the steps of starting are told (`zg-serving dev` prints them).
    pub progress: fn(&str),
    /// Add a provider that serves a substitute model under the honest digest.
    pub cheater: bool,
    /// Verifier keys to register with the contract (quorum: all of them).
    pub verifiers: usize,
    /// The gateway's audits of proof answers (None: no audits).
    pub audits: Option<(Arc<dyn Checker>, AuditPolicy)>,
}

/// Service names every dev provider lists; the gateway routes by the model they serve.
pub const CHAT_SERVICE: &str = "smollm2-135m-instruct";
pub const EMBEDDINGS_SERVICE: &str = "all-minilm-l6-v2";
/// The first dev provider's fine-tuning service of the chat model.
pub const FINE_TUNING_SERVICE: &str = "smollm2-135m-instruct-tune";

/// Prices of the first provider per token, in 0G; provider `i` charges `i + 1` times these.
const INPUT_PRICE: &str = "0.000000001";
const OUTPUT_PRICE: &str = "0.000000002";
/// A prompt token the engine's prompt cache served (a repeated chat prefix).
const CACHED_INPUT_PRICE: &str = "0.0000000002";
/// Price per trained token of the dev fine-tuning service.
const TRAINED_TOKEN_PRICE: &str = "0.000000001";
/// What the user deposits, and funds each provider's escrow with, on a fresh chain.
const USER_DEPOSIT: &str = "100";
const ESCROW_PER_PROVIDER: &str = "10";

pub struct Provider {
    pub address: Address,
    pub running: zg_provider::Running,
    pub config_path: PathBuf,
}

/// Everything running; [`Stack::shutdown`] stops it in order, anvil last so it saves its state.
pub struct Stack {
    pub gateway_url: String,
    /// The user's web page (the gateway's `/`); its token is the gateway's
    /// `admin_token()`.
    pub user_page_url: String,
    /// The chat model as the gateway lists it (what `model` names in a request).
    pub chat_model: String,
    pub api_key: String,
    pub user_key: B256,
    pub owner: ChainClient,
    pub user: Accounts,
    /// The user's voucher book and receipts, shared with the gateway.
    pub book: Book,
    pub providers: Vec<Provider>,
    /// The cheating provider and the engine serving its substitute model.
    pub cheater: Option<(Provider, ServerHandle)>,
    /// The registered verifiers' keys.
    pub verifier_keys: Vec<B256>,
    pub gateway: Arc<Gateway>,
    pub engine: ServerHandle,
    pub chain: DevChain,
}

impl Stack {
    /// Starts (or, with an earlier run's state in `dir`, restarts) the whole marketplace.
    pub async fn start(dir: &DataDir, plan: &StackPlan) -> Result<Self, DevnetError> {
        let record = dir.record()?;
        let keys_needed = plan.providers + 2 + usize::from(plan.cheater) + plan.verifiers;
        let chain = DevChain::start_with(DevChainOptions {
            accounts: keys_needed.max(10),
            state: Some(dir.chain_state()),
            ..DevChainOptions::default()
        })
        .await
        .map_err(DevnetError::step("starting the local chain (anvil)"))?;
        let keys = chain.keys().to_vec();
        if keys.len() < keys_needed {
            return Err(DevnetError::NoAccount {
                index: keys_needed - 1,
            });
        }
        let (owner_key, user_key) = (keys[0], keys[1]);
        let provider_keys = &keys[2..2 + plan.providers];
        let cheater_key = keys[2 + plan.providers];
        let verifier_keys = keys[keys_needed - plan.verifiers..keys_needed].to_vec();

        let owner = match &record {
            Some(r) => ChainClient::connect(chain.url(), r.contract, &owner_key).await?,
            None => {
                (plan.progress)("deploying the ZgServing contract ...");
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

        (plan.progress)("loading the models into the built-in engine ...");
        let mut engine_config = EngineConfig::new(&plan.model);
        if let Some(embedding) = &plan.embedding_model {
            engine_config = engine_config.with_embedding_model(embedding);
        }
        let engine = zg_engine::spawn(engine_config, bind("127.0.0.1:0").await?)
            .await
            .map_err(DevnetError::step("starting the built-in engine"))?;

        let mut providers = Vec::new();
        for (i, key) in provider_keys.iter().enumerate() {
            let prices = Pricing::times(i + 1);
            // The first provider also trains adapters of the chat model.
            let tuning = (i == 0).then_some(plan.model.as_path());
            providers.push(
                start_provider(
                    dir,
                    &owner,
                    &engine,
                    i,
                    key,
                    prices,
                    Role::Honest { tuning },
                )
                .await?,
            );
        }
        let cheater = match plan.cheater {
            true => Some(start_cheater(dir, plan, &owner, &engine, &cheater_key).await?),
            false => None,
        };
        register_verifiers(&owner, &verifier_keys).await?;

        let user = Accounts::new(owner.with_key(&user_key)?);
        let paid: Vec<&Provider> = providers
            .iter()
            .chain(cheater.as_ref().map(|(p, _)| p))
            .collect();
        fund_user(&user, &paid).await?;

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
                amount: amount("1")?,
                budget: amount("20")?,
            }),
            // Uploaded files, fine-tuning jobs and the adapters they deliver.
            data_dir: Some(dir.path("gateway")),
            // Fine-tuned models are answered with the chat model's GGUF.
            models_dir: plan.model.parent().map(Path::to_path_buf),
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(payer, user.chain().clone(), config).await?;
        if let Some((checker, policy)) = &plan.audits {
            gateway.start_audits(checker.clone(), policy.clone());
        }
        let api_key = match record.api_key.clone() {
            Some(key) => key,
            None => {
                let (_, secret) = gateway.keys().add("dev", None).await?;
                record.api_key = Some(secret.clone());
                dir.save_record(&record)?;
                secret
            }
        };
        let listener = bind(&format!("127.0.0.1:{}", plan.gateway_port))
            .await
            .map_err(DevnetError::step(format!(
                "port {} is taken: pick another with --port",
                plan.gateway_port
            )))?;
        let addr = gateway
            .clone()
            .spawn(listener)
            .await
            .map_err(DevnetError::step("starting the gateway"))?;

        let chat_model = engine
            .engine()
            .models()
            .iter()
            .find(|card| card.kind == "chat")
            .map(|card| card.id.clone())
            .unwrap_or_default();
        Ok(Self {
            gateway_url: format!("http://{addr}/v1"),
            user_page_url: format!("http://{addr}/"),
            chat_model,
            api_key,
            user_key,
            owner,
            user,
            book,
            providers,
            cheater,
            verifier_keys,
            gateway,
            engine,
            chain,
        })
    }

    /// Stops the brokers (finishing requests in flight), the engine, then anvil.
    pub async fn shutdown(self) {
        let (cheater, cheater_engine) = self.cheater.unzip();
        for provider in self.providers.into_iter().chain(cheater) {
            if let Err(e) = provider.running.shutdown().await {
                tracing::warn!("provider {} did not stop cleanly: {e}", provider.address);
            }
        }
        for engine in std::iter::once(self.engine).chain(cheater_engine) {
            if let Err(e) = engine.shutdown().await {
                tracing::warn!("engine did not stop cleanly: {e}");
            }
        }
        self.chain.stop().await;
    }
}

async fn bind(addr: &str) -> Result<TcpListener, DevnetError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| DevnetError::Bind {
            addr: addr.into(),
            reason: e.to_string(),
        })
}

fn amount(text: &str) -> Result<U256, DevnetError> {
    parse_amount(text).map_err(DevnetError::step(format!("reading the amount {text}")))
}

/// A provider's prices: the base prices times `num / den`.
#[derive(Clone, Copy)]
struct Pricing {
    num: usize,
    den: usize,
}

impl Pricing {
    fn times(n: usize) -> Self {
        Self { num: n, den: 1 }
    }

    fn price(self, base: &str) -> Result<String, DevnetError> {
        Ok(format_amount(
            amount(base)? * U256::from(self.num) / U256::from(self.den),
        ))
    }
}

/// The cheating provider: the honest model requantized to Q4_0 (made once
/// in the data directory, under the honest model's name, as a cheater would),
/// served by its own engine, listed at half the first provider's prices
/// with the honest model's digest.
async fn start_cheater(
    dir: &DataDir,
    plan: &StackPlan,
    owner: &ChainClient,
    honest: &ServerHandle,
    key: &B256,
) -> Result<(Provider, ServerHandle), DevnetError> {
    (plan.progress)(
        "making the cheater's substitute model (the same weights requantized to Q4_0) ...",
    );
    let made =
        zg_engine::substitute::make(&plan.model, dir.root(), zg_engine::substitute::Kind::Q4_0)
            .map_err(DevnetError::step("making the substitute model"))?;
    // Named as the honest file without its extension: the engine lists the
    // same model id, and does not hold it to the honest file's known sha256.
    let cheater_dir = dir.path("cheater");
    let disguised = cheater_dir.join(plan.model.file_stem().unwrap_or_default());
    if !disguised.exists() {
        let copy =
            std::fs::create_dir_all(&cheater_dir).and_then(|()| std::fs::copy(&made, &disguised));
        copy.map_err(DevnetError::step("copying the substitute model"))?;
    }
    let engine = zg_engine::spawn(EngineConfig::new(&disguised), bind("127.0.0.1:0").await?)
        .await
        .map_err(DevnetError::step("starting the cheater's engine"))?;
    let honest_digest = honest
        .engine()
        .models()
        .iter()
        .find(|card| card.kind == "chat")
        .map(|card| card.sha256.clone())
        .unwrap_or_default();
    let index = plan.providers;
    let provider = start_provider(
        dir,
        owner,
        &engine,
        index,
        key,
        Pricing { num: 1, den: 2 },
        Role::Cheater {
            claimed_digest: &honest_digest,
        },
    )
    .await?;
    Ok((provider, engine))
}

/// Registers `keys` as the contract's verifiers, all needed for a verdict.
async fn register_verifiers(owner: &ChainClient, keys: &[B256]) -> Result<(), DevnetError> {
    for key in keys {
        let address = SigningKey::from_bytes(key)?.address();
        if !owner.is_verifier(address).await? {
            owner.set_verifier(address, true).await?;
        }
    }
    let quorum = u32::try_from(keys.len()).unwrap_or(u32::MAX);
    if quorum > 0 && owner.verifier_set().await?.1 != quorum {
        owner.set_quorum(quorum).await?;
    }
    Ok(())
}

/// What a dev provider is beside its inference services.
enum Role<'a> {
    /// With `tuning` (the chat model's GGUF) it also lists a fine-tuning
    /// service of that model, working in the data directory.
    Honest { tuning: Option<&'a Path> },
    /// `claimed_digest` replaces the chat model's real sha256 in the
    /// registry (the cheater's lie).
    Cheater { claimed_digest: &'a str },
}

/// Provider `i`: its broker on `engine`'s models at `prices`, its config
/// written to the data directory (for `provider status`).
async fn start_provider(
    dir: &DataDir,
    owner: &ChainClient,
    engine: &ServerHandle,
    i: usize,
    key: &B256,
    prices: Pricing,
    role: Role<'_>,
) -> Result<Provider, DevnetError> {
    let (claimed_digest, tuning) = match role {
        Role::Honest { tuning } => (None, tuning),
        Role::Cheater { claimed_digest } => (Some(claimed_digest), None),
    };
    let price = |base: &str| prices.price(base);
    let chat_model = engine
        .engine()
        .models()
        .iter()
        .find(|card| card.kind == ServiceKind::Chat.as_str())
        .map(|card| card.id.clone());
    let fine_tuning = match (tuning, chat_model) {
        (Some(base_model), Some(model)) => Some(FineTuningPlan {
            name: FINE_TUNING_SERVICE.into(),
            model,
            base_model: base_model.to_path_buf(),
            price_per_token: price(TRAINED_TOKEN_PRICE)?,
            work_dir: dir.path(&format!("provider-{i}-fine-tuning")),
            checkpoint_every: 10,
        }),
        _ => None,
    };
    let mut services = Vec::new();
    for (kind, name) in [
        (ServiceKind::Chat, CHAT_SERVICE),
        (ServiceKind::Embeddings, EMBEDDINGS_SERVICE),
    ] {
        let Some(card) = engine
            .engine()
            .models()
            .iter()
            .find(|card| card.kind == kind.as_str())
        else {
            continue;
        };
        let sha256 = match (&kind, claimed_digest) {
            (ServiceKind::Chat, Some(claimed)) => claimed,
            _ => card.sha256.as_str(),
        };
        let digest = sha256.parse().map_err(DevnetError::step(format!(
            "reading the sha256 of {}",
            card.id
        )))?;
        services.push(ServicePlan {
            kind,
            // The built-in engine proves its chat answers: register the method
            // so that every client checks the proof of every answer.
            verifiability: card.proof_method.unwrap_or("none").into(),
            input_price: price(INPUT_PRICE)?,
            output_price: price(OUTPUT_PRICE)?,
            cached_input_price: Some(price(CACHED_INPUT_PRICE)?),
            max_output_tokens: 512,
            ..ServicePlan::chat(name, &card.id, digest, &engine.base_url())
        });
    }
    let mut plan = BrokerPlan {
        listen: "127.0.0.1:0".into(),
        public_url: None,
        replica: None,
        rpc_url: owner.rpc_url().into(),
        contract: owner.contract_address(),
        provider: *key,
        signer: None,
        database: format!(
            "sqlite://{}",
            dir.path(&format!("provider-{i}.sqlite")).display()
        ),
        stake: "0.1".into(),
        settlement: SettlementPlan {
            enabled: true,
            interval_secs: 60,
            threshold: "1".into(),
            refund_margin_secs: 30,
            batch_size: 100,
            confirmations: 0,
        },
        services,
        admin: Some("127.0.0.1:0".into()),
        fine_tuning,
    };
    let running = start_broker(&plan)
        .await
        .map_err(DevnetError::step(format!("starting provider {i}")))?;
    plan.listen = running.addr().to_string();
    plan.public_url = Some(running.url());
    plan.admin = running.admin_addr().map(|a| a.to_string());
    let config_path = dir.path(&format!("provider-{i}.toml"));
    dir.write(
        &config_path,
        &format!(
            "# Provider {i} of `zg-serving dev`, written on every start.\n{}",
            plan.toml()
        ),
    )?;
    Ok(Provider {
        address: SigningKey::from_bytes(key)?.address(),
        running,
        config_path,
    })
}

/// On a fresh chain: deposit, and fund every provider's escrow.
async fn fund_user(user: &Accounts, providers: &[&Provider]) -> Result<(), DevnetError> {
    let summary = user.summary().await?;
    let per_provider = amount(ESCROW_PER_PROVIDER)?;
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
        user.deposit(amount(USER_DEPOSIT)?.max(needed)).await?;
    }
    for provider in missing {
        user.fund(provider, per_provider).await?;
    }
    Ok(())
}
