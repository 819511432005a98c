//! The broker's configuration: one TOML file, overridable key by key from the
//! environment (`ZG_PROVIDER__SECTION__KEY=value`), checked up front so that
//! every error names the key, what was expected and what came.

use serde::{Deserialize, Deserializer};
use std::{collections::BTreeMap, net::SocketAddr, path::Path};
use zg_core::{
    Address, B256, ServiceKind, SigningKey, U256, Verifiability, capability, parse_amount,
};

/// Prefix of the environment overrides; `__` separates nested keys.
pub(crate) const ENV_PREFIX: &str = "ZG_PROVIDER__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}; create one with `zg-serving provider init --config {path}`"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("environment override {var}: {message}")]
    Env { var: String, message: String },
}

fn key_err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the broker listens on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The URL users reach this broker at, as registered on chain.
    #[serde(default)]
    pub public_url: Option<String>,
    /// This broker's name among replicas sharing one database; on start it
    /// releases what its own earlier run left admitted.
    #[serde(default = "default_replica")]
    pub replica: String,
    pub chain: ChainConfig,
    pub keys: crate::keys::KeysConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub settlement: SettlementConfig,
    /// Total stake to hold in the registry (decimal 0G); topped up on start.
    #[serde(default, deserialize_with = "amount")]
    pub stake: U256,
    /// Inference services (none is fine when `[fine_tuning]` is there).
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
    /// HTTPS served, and extra CA roots for https upstreams.
    #[serde(default)]
    pub tls: crate::tls::TlsConfig,
    /// The provider page on its own address (absent: no page).
    #[serde(default)]
    pub admin: Option<AdminConfig>,
    /// A fine-tuning service (absent: none).
    #[serde(default)]
    pub fine_tuning: Option<FineTuningConfig>,
}

/// `[fine_tuning]`: LoRA training of a base model, one job at a time,
/// priced per trained token (the training file's tokens times the epochs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FineTuningConfig {
    /// The registry name of the service.
    pub name: String,
    /// The base model's name, as users ask for it.
    pub model: String,
    /// The base model's GGUF; its sha256 is the digest orders name.
    pub base_model: std::path::PathBuf,
    /// Price per trained token, decimal 0G (the on-chain ceiling).
    #[serde(deserialize_with = "amount")]
    pub price_per_token: U256,
    /// Largest training file accepted, in bytes.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    #[serde(default = "default_max_epochs")]
    pub max_epochs: u32,
    /// Jobs, checkpoints and sealed adapters live here.
    pub work_dir: std::path::PathBuf,
    /// Training steps between checkpoints (a restart resumes from the last).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    #[serde(default = "default_hardware")]
    pub hardware: String,
}

