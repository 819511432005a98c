//! What every benchmark stands on: the fixed-answer nginx upstream, a local
//! chain with the contracts and funded users, brokers and a gateway in their
//! own processes (so that their CPU time is theirs alone), and vouchers
//! signed before the timed part.

use crate::{
    load::{BODY, plain_request},
    procs::{Guard, wait_http, wait_port, which},
};
use anyhow::{Context, Result};
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};
use zg_chain::{ChainClient, DeployParams};
use zg_core::{
    Address, B256, Domain, Nonce, PaymentHeaders, SigningKey, U256, Voucher, request_digest,
};
use zg_devnet::{BrokerPlan, DevChain, DevChainOptions, ServicePlan, SettlementPlan};

/// nginx's address (bench/broker/nginx.conf).
pub(crate) const UPSTREAM: &str = "127.0.0.1:18181";
/// The nginx answer's usage (10 in, 5 out) at 1e9 / 2e9 neuron per token.
pub(crate) const FEE: u64 = 10 * 1_000_000_000 + 5 * 2_000_000_000;
/// Users paying the broker straight: enough that no one user's row is hot.
pub(crate) const USERS: usize = 32;

/// Creates `dir` and `dir/tmp` (nginx's temporary files); the absolute path.
pub(crate) fn run_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("tmp"))
        .with_context(|| format!("creating {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// nginx with bench/broker/nginx.conf (run from the workspace root), its
/// pid file and temporary files in `dir`; returns once it listens.
pub(crate) fn start_nginx(dir: &Path) -> Result<Guard> {
    let conf = std::env::current_dir()?.join("bench/broker/nginx.conf");
    let prefix = dir.to_str().context("the run directory is not UTF-8")?;
    let nginx = Guard::spawn(
        Command::new(which("nginx", &["/usr/sbin/nginx"]))
            .args(["-p", prefix, "-c"])
            .arg(&conf)
            .stderr(Stdio::inherit()),
        "nginx (`make bench-nginx` installs it)",
    )?;
    wait_port(UPSTREAM)?;
    Ok(nginx)
}

/// A local chain with the contracts, a provider, and users who deposited
/// and funded the provider's escrow generously.
pub(crate) struct Market {
    pub chain: DevChain,
    pub contract: Address,
    pub provider: SigningKey,
    pub users: Vec<SigningKey>,
}

impl Market {
    /// anvil, the contracts, and `users` funded users.
    pub(crate) async fn start(users: usize) -> Result<Market> {
        let zg_devnet::Market { chain, deployer } = zg_devnet::Market::start(
            DevChainOptions {
                accounts: 2,
                ..Default::default()
            },
            DeployParams::default(),
        )
        .await
        .context("starting anvil with the contracts (`make contracts` or `npm ci` in contracts/ installs anvil)")?;
        let provider = SigningKey::from_bytes(&chain.keys()[1])?;
        let mut funded = Vec::with_capacity(users);
        for _ in 0..users {
            funded.push(fund_user(&chain, &deployer, provider.address()).await?);
        }
        Ok(Market {
            contract: deployer.contract_address(),
            chain,
            provider,
            users: funded,
        })
    }

    /// The EIP-712 domain vouchers are signed under.
    pub(crate) fn domain(&self) -> Domain {
        Domain::new(self.chain.chain_id(), self.contract)
    }
}

/// A new user with 100 0G deposited, all of it in `provider`'s escrow.
async fn fund_user(
    chain: &DevChain,
    deployer: &ChainClient,
    provider: Address,
) -> Result<SigningKey> {
    let key = SigningKey::random();
    let escrow = U256::from(100u64) * U256::from(10u64).pow(U256::from(18u64));
    chain
        .set_balance(key.address(), escrow * U256::from(2u64))
        .await?;
    let client = deployer.with_key(&key.to_bytes())?;
    client.deposit(escrow).await.context("deposit")?;
    client.fund(provider, escrow).await.context("fund")?;
    Ok(key)
}

/// Removes a SQLite database and its WAL files, so a run starts empty.
pub(crate) fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// `zg-bench broker` with one service, "bench", in front of nginx, on `db`
/// (config in `dir/NAME.toml`); returns once it answers /health. The broker
/// registers itself on chain at http://`listen`.
pub(crate) fn spawn_broker(
    market: &Market,
    dir: &Path,
    name: &str,
    db: &str,
    listen: &str,
) -> Result<Guard> {
    let plan = BrokerPlan {
        listen: listen.into(),
        public_url: None,
        replica: Some(name.into()),
        rpc_url: market.chain.url().into(),
        contract: market.contract,
        provider: market.provider.to_bytes(),
        signer: None,
        database: db.into(),
        stake: "0.1".into(),
        settlement: SettlementPlan::on_demand(),
        services: vec![ServicePlan {
            credit_limit: "1".into(),
            max_output_tokens: 16,
            ..ServicePlan::chat(
                "bench",
                "bench",
                B256::with_last_byte(1),
                &format!("http://{UPSTREAM}/v1"),
            )
        }],
        admin: None,
        fine_tuning: None,
    };
    spawn_broker_config(dir, name, &plan.toml(), listen)
}

/// `zg-bench broker` with the provider.toml text `config` (written to
/// `dir/NAME.toml`); returns once it answers /health on `listen`.
pub(crate) fn spawn_broker_config(
    dir: &Path,
    name: &str,
    config: &str,
    listen: &str,
) -> Result<Guard> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
    let broker = Guard::spawn(
        Command::new(std::env::current_exe()?)
            .args(["broker", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit()),
        "the broker",
    )?;
    wait_http(listen, "/health", Duration::from_secs(60))?;
    Ok(broker)
}

/// `zg-bench gateway` for `user`, its book at `book`; returns once it
/// answers /health (it has read the registry by then).
pub(crate) fn spawn_gateway(
    market: &Market,
    user: &SigningKey,
    book: &Path,
    listen: &str,
) -> Result<Guard> {
    let gateway = Guard::spawn(
        Command::new(std::env::current_exe()?)
            .arg("gateway")
            .args(["--rpc", market.chain.url()])
            .args(["--contract", &market.contract.to_string()])
            .args(["--key", &user.to_bytes().to_string()])
            .arg("--book")
            .arg(book)
            .args(["--listen", listen])
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit()),
        "the gateway",
    )?;
    wait_http(listen, "/health", Duration::from_secs(60))?;
    Ok(gateway)
}

/// Signs vouchers for a market's users, ahead of the timed part; keeps
/// each user's cumulative amount across calls (one broker database).
pub(crate) struct Vouchers<'a> {
    market: &'a Market,
    domain: Domain,
    counters: Vec<u64>,
}

