//! Provider brokers on the local chain: the provider.toml that `dev`, the
//! benchmarks and the tests hand a broker (one writer, so the config format
//! lives in one place outside the provider), and a broker started in process
//! from it.

use crate::{DevnetError, Market};
use std::fmt::Write as _;
use tokio::net::TcpListener;
use zg_core::{Address, B256, ServiceKind};

/// One `[[services]]` entry.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub name: String,
    pub kind: ServiceKind,
    /// The model id the upstream serves.
    pub model: String,
    pub model_digest: B256,
    /// The upstream's OpenAI base URL (ending in `/v1`).
    pub upstream: String,
    /// Decimal 0G per token.
    pub input_price: String,
    pub output_price: String,
    /// Decimal 0G.
    pub credit_limit: String,
    pub max_output_tokens: u64,
    pub hardware: String,
    pub verifiability: String,
    /// What the service lists beyond plain chat (`zg_core::capability`);
    /// None: what its upstream says it has.
    pub capabilities: Option<Vec<String>>,
    /// Decimal 0G per prompt token served from the upstream's cache; None:
    /// the input price.
    pub cached_input_price: Option<String>,
    /// The body of its `[services.pricing]` table (TOML lines); None: the
    /// ceilings are charged as listed.
    pub pricing: Option<String>,
}

impl ServicePlan {
    /// A chat service at 1e-9 / 2e-9 0G per input / output token, 0.01 0G of
    /// credit and at most 64 output tokens.
    pub fn chat(name: &str, model: &str, model_digest: B256, upstream: &str) -> Self {
        Self {
            name: name.into(),
            kind: ServiceKind::Chat,
            model: model.into(),
            model_digest,
            upstream: upstream.into(),
            input_price: "0.000000001".into(),
            output_price: "0.000000002".into(),
            credit_limit: "0.01".into(),
            max_output_tokens: 64,
            hardware: "cpu".into(),
            verifiability: "none".into(),
            capabilities: None,
            cached_input_price: None,
            pricing: None,
        }
    }
}

/// The `[settlement]` section.
#[derive(Debug, Clone)]
pub struct SettlementPlan {
    pub enabled: bool,
    pub interval_secs: u64,
    /// Decimal 0G.
    pub threshold: String,
    pub refund_margin_secs: u64,
    pub batch_size: usize,
    /// Blocks on top of a settlement before it counts: 0 here, where anvil
    /// mines a block only when a transaction comes.
    pub confirmations: u64,
}

impl SettlementPlan {
    /// Never settles by itself within a test: settlement runs when the test
    /// (or an operator command) asks.
    pub fn on_demand() -> Self {
        Self {
            enabled: true,
            interval_secs: 100_000,
            threshold: "1000".into(),
            refund_margin_secs: 600,
            batch_size: 100,
            confirmations: 0,
        }
    }
}

/// A provider.toml for a broker on the local chain, its keys in plaintext
/// (`dev = true`: anvil's throwaway accounts).
#[derive(Debug, Clone)]
pub struct BrokerPlan {
    pub listen: String,
    /// What the registry lists; [`start_broker`] fills in the listener's address.
    pub public_url: Option<String>,
    pub replica: Option<String>,
    pub rpc_url: String,
    pub contract: Address,
    /// The provider's wallet key.
    pub provider: B256,
    /// A receipt signer apart from the wallet.
    pub signer: Option<B256>,
    /// `sqlite://PATH` or `postgres://...`.
    pub database: String,
    pub stake: String,
    pub settlement: SettlementPlan,
    pub services: Vec<ServicePlan>,
    /// Where the provider page listens (`[admin] listen`), if it has one;
    /// its token is made at start (`Running::admin_token`).
    pub admin: Option<String>,
    /// A fine-tuning service (`[fine_tuning]`).
    pub fine_tuning: Option<FineTuningPlan>,
}

/// The `[fine_tuning]` section of a plan.
#[derive(Debug, Clone)]
pub struct FineTuningPlan {
    pub name: String,
    pub model: String,
    pub base_model: std::path::PathBuf,
    /// Decimal 0G per trained token.
    pub price_per_token: String,
    pub work_dir: std::path::PathBuf,
    pub checkpoint_every: usize,
}