/// `[admin]`: the provider's web page, served apart from the paid routes.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where the page listens (keep it private: loopback, a VPN); port 0
    /// takes a free one.
    pub listen: SocketAddr,
    /// The environment variable that holds the page's token; absent, the
    /// broker makes a random token at start and logs it.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A block explorer's base URL, for transaction links (`BASE/tx/HASH`).
    #[serde(default)]
    pub explorer: Option<String>,
    /// The token `token_env` held when the config was read.
    #[serde(skip)]
    pub(crate) token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token_env", &self.token_env)
            .field("explorer", &self.explorer)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AdminConfig {
    /// The page's token: `token_env`'s value, else (none named) a random
    /// one, and whether it was made here; an empty or missing variable
    /// that the config names is an error, not a silent random token.
    pub(crate) fn token(&self) -> Result<(String, bool), String> {
        match (&self.token_env, &self.token) {
            (None, _) => Ok((zg_web::random_token(), true)),
            (Some(_), Some(token)) => Ok((token.clone(), false)),
            (Some(var), None) => Err(format!(
                "admin.token_env names the environment variable {var}, which is unset or empty: set it to the provider page's token (or leave token_env out for a random token logged at start)"
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    pub rpc_url: String,
    #[serde(deserialize_with = "address")]
    pub contract: Address,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    #[serde(default = "default_db")]
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: default_db() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Settle at least this often while anything is unsettled.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Settle as soon as this much (decimal 0G) is unsettled.
    #[serde(default = "default_threshold", deserialize_with = "amount")]
    pub threshold: U256,
    /// Seconds before a refund unlocks by which the last settlement must land.
    #[serde(default = "default_margin")]
    pub refund_margin_secs: u64,
    /// Vouchers per settle transaction.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Blocks mined on top of a settlement's block before it counts as done
    /// (its vouchers leave the unsettled set); 0 takes it as done once mined.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// Most a settlement pays per gas (`max_fee_gwei`, decimal gwei), in wei:
    /// above it the broker waits for cheaper blocks.
    #[serde(
        rename = "max_fee_gwei",
        default = "default_max_fee",
        deserialize_with = "gwei"
    )]
    pub max_fee: u128,
    /// A settlement not mined this long is sent again with higher fees
    /// (same nonce, so only one of them can land).
    #[serde(default = "default_resubmit")]
    pub resubmit_secs: u64,
    /// Each chain call of the settlement gives up after this long.
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_secs: u64,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: default_interval(),
            threshold: default_threshold(),
            refund_margin_secs: default_margin(),
            batch_size: default_batch(),
            confirmations: default_confirmations(),
            max_fee: default_max_fee(),
            resubmit_secs: default_resubmit(),
            rpc_timeout_secs: default_rpc_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The registry name; requests choose it with their `model` field.
    pub name: String,
    /// `chat` or `embeddings`.
    pub kind: ServiceKind,
    /// The model id the upstream serves (sent upstream as `model`).
    pub model: String,
    #[serde(deserialize_with = "digest")]
    pub model_digest: B256,
    #[serde(default = "default_hardware")]
    pub hardware: String,
    #[serde(default = "default_verifiability")]
    pub verifiability: String,
    /// Base URL of the OpenAI-compatible upstream, e.g. `http://127.0.0.1:8081/v1`.
    pub upstream: String,
    /// Extra headers sent upstream (e.g. `Authorization = "Bearer ..."`).
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, String>,
    /// Price per input token, decimal 0G.
    #[serde(deserialize_with = "amount")]
    pub input_price: U256,
    /// Price per output token, decimal 0G.
    #[serde(deserialize_with = "amount")]
    pub output_price: U256,
    /// Price per prompt token the upstream served from its prompt cache
    /// (`usage.prompt_tokens_details.cached_tokens`), decimal 0G, at most
    /// `input_price`. Absent: such tokens cost `input_price`.
    #[serde(default, deserialize_with = "some_amount")]
    pub cached_input_price: Option<U256>,
    /// How prices move under the three ceilings above (absent: they are
    /// charged as listed).
    #[serde(default)]
    pub pricing: crate::pricing::PricingConfig,
    /// Most a user may owe beyond their newest voucher, decimal 0G.
    #[serde(deserialize_with = "amount")]
    pub credit_limit: U256,
    /// Cap on output tokens per request (and the worst case when a request sets none).
    #[serde(default = "default_max_output")]
    pub max_output_tokens: u64,
    /// Most choices (`n`) one request may ask for: each may run to
    /// `max_output_tokens`, and admission reserves them all.
    #[serde(default = "default_max_choices")]
    pub max_choices: u64,
    /// What the service can do beyond a plain chat answer, as
    /// `zg_core::capability` names. Absent: what the upstream's model card
    /// lists (the built-in engine lists its own), else none.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
}

impl ServiceConfig {
    /// The on-chain ceilings per token: input, output and cached input.
    pub fn ceilings(&self) -> zg_core::Prices {
        zg_core::Prices::new(self.input_price, self.output_price)
            .with_cached(self.cached_input_price.unwrap_or(self.input_price))
    }

    /// The registered verifiability as a method this build knows, or why not.
    pub fn verifiability(&self) -> Result<Verifiability, String> {
        let method = Verifiability::parse(&self.verifiability)
            .map_err(|e| format!("service {:?}: {e}", self.name))?;
        if method.proof_method().is_some() && self.kind != ServiceKind::Chat {
            return Err(format!(
                "service {:?}: verifiability {method} proves chat answers, and this is a {} service: register \"none\"",
                self.name, self.kind
            ));
        }
        Ok(method)
    }

    /// The capabilities the config declares (`None` when it lists none),
    /// each one `zg_core::capability` knows, or why not.
    pub(crate) fn declared_capabilities(&self) -> Result<Option<Vec<&'static str>>, String> {
        let Some(names) = &self.capabilities else {
            return Ok(None);
        };
        if self.kind != ServiceKind::Chat && !names.is_empty() {
            return Err(format!(
                "service {:?}: capabilities describe chat services, and this is a {} service: leave the list out",
                self.name, self.kind
            ));
        }
        let mut known = Vec::with_capacity(names.len());
        for name in names {
            let capability = capability::known(name).ok_or_else(|| {
                format!(
                    "unknown capability {name:?}: expected some of {:?}",
                    capability::ALL
                )
            })?;
            if !known.contains(&capability) {
                known.push(capability);
            }
        }
        Ok(Some(known))
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_replica() -> String {
    "main".into()
}
fn default_db() -> String {
    "sqlite://provider.db".into()
}
fn yes() -> bool {
    true
}
fn default_interval() -> u64 {
    3600
}
fn default_threshold() -> U256 {
    U256::from(10u64).pow(U256::from(17u64))
}
fn default_margin() -> u64 {
    600
}
fn default_confirmations() -> u64 {
    2
}
/// 100 gwei, in wei.
fn default_max_fee() -> u128 {
    100 * GWEI
}
fn default_resubmit() -> u64 {
    60
}
fn default_rpc_timeout() -> u64 {
    10
}
fn default_batch() -> usize {
    100
}
fn default_hardware() -> String {
    "cpu".into()
}
fn default_verifiability() -> String {
    zg_core::verifiability::NONE.into()
}
fn default_max_file_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_max_epochs() -> u32 {
    10
}
fn default_checkpoint_every() -> usize {
    10
}
fn default_max_output() -> u64 {
    2048
}
fn default_max_choices() -> u64 {
    8
}

fn amount<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
    let text = String::deserialize(d)?;
    parse_amount(&text).map_err(serde::de::Error::custom)
}

fn some_amount<'de, D: Deserializer<'de>>(d: D) -> Result<Option<U256>, D::Error> {
    amount(d).map(Some)
}

const GWEI: u128 = 1_000_000_000;

/// Decimal gwei ("100", "1.5"; a TOML integer too) into wei, exactly.
fn gwei<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Gwei {
        Whole(u64),
        Text(String),
    }
    let text = match Gwei::deserialize(d)? {
        Gwei::Whole(n) => n.to_string(),
        Gwei::Text(t) => t,
    };
    let err = || {
        serde::de::Error::custom(format!(
            "expected gwei as a decimal number with at most 9 decimal places, such as \"100\" or \"0.5\", got {text:?}"
        ))
    };
    // parse_amount scales by 10^18; gwei to wei is 10^9.
    let scaled = parse_amount(&text).map_err(|_| err())?;
    let (wei, rest) = scaled.div_rem(U256::from(GWEI));
    if !rest.is_zero() {
        return Err(err());
    }
    u128::try_from(wei).map_err(|_| err())
}

fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected a 0x-prefixed 20-byte hex address, got {text:?}"
        ))
    })
}

