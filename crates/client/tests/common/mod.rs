//! What the user-side tests share: a dev chain with the contracts deployed,
//! real provider brokers (zg-provider, in process) in front of the real
//! engine on the real model (loaded once per test binary), and funded users.
#![allow(dead_code)]

use std::{path::PathBuf, sync::OnceLock, time::Duration};
use tempfile::TempDir;
use zg_chain::ChainClient;
use zg_client::{AckPolicy, Book, Payer};
use zg_core::{Address, B256, SigningKey, U256, parse_amount};
use zg_devnet::ServicePlan;
use zg_provider::Running;

/// The engine every broker of a test binary forwards to.
pub(crate) struct EngineInfo {
    pub url: String,
    pub model: String,
    pub digest: B256,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts the built-in engine once, on its own thread and runtime, so every
/// test of the binary shares one loaded model.
pub(crate) fn engine() -> &'static EngineInfo {
    static ENGINE: OnceLock<EngineInfo> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let model = workspace().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
                assert!(
                    model.is_file(),
                    "{} is missing: run `make model`",
                    model.display()
                );
                let mut config = zg_engine::EngineConfig::new(model);
                config.parallel = 4;
                config.ctx = 4096;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let server = zg_engine::spawn(config, listener)
                    .await
                    .expect("engine starts");
                let card = server.engine().models()[0].clone();
                tx.send(EngineInfo {
                    url: server.base_url(),
                    model: card.id.clone(),
                    digest: card.sha256.parse().expect("sha256 hex"),
                })
                .expect("send");
                // Serve for the life of the test binary.
                std::future::pending::<()>().await;
                drop(server);
            });
        });
        rx.recv().expect("engine info")
    })
}

/// The devnet market (chain and contract), plus the temp dirs of what runs on it.
pub(crate) struct Market {
    net: zg_devnet::Market,
    dirs: Vec<TempDir>,
    /// The `verifiability` the next brokers register ("none" unless set).
    pub verifiability: &'static str,
}

impl std::ops::Deref for Market {
    type Target = zg_devnet::Market;
    fn deref(&self) -> &zg_devnet::Market {
        &self.net
    }
}

/// A provider broker and its keys.
pub(crate) struct Provider {
    pub running: Running,
    pub key: SigningKey,
    pub signer: SigningKey,
}

impl Provider {
    pub(crate) fn address(&self) -> Address {
        self.key.address()
    }
}

/// What [`Market::one_paid_chat`] sets up.
pub(crate) struct PaidChat {
    pub provider: Provider,
    pub key: SigningKey,
    pub chain: ChainClient,
    pub payer: Payer,
    /// The payer's book file.
    pub book: PathBuf,
    pub service: zg_core::Service,
}

pub(crate) fn neuron(amount: &str) -> U256 {
    parse_amount(amount).expect("amount")
}

impl Market {
    pub(crate) async fn start() -> Market {
        let net = zg_devnet::Market::for_tests()
            .await
            .expect("anvil with the contract");
        Market {
            net,
            dirs: Vec::new(),
            verifiability: zg_core::verifiability::NONE,
        }
    }

    pub(crate) fn tempdir(&mut self) -> PathBuf {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        self.dirs.push(dir);
        path
    }

    /// A real broker for dev account `index` in front of `upstream`, listing
    /// one chat service of `model` at these prices (0G per token).
    pub(crate) async fn broker(
        &mut self,
        index: usize,
        upstream: &str,
        model: &str,
        digest: B256,
        input: &str,
        output: &str,
    ) -> Provider {
        self.broker_with(index, upstream, model, digest, (input, output), |_| ())
            .await
    }

    /// [`Market::broker`] with its service changed by `change` first.
    pub(crate) async fn broker_with(
        &mut self,
        index: usize,
        upstream: &str,
        model: &str,
        digest: B256,
        (input, output): (&str, &str),
        change: impl FnOnce(&mut ServicePlan),
    ) -> Provider {
        let key = SigningKey::from_bytes(&self.chain.keys()[index]).expect("key");
        let signer = SigningKey::random();
        let db = self.tempdir().join("broker.db");
        let mut plan = self
            .broker_plan(index, &format!("sqlite://{}", db.display()))
            .expect("dev account");
        plan.signer = Some(signer.to_bytes());
        plan.settlement.refund_margin_secs = 30;
        let mut service = ServicePlan {
            input_price: input.into(),
            output_price: output.into(),
            verifiability: self.verifiability.into(),
            ..ServicePlan::chat("chat", model, digest, upstream)
        };
        change(&mut service);
        plan.services.push(service);
        let running = zg_devnet::start_broker(&plan).await.expect("broker starts");
        Provider {
            running,
            key,
            signer,
        }
    }

    /// Dev account `index` with `escrow` funded at each of `providers`.
    pub(crate) async fn user(
        &self,
        index: usize,
        escrow: U256,
        providers: &[Address],
    ) -> (SigningKey, ChainClient) {
        self.net
            .user(index, escrow, providers)
            .await
            .expect("funded user")
    }

    /// One broker (dev account 1) on the engine at 1e-9 / 2e-9 0G per token,
    /// one user (dev account 2) with 0.1 0G of escrow at it, the user's
    /// payer with its book, and the broker's chat service as listed.
    pub(crate) async fn one_paid_chat(&mut self, ack: AckPolicy) -> PaidChat {
        let e = engine();
        let provider = self
            .broker(1, &e.url, &e.model, e.digest, "0.000000001", "0.000000002")
            .await;
        let (key, chain) = self.user(2, neuron("0.1"), &[provider.address()]).await;
        let (payer, book) = self.payer(&key, ack).await;
        let service = chain
            .service(provider.address(), "chat")
            .await
            .expect("registry")
            .expect("listed");
        PaidChat {
            provider,
            key,
            chain,
            payer,
            book,
            service,
        }
    }

    /// A payer for `key` with its book in a fresh temp dir.
    pub(crate) async fn payer(&mut self, key: &SigningKey, ack: AckPolicy) -> (Payer, PathBuf) {
        let path = self.tempdir().join("book.sqlite");
        let book = Book::open(&path, key.address()).await.expect("book");
        (
            Payer::new(key.clone(), self.deployer.domain(), book, ack),
            path,
        )
    }
}

pub(crate) fn chat_body(model: &str, text: &str, max_tokens: u64) -> serde_json::Value {
    serde_json::json!({
        "model": model,
        "messages": [{ "role": "user", "content": text }],
        "max_tokens": max_tokens,
        "temperature": 0
    })
}

/// Waits until `f` holds (receipts of streams are recorded just after the stream).
pub(crate) async fn eventually<F: AsyncFnMut() -> bool>(mut f: F) -> bool {
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