impl BrokerPlan {
    /// The provider.toml text.
    pub fn toml(&self) -> String {
        let mut text = format!("listen = \"{}\"\nstake = \"{}\"\n", self.listen, self.stake);
        if let Some(url) = &self.public_url {
            let _ = writeln!(text, "public_url = \"{url}\"");
        }
        if let Some(replica) = &self.replica {
            let _ = writeln!(text, "replica = \"{replica}\"");
        }
        let _ = write!(
            text,
            "\n[chain]\nrpc_url = \"{}\"\ncontract = \"{}\"\n\n[keys]\ndev = true\nprovider = \"{}\"\n",
            self.rpc_url, self.contract, self.provider
        );
        if let Some(signer) = &self.signer {
            let _ = writeln!(text, "signer = \"{signer}\"");
        }
        let s = &self.settlement;
        let _ = write!(
            text,
            "\n[database]\nurl = \"{}\"\n\n[settlement]\nenabled = {}\ninterval_secs = {}\n\
             threshold = \"{}\"\nrefund_margin_secs = {}\nbatch_size = {}\nconfirmations = {}\n",
            self.database,
            s.enabled,
            s.interval_secs,
            s.threshold,
            s.refund_margin_secs,
            s.batch_size,
            s.confirmations
        );
        if let Some(listen) = &self.admin {
            let _ = write!(text, "\n[admin]\nlisten = \"{listen}\"\n");
        }
        if let Some(ft) = &self.fine_tuning {
            let _ = write!(
                text,
                "\n[fine_tuning]\nname = \"{}\"\nmodel = \"{}\"\nbase_model = {:?}\nprice_per_token = \"{}\"\nwork_dir = {:?}\ncheckpoint_every = {}\n",
                ft.name,
                ft.model,
                ft.base_model.display().to_string(),
                ft.price_per_token,
                ft.work_dir.display().to_string(),
                ft.checkpoint_every,
            );
        }
        for service in &self.services {
            let _ = write!(
                text,
                "\n[[services]]\nname = \"{}\"\nkind = \"{}\"\nmodel = \"{}\"\nmodel_digest = \"{}\"\n\
                 hardware = \"{}\"\nverifiability = \"{}\"\nupstream = \"{}\"\ninput_price = \"{}\"\n\
                 output_price = \"{}\"\ncredit_limit = \"{}\"\nmax_output_tokens = {}\n",
                service.name,
                service.kind,
                service.model,
                service.model_digest,
                service.hardware,
                service.verifiability,
                service.upstream,
                service.input_price,
                service.output_price,
                service.credit_limit,
                service.max_output_tokens,
            );
            if let Some(capabilities) = &service.capabilities {
                let _ = writeln!(text, "capabilities = {capabilities:?}");
            }
            if let Some(price) = &service.cached_input_price {
                let _ = writeln!(text, "cached_input_price = \"{price}\"");
            }
            if let Some(pricing) = &service.pricing {
                let _ = writeln!(text, "[services.pricing]\n{pricing}");
            }
        }
        text
    }

    /// The parsed config, as `zg-serving provider serve` would read it.
    pub fn config(&self) -> Result<zg_provider::Config, DevnetError> {
        Ok(zg_provider::Config::parse(
            &self.toml(),
            "the devnet broker plan",
            std::iter::empty(),
        )?)
    }
}

impl Market {
    /// A plan for dev account `index` as a provider on this market: one
    /// `database`, no services yet, settlement on demand, listening on a free port.
    pub fn broker_plan(&self, index: usize, database: &str) -> Result<BrokerPlan, DevnetError> {
        let provider = *self
            .chain
            .keys()
            .get(index)
            .ok_or(DevnetError::NoAccount { index })?;
        Ok(BrokerPlan {
            listen: "127.0.0.1:0".into(),
            public_url: None,
            replica: None,
            rpc_url: self.chain.url().into(),
            contract: self.deployer.contract_address(),
            provider,
            signer: None,
            database: database.into(),
            stake: "0.1".into(),
            settlement: SettlementPlan::on_demand(),
            services: Vec::new(),
            admin: None,
            fine_tuning: None,
        })
    }
}

/// Starts `plan`'s broker in this process on its listen address; the
/// registry lists it at the address it got unless the plan names one.
pub async fn start_broker(plan: &BrokerPlan) -> Result<zg_provider::Running, DevnetError> {
    let mut config = plan.config()?;
    let listener = TcpListener::bind(&plan.listen)
        .await
        .map_err(|e| DevnetError::Bind {
            addr: plan.listen.clone(),
            reason: e.to_string(),
        })?;
    if config.public_url.is_none() {
        let addr = listener.local_addr().map_err(|e| DevnetError::Bind {
            addr: plan.listen.clone(),
            reason: e.to_string(),
        })?;
        config.public_url = Some(format!("http://{addr}"));
    }
    Ok(zg_provider::start(config, listener).await?)
}