fn digest<'de, D: Deserializer<'de>>(d: D) -> Result<B256, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected 32 bytes as 64 hex digits (the sha256 of the weights), got {text:?}"
        ))
    })
}

impl Config {
    /// Reads `path` and applies the `ZG_PROVIDER__*` environment overrides;
    /// keystore paths are relative to the file's folder, and plaintext keys
    /// are refused.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let config = Self::parse_in(&text, &shown, base, std::env::vars())?;
        if config.keys.plaintext {
            return Err(key_err("keys", crate::keys::plaintext_refused()));
        }
        Ok(config)
    }

    /// Parses `text` (named `origin` in errors) with the given overrides;
    /// plaintext keys are allowed (for `zg-serving dev` and tests).
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::parse_in(text, origin, Path::new(""), env)
    }

    /// [`Config::parse`] with keystore paths relative to `base`.
    pub fn parse_in(
        text: &str,
        origin: &str,
        base: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: origin.to_string(),
                    message: e.to_string(),
                })?;
        let env: Vec<(String, String)> = env.into_iter().collect();
        for (var, value) in &env {
            if let Some(path) = var.strip_prefix(ENV_PREFIX) {
                apply_override(&mut table, var, path, value)?;
            }
        }
        resolve_paths(&mut table, base);
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| key_err(e.path().to_string(), e.inner().to_string()))?;
        if let Some(admin) = &mut config.admin
            && let Some(var) = &admin.token_env
        {
            admin.token = env
                .iter()
                .find(|(name, value)| name == var && !value.trim().is_empty())
                .map(|(_, value)| value.trim().to_owned());
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.services.is_empty() && self.fine_tuning.is_none() {
            return Err(key_err(
                "services",
                "expected at least one [[services]] table (or a [fine_tuning] section)",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let key = |k: &str| format!("services[{i}].{k}");
            if s.name.trim().is_empty() {
                return Err(key_err(key("name"), "expected a non-empty name"));
            }
            if !names.insert(s.name.as_str()) {
                return Err(key_err(
                    key("name"),
                    format!("service {:?} is listed twice", s.name),
                ));
            }
            if !matches!(s.kind, ServiceKind::Chat | ServiceKind::Embeddings) {
                return Err(key_err(
                    key("kind"),
                    format!(
                        "expected \"chat\" or \"embeddings\", got {:?} (a fine-tuning service is the [fine_tuning] section)",
                        s.kind.as_str()
                    ),
                ));
            }
            if !(s.upstream.starts_with("http://") || s.upstream.starts_with("https://")) {
                return Err(key_err(
                    key("upstream"),
                    format!(
                        "expected an http(s) base URL such as http://127.0.0.1:8081/v1, got {:?}",
                        s.upstream
                    ),
                ));
            }
            if s.max_output_tokens == 0 {
                return Err(key_err(key("max_output_tokens"), "expected at least 1"));
            }
            if s.max_choices == 0 {
                return Err(key_err(key("max_choices"), "expected at least 1"));
            }
            if s.cached_input_price.is_some_and(|c| c > s.input_price) {
                return Err(key_err(
                    key("cached_input_price"),
                    "expected at most input_price: a cached prompt token may not cost more than an uncached one",
                ));
            }
            s.pricing
                .check()
                .map_err(|(k, why)| key_err(key(&format!("pricing.{k}")), why))?;
            s.declared_capabilities()
                .map_err(|why| key_err(key("capabilities"), why))?;
            s.verifiability()
                .map_err(|why| key_err(key("verifiability"), why))?;
        }
        if !(self.database.url.starts_with("sqlite:") || self.database.url.starts_with("postgres"))
        {
            return Err(key_err(
                "database.url",
                format!(
                    "expected sqlite://FILE or postgres://..., got {:?}",
                    self.database.url
                ),
            ));
        }
        if self.settlement.batch_size == 0 {
            return Err(key_err("settlement.batch_size", "expected at least 1"));
        }
        if self.settlement.resubmit_secs == 0 {
            return Err(key_err("settlement.resubmit_secs", "expected at least 1"));
        }
        if let Some(admin) = &self.admin {
            if admin.listen == self.listen && admin.listen.port() != 0 {
                return Err(key_err(
                    "admin.listen",
                    format!(
                        "expected an address apart from `listen` ({}): the provider page is not served beside the paid routes",
                        self.listen
                    ),
                ));
            }
            if let Some(url) = &admin.explorer
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(key_err(
                    "admin.explorer",
                    format!("expected an http(s) URL such as https://chainscan.0g.ai, got {url:?}"),
                ));
            }
        }
        if let Some(ft) = &self.fine_tuning {
            if ft.name.trim().is_empty() || names.contains(ft.name.as_str()) {
                return Err(key_err(
                    "fine_tuning.name",
                    format!(
                        "expected a name no [[services]] table uses, got {:?}",
                        ft.name
                    ),
                ));
            }
            if ft.max_epochs == 0 || ft.max_file_bytes == 0 || ft.checkpoint_every == 0 {
                return Err(key_err(
                    "fine_tuning",
                    "max_epochs, max_file_bytes and checkpoint_every must be at least 1",
                ));
            }
            if ft.price_per_token.is_zero() {
                return Err(key_err(
                    "fine_tuning.price_per_token",
                    "expected a price above zero: a job's fee is its trained tokens times this",
                ));
            }
        }
        if self.settlement.rpc_timeout_secs == 0 {
            return Err(key_err(
                "settlement.rpc_timeout_secs",
                "expected at least 1",
            ));
        }
        Ok(())
    }

    /// The key that signs receipts.
    pub fn signer(&self) -> &SigningKey {
        self.keys.signer.as_ref().unwrap_or(&self.keys.provider)
    }

    /// The URL registered on chain for this broker.
    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let scheme = if self.tls.serves_https() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}", self.listen)
        })
    }
}