impl<'a> Vouchers<'a> {
    pub(crate) fn new(market: &'a Market) -> Self {
        Vouchers {
            market,
            domain: market.domain(),
            counters: vec![0; market.users.len()],
        }
    }

    /// `per_conn` requests for each of `conns` connections to `addr`;
    /// connection k pays for users k, k+conns, ... in turn, so each user's
    /// vouchers go out in order and each covers exactly the fees before it.
    /// `conns` is at most the number of users.
    pub(crate) fn presign(
        &mut self,
        conns: usize,
        per_conn: usize,
        addr: &str,
    ) -> Vec<Vec<Vec<u8>>> {
        let users = self.market.users.len();
        (0..conns)
            .map(|conn| {
                let mine: Vec<usize> = (conn..users).step_by(conns).collect();
                (0..per_conn)
                    .map(|i| self.request(mine[i % mine.len()], addr))
                    .collect()
            })
            .collect()
    }

    /// The next paid request of user `u`.
    fn request(&mut self, u: usize, addr: &str) -> Vec<u8> {
        let user = &self.market.users[u];
        let cumulative = U256::from(self.counters[u] * FEE);
        self.counters[u] += 1;
        let nonce = Nonce::random();
        let voucher = Voucher {
            user: user.address(),
            provider: self.market.provider.address(),
            cumulative,
            request_digest: request_digest(&nonce, BODY.as_bytes()),
        };
        let headers = PaymentHeaders {
            user: user.address(),
            cumulative,
            nonce,
            signature: voucher.sign(user, &self.domain),
        };
        let extra: Vec<(&str, String)> = headers.encode().into_iter().collect();
        plain_request(addr, &extra)
    }
}