/// Files the config names, as `(section, key)`: relative to the config's folder.
const PATH_KEYS: [(&str, &str); 8] = [
    ("fine_tuning", "base_model"),
    ("fine_tuning", "work_dir"),
    ("keys", "provider_keystore"),
    ("keys", "signer_keystore"),
    ("keys", "password_file"),
    ("tls", "cert"),
    ("tls", "key"),
    ("tls", "extra_ca"),
];

fn resolve_paths(table: &mut toml::Table, base: &Path) {
    let rebase = |value: &mut toml::Value| {
        if let toml::Value::String(path) = value
            && Path::new(path.as_str()).is_relative()
        {
            *path = base.join(path.as_str()).display().to_string();
        }
    };
    for (section, key) in PATH_KEYS {
        let value = table
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .and_then(|t| t.get_mut(key));
        match value {
            Some(toml::Value::Array(items)) => items.iter_mut().for_each(rebase),
            Some(value) => rebase(value),
            None => {}
        }
    }
}

/// `ZG_PROVIDER__CHAIN__RPC_URL=x` sets `chain.rpc_url`; a value that parses
/// as a TOML integer or boolean keeps that type, anything else is a string.
fn apply_override(
    table: &mut toml::Table,
    var: &str,
    path: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    if parts.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.into(),
            message: "expected ZG_PROVIDER__SECTION__KEY with non-empty parts".into(),
        });
    }
    let parsed = match value.parse::<i64>() {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => match value {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => toml::Value::String(value.into()),
        },
    };
    let mut cursor = table;
    for part in &parts[..parts.len() - 1] {
        let entry = cursor
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        cursor = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.into(),
            message: format!("`{part}` is not a table in the config"),
        })?;
    }
    cursor.insert(parts[parts.len() - 1].clone(), parsed);
    Ok(())
}

/// The commented example `zg-serving provider init` writes.
pub const EXAMPLE: &str = r#"# zg-serving provider broker configuration.
# Every key can be overridden from the environment: ZG_PROVIDER__SECTION__KEY,
# e.g. ZG_PROVIDER__CHAIN__RPC_URL=https://... or ZG_PROVIDER__DATABASE__URL=postgres://...
# Amounts are decimal 0G (1 0G = 1e18 neuron).

# Where the broker listens, and the URL users reach it at (registered on chain).
listen = "127.0.0.1:8080"
public_url = "http://127.0.0.1:8080"
# Name of this replica when several brokers share one PostgreSQL database.
replica = "main"
# Stake held in the registry (at least the contract's minimum stake).
stake = "0.1"

[chain]
rpc_url = "http://127.0.0.1:8545"
contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

[keys]
# Encrypted JSON keystores (paths relative to this file), made with
# `zg-serving keys new keys/provider.json` and `zg-serving keys new keys/signer.json`.
# The provider wallet: registers services, settles vouchers, receives earnings.
provider_keystore = "keys/provider.json"
# The key that signs receipts: a separate key holds no funds, so the broker's
# machine never needs more than it (recommended; the wallet signs when absent).
signer_keystore = "keys/signer.json"
# The keystores' password: the first line of this file (chmod 600), or
# password_env = "ZG_KEYSTORE_PASSWORD" to read it from the environment.
password_file = "keys/password"

[database]
# SQLite file by default; postgres://user@host/db for several replicas.
url = "sqlite://provider.db"

[settlement]
enabled = true
# Settle at least this often while anything is unsettled (seconds) ...
interval_secs = 3600
# ... or as soon as this much is unsettled.
threshold = "0.1"
# The last settlement before a refund unlocks lands at least this early.
refund_margin_secs = 600
# Vouchers per settle transaction.
batch_size = 100
# Blocks on top of a settlement's block before it counts as done: more than
# the chain ever reorgs (0 only on a local dev chain).
confirmations = 2
# Most a settlement pays per gas (gwei). When the chain asks more, the broker
# waits (logs and zg_provider_settlement_fee_capped_total say so).
max_fee_gwei = "100"
# A settlement not mined this long is replaced with higher fees (same nonce).
resubmit_secs = 60

[[services]]
# The registry name; requests pick a service with their `model` field.
name = "smollm2-135m"
kind = "chat"                    # chat | embeddings
model = "SmolLM2-135M-Instruct"  # the model id the upstream serves
model_digest = "0x0000000000000000000000000000000000000000000000000000000000000000"  # sha256 of the weights
hardware = "cpu"
verifiability = "none"
upstream = "http://127.0.0.1:8081/v1"
# upstream_headers = { Authorization = "Bearer sk-..." }
# Prices per token are ceilings on chain: the pricing policy below charges
# at or under them, and clients refuse any receipt above them.
input_price = "0.000000001"      # per input token
output_price = "0.000000002"     # per output token
cached_input_price = "0.0000000002"  # per prompt token the upstream's prompt cache served (at most input_price)
credit_limit = "0.001"           # most a user may owe beyond their newest voucher
max_output_tokens = 2048         # cap per request; the worst case when max_tokens is absent
max_choices = 8                  # most choices (n) per request; each is reserved at max_output_tokens
# What the service does beyond plain chat, listed in GET /v1/models for
# gateways to route on: any of "tools", "structured_outputs", "logprobs", "n"
# (several choices), "completions" (POST /v1/completions), "sampling" (seed,
# penalties, top_k, min_p and repeat_penalty honoured). Left out, the broker
# asks the upstream: the built-in engine lists its own, any other server
# none (plain chat only). List only what your server honours, for example:
#   llama.cpp llama-server --jinja: ["tools", "structured_outputs", "logprobs", "completions", "sampling"]
#   vLLM (tools need --enable-auto-tool-choice): ["tools", "structured_outputs", "logprobs", "n", "completions"]
#   Ollama: ["tools", "structured_outputs", "completions"]
# capabilities = ["tools", "structured_outputs", "logprobs", "n", "completions", "sampling"]

# How prices move under the ceilings. Left out: the ceilings are charged as
# listed. Clients take a signed quote of the prices in force before each
# request (GET /v1/quote) and pay at most that.
# [services.pricing]
# floor = 0.5          # share of the ceilings charged when idle
# peak = 0.8           # share charged at full load (at most 1 / the largest multiplier)
# capacity = 4         # in-flight requests that count as full load (the upstream's slots)
# smoothing_secs = 10  # moving average of the load, so prices do not flap
# quote_secs = 30      # how long a quote stays valid
# A long prompt or a long requested output (max_tokens; absent counts as
# max_output_tokens) pays the demand price times the multiplier of the last
# tier it meets; tiers go in order of non-decreasing multiplier, and
# peak x multiplier must stay at most 1 (else the broker refuses to start).
# [[services.pricing.tiers]]
# min_prompt_tokens = 2000
# multiplier = 1.25

# The provider page: services and prices in force, traffic, errors, earnings,
# what each user owes, settlements with their transactions, refunds about to
# unlock, disputes. Served on its own address, plain HTTP: keep it on
# loopback (or behind your own TLS proxy or VPN). Left out: no page.
# [admin]
# listen = "127.0.0.1:8090"
# Log in with the token in this environment variable; leave token_env out
# and the broker makes a random token at each start and logs it.
# token_env = "ZG_ADMIN_TOKEN"
# Transaction links go to this block explorer (BASE/tx/HASH).
# explorer = "https://chainscan-galileo.0g.ai"

# A fine-tuning service: LoRA adapters of a GGUF chat model trained on CPU,
# one job at a time, paid per trained token (the training file's tokens
# times the epochs), delivered sealed (docs/fine-tuning.md). Left out: none.
# [fine_tuning]
# name = "smollm2-135m-instruct-tune"
# model = "SmolLM2-135M-Instruct"
# base_model = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
# price_per_token = "0.000000001"
# max_file_bytes = 16777216
# max_epochs = 10
# work_dir = "fine-tuning"     # jobs, checkpoints and sealed adapters
# checkpoint_every = 10        # steps; a restarted broker resumes from the last

[tls]
# Serve HTTPS (then public_url should be https://...): PEM chain and key.
# cert = "tls/fullchain.pem"
# key = "tls/privkey.pem"
# CAs trusted for https upstreams and the chain RPC besides the webpki (Mozilla) roots.
# extra_ca = ["tls/internal-ca.pem"]
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use zg_chain::write_keystore;

    const PLAINTEXT: &str = "[keys]\nprovider = \"0x0000000000000000000000000000000000000000000000000000000000000001\"\n";

    /// The example with its `[keys]` section replaced by a plaintext key.
    fn plaintext_example() -> String {
        let start = EXAMPLE.find("[keys]").unwrap();
        let end = EXAMPLE.find("[database]").unwrap();
        format!("{}{PLAINTEXT}\n{}", &EXAMPLE[..start], &EXAMPLE[end..])
    }

    /// The example with its commented pricing policy switched on.
    fn uncomment_pricing(example: &str) -> String {
        example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[services.pricing")
                        || rest.starts_with("[[services.pricing")
                        || [
                            "floor",
                            "peak",
                            "capacity",
                            "smoothing_secs",
                            "quote_secs",
                            "min_prompt_tokens",
                            "multiplier",
                        ]
                        .iter()
                        .any(|k| rest.starts_with(&format!("{k} ="))) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_commented_pricing_policy_is_valid_and_prices_under_the_ceilings() {
        let config = parse(&uncomment_pricing(&plaintext_example()), &[]).unwrap();
        let pricing = &config.services[0].pricing;
        assert_eq!(
            (pricing.floor, pricing.peak, pricing.tiers.len()),
            (0.5, 0.8, 1)
        );
        assert_eq!(
            config.services[0].ceilings().cached,
            U256::from(200_000_000u64)
        );
    }

    #[test]
    fn the_commented_admin_page_reads_its_token_from_the_variable_it_names() {
        let text = plaintext_example()
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest == "[admin]"
                        || ["listen", "token_env", "explorer"]
                            .iter()
                            .any(|k| rest.starts_with(&format!("{k} ="))) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = parse(&text, &[("ZG_ADMIN_TOKEN", "s3cret")]).unwrap();
        let admin = config.admin.as_ref().unwrap();
        assert_eq!(admin.listen.port(), 8090);
        assert_eq!(admin.token().unwrap(), ("s3cret".to_owned(), false));
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "the token stays out of Debug"
        );
        let unset = parse(&text, &[]).unwrap();
        let why = unset.admin.unwrap().token().unwrap_err();
        assert!(why.contains("ZG_ADMIN_TOKEN"), "{why}");
        let same = parse(&text, &[("ZG_PROVIDER__ADMIN__LISTEN", "127.0.0.1:8080")]).unwrap_err();
        assert!(same.to_string().contains("admin.listen"), "{same}");
        // Without token_env: a fresh random token each start.
        let random = parse(&text.replace("token_env = \"ZG_ADMIN_TOKEN\"", ""), &[]).unwrap();
        let (a, b) = (
            random.admin.as_ref().unwrap().token().unwrap(),
            random.admin.unwrap().token().unwrap(),
        );
        assert!(a.1 && a.0.len() >= 32 && a.0 != b.0);
    }

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::parse(
            text,
            "test.toml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("zg-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_example_loads_its_keys_from_keystores_beside_it() {
        let dir = temp_dir("keystores");
        let (wallet, signer) = (SigningKey::random(), SigningKey::random());
        write_keystore(&dir.join("keys/provider.json"), &wallet, "hunter2").unwrap();
        write_keystore(&dir.join("keys/signer.json"), &signer, "hunter2").unwrap();
        std::fs::write(dir.join("keys/password"), "hunter2\n").unwrap();
        std::fs::write(dir.join("provider.toml"), EXAMPLE).unwrap();

        // Loaded from another working directory: paths are the file's.
        let config = Config::load(&dir.join("provider.toml")).unwrap();
        assert_eq!(config.keys.provider.address(), wallet.address());
        assert_eq!(config.signer().address(), signer.address());
        assert!(!config.keys.plaintext);
        assert_eq!(config.services.len(), 1);
        assert_eq!(config.services[0].input_price, U256::from(1_000_000_000u64));
        assert_eq!(config.services[0].max_choices, 8);

        std::fs::write(dir.join("keys/password"), "wrong\n").unwrap();
        let err = Config::load(&dir.join("provider.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("provider_keystore") && err.contains("password"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plaintext_keys_are_refused_by_load_and_say_how_to_make_a_keystore() {
        let dir = temp_dir("plaintext");
        std::fs::write(dir.join("provider.toml"), plaintext_example()).unwrap();
        let err = Config::load(&dir.join("provider.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refused") && err.contains("zg-serving keys import"),
            "{err}"
        );
        // The same text is fine for `dev`, which parses.
        let config = parse(&plaintext_example(), &[]).unwrap();
        assert!(config.keys.plaintext);
        assert_eq!(config.signer().address(), config.keys.provider.address());
        // A dev chain's throwaway keys load from a file (what `dev` writes
        // for the operator commands it prints).
        let dev = plaintext_example().replace("[keys]\n", "[keys]\ndev = true\n");
        std::fs::write(dir.join("provider.toml"), dev).unwrap();
        let config = Config::load(&dir.join("provider.toml")).unwrap();
        assert!(!config.keys.plaintext);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_overrides_win() {
        let config = parse(
            &plaintext_example(),
            &[
                ("ZG_PROVIDER__DATABASE__URL", "postgres://x@y/z"),
                ("ZG_PROVIDER__SETTLEMENT__INTERVAL_SECS", "7"),
                ("ZG_PROVIDER__CHAIN__RPC_URL", "http://10.0.0.1:8545"),
                ("UNRELATED", "1"),
            ],
        )
        .unwrap();
        assert_eq!(config.database.url, "postgres://x@y/z");
        assert_eq!(config.settlement.interval_secs, 7);
        assert_eq!(config.chain.rpc_url, "http://10.0.0.1:8545");
    }

    #[test]
    fn the_fee_cap_is_exact_gwei() {
        let example = plaintext_example();
        let config = parse(&example, &[]).unwrap();
        assert_eq!(config.settlement.max_fee, 100_000_000_000);
        assert_eq!(config.settlement.confirmations, 2);
        let half = parse(
            &example,
            &[("ZG_PROVIDER__SETTLEMENT__MAX_FEE_GWEI", "0.5")],
        )
        .unwrap();
        assert_eq!(half.settlement.max_fee, 500_000_000);
        let whole = parse(&example, &[("ZG_PROVIDER__SETTLEMENT__MAX_FEE_GWEI", "7")]).unwrap();
        assert_eq!(whole.settlement.max_fee, 7_000_000_000);
        for bad in ["0.0000000001", "lots", "-1"] {
            let err = parse(&example, &[("ZG_PROVIDER__SETTLEMENT__MAX_FEE_GWEI", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("settlement.max_fee_gwei"), "{bad}: {err}");
        }
    }

    #[test]
    fn declared_capabilities_are_known_names() {
        let example = plaintext_example();
        let config = parse(&example, &[]).unwrap();
        assert_eq!(config.services[0].declared_capabilities().unwrap(), None);
        let listed = example.replace("# capabilities = [", "capabilities = [\"tools\", ");
        let config = parse(&listed, &[]).unwrap();
        assert_eq!(
            config.services[0].declared_capabilities().unwrap(),
            Some(zg_core::capability::ALL.to_vec())
        );
    }

    #[test]
    fn errors_name_the_key() {
        let example = plaintext_example();
        let cases = [
            (
                example.replace("input_price = \"0.000000001\"", "input_price = \"cheap\""),
                "services[0].input_price",
            ),
            (
                example.replace("contract = \"0x5F", "contract = \"0x5"),
                "chain.contract",
            ),
            (
                example.replace("kind = \"chat\"", "kind = \"video\""),
                "services[0].kind",
            ),
            (
                example.replace("provider = \"0x00", "provider = \"0xzz"),
                "keys",
            ),
            (
                example.replace("hardware = \"cpu\"", "hardwar = \"cpu\""),
                "services[0]",
            ),
            (
                example.replace("# capabilities = [", "capabilities = [\"telepathy\", "),
                "services[0].capabilities",
            ),
            (
                example.replace("max_choices = 8", "max_choices = 0"),
                "services[0].max_choices",
            ),
            (
                example.replace(
                    "cached_input_price = \"0.0000000002\"",
                    "cached_input_price = \"0.01\"",
                ),
                "services[0].cached_input_price",
            ),
            (
                // The commented policy, switched on with a tier that would
                // charge 1.2 x the ceilings at full load.
                uncomment_pricing(&example).replace("multiplier = 1.25", "multiplier = 1.5"),
                "services[0].pricing.tiers[0].multiplier",
            ),
        ];
        for (text, key) in cases {
            let err = parse(&text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let err = parse(&example, &[("ZG_PROVIDER__SETTLEMENT__BATCH_SIZE", "lots")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("settlement.batch_size"), "{err}");
    }
}
