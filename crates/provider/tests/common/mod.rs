//! What the broker tests share: a dev chain with the contracts deployed, a
//! funded user, databases (a SQLite file, a fresh PostgreSQL database), a
//! broker config, a paying client, and a scripted upstream for fault injection.
#![allow(dead_code)]
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use axum::{Json, Router, body::Body, http::StatusCode, response::IntoResponse, routing::post};
use bytes::Bytes;
use serde_json::{Value, json};
use zg_chain::ChainClient;
use zg_core::{
    Address, B256, Domain, Nonce, PaymentHeaders, SigningKey, U256, Voucher,
    headers::SignedReceipt, request_digest,
};
pub(crate) use zg_devnet::BrokerPlan;
use zg_devnet::ServicePlan;
use zg_provider::{Config, Running};

pub(crate) const INPUT_PRICE: u64 = 1_000_000_000; // neuron per token
pub(crate) const OUTPUT_PRICE: u64 = 2_000_000_000;

/// The devnet market (chain and contract) and the one provider's keys.
pub(crate) struct Env {
    net: zg_devnet::Market,
    pub provider_key: SigningKey,
    pub signer_key: SigningKey,
}

impl std::ops::Deref for Env {
    type Target = zg_devnet::Market;
    fn deref(&self) -> &zg_devnet::Market {
        &self.net
    }
}

impl Env {
    pub(crate) async fn start() -> Env {
        let net = zg_devnet::Market::for_tests()
            .await
            .expect("anvil with the contract");
        let provider_key = net.key(1).expect("dev key");
        Env {
            net,
            provider_key,
            signer_key: SigningKey::random(),
        }
    }

    pub(crate) fn provider(&self) -> Address {
        self.provider_key.address()
    }

    /// Dev account `index` (2..20) as a user with `escrow` neuron funded at the provider.
    pub(crate) async fn user(&self, index: usize, escrow: U256) -> (SigningKey, ChainClient) {
        self.net
            .user(index, escrow, &[self.provider()])
            .await
            .expect("funded user")
    }

    /// The provider's broker on `db_url` with one chat service, "chat",
    /// of `model` in front of `chat_upstream`, with `credit` 0G of credit.
    pub(crate) fn plan(
        &self,
        db_url: &str,
        chat_upstream: &str,
        model: &str,
        digest: B256,
        credit: &str,
    ) -> BrokerPlan {
        let mut plan = self.broker_plan(1, db_url).expect("dev account 1");
        plan.signer = Some(self.signer_key.to_bytes());
        plan.services.push(ServicePlan {
            credit_limit: credit.into(),
            ..ServicePlan::chat("chat", model, digest, chat_upstream)
        });
        plan
    }

    pub(crate) fn config(
        &self,
        db_url: &str,
        chat_upstream: &str,
        model: &str,
        digest: B256,
        credit: &str,
    ) -> Config {
        let plan = self.plan(db_url, chat_upstream, model, digest, credit);
        plan.config().expect("config")
    }

    /// A broker on a SQLite file (in the returned temp dir) in front of the
    /// scripted upstream, its chat service with `credit` 0G of credit.
    pub(crate) async fn scripted_broker(&self, credit: &str) -> (Running, tempfile::TempDir) {
        let upstream = scripted_upstream().await;
        let (db, dir) = sqlite_url();
        let upstream = format!("http://{upstream}/v1");
        let config = self.config(&db, &upstream, "scripted", Default::default(), credit);
        (self.broker(config).await, dir)
    }

    pub(crate) async fn broker(&self, config: Config) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        zg_provider::start(config, listener)
            .await
            .expect("broker starts")
    }
}

/// A SQLite file in a fresh temp dir (kept alive by the returned guard).
pub(crate) fn sqlite_url() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("broker.db").display());
    (url, dir)
}

/// A fresh PostgreSQL database, dropped by `drop_pg`.
pub(crate) async fn pg_url() -> (String, String) {
    use sqlx::Connection;
    let name = format!("zgp_{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut admin = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test")
        .await
        .expect("postgres at 127.0.0.1:5432");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    (format!("postgres://postgres@127.0.0.1:5432/{name}"), name)
}

pub(crate) async fn drop_pg(name: &str) {
    use sqlx::Connection;
    if let Ok(mut admin) =
        sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/test").await
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

/// A user's side of the protocol: signs vouchers, keeps the tally of fees.
pub(crate) struct Payer {
    pub key: SigningKey,
    pub domain: Domain,
    pub provider: Address,
    pub base: String,
    pub http: reqwest::Client,
    /// What the user's receipts say it owes.
    pub owed: U256,
}

pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub receipt: Option<SignedReceipt>,
    pub request_id: Option<String>,
    pub digest: B256,
    pub json: Value,
}

impl Payer {
    pub(crate) fn new(key: SigningKey, env: &Env, base: &str) -> Self {
        Self {
            key,
            domain: env.domain(),
            provider: env.provider(),
            base: base.to_string(),
            http: reqwest::Client::new(),
            owed: U256::ZERO,
        }
    }

    pub(crate) fn headers(&self, body: &[u8], cumulative: U256) -> (PaymentHeaders, B256) {
        let nonce = Nonce::random();
        let digest = request_digest(&nonce, body);
        let voucher = Voucher {
            user: self.key.address(),
            provider: self.provider,
            cumulative,
            request_digest: digest,
        };
        let signature = voucher.sign(&self.key, &self.domain);
        (
            PaymentHeaders {
                user: self.key.address(),
                cumulative,
                nonce,
                signature,
            },
            digest,
        )
    }

    /// Sends `body` to `path` with a fresh voucher for everything owed so far.
    pub(crate) async fn send(&mut self, path: &str, body: &Value) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap();
        let (headers, digest) = self.headers(&bytes, self.owed);
        let answer = self.send_raw(path, bytes, &headers).await;
        Answer { digest, ..answer }
    }

    pub(crate) async fn send_raw(
        &self,
        path: &str,
        bytes: Vec<u8>,
        headers: &PaymentHeaders,
    ) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(bytes);
        for (name, value) in headers.encode() {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("broker reachable");
        let status = response.status().as_u16();
        let receipt = response.headers().get("x-zg-receipt").map(|v| {
            SignedReceipt::from_header(v.to_str().unwrap()).expect("receipt header parses")
        });
        let request_id = response
            .headers()
            .get("x-zg-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.bytes().await.unwrap_or_default();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            receipt,
            request_id,
            digest: B256::ZERO,
            json,
        }
    }

    /// Sends `n` chats, each paid and answered; the last one's receipt.
    pub(crate) async fn chats(&mut self, n: usize) -> zg_core::Receipt {
        let mut last = None;
        for _ in 0..n {
            let a = self
                .send("/v1/chat/completions", &chat_body("chat", "hi", 8))
                .await;
            assert_eq!(a.status, 200, "{}", a.json);
            let receipt = a.receipt.unwrap().receipt;
            self.owed = receipt.owed;
            last = Some(receipt);
        }
        last.expect("at least one chat")
    }

    /// `GET /v1/account/{user}` with a statement request signed by `signer`
    /// at `timestamp`.
    pub(crate) async fn statement(&self, signer: &SigningKey, timestamp: u64) -> reqwest::Response {
        let request = zg_core::StatementRequest {
            user: self.key.address(),
            provider: self.provider,
            timestamp,
        };
        let mut get = self
            .http
            .get(format!("{}/v1/account/{}", self.base, self.key.address()));
        for (name, value) in request.headers(signer, &self.domain) {
            get = get.header(name, value);
        }
        get.send().await.expect("broker reachable")
    }

    /// Acknowledges `receipt` with a voucher for what it says is owed
    /// (`POST /v1/vouchers`); the broker's status.
    pub(crate) async fn acknowledge(&self, receipt: &zg_core::Receipt) -> u16 {
        let ack = Voucher {
            user: self.key.address(),
            provider: self.provider,
            cumulative: receipt.owed,
            request_digest: receipt.signing_hash(&self.domain),
        };
        let body =
            json!({ "voucher": ack, "signature": ack.sign(&self.key, &self.domain).to_string() });
        self.http
            .post(format!("{}/v1/vouchers", self.base))
            .json(&body)
            .send()
            .await
            .expect("broker reachable")
            .status()
            .as_u16()
    }

    pub(crate) async fn receipt(&self, id: &str) -> SignedReceipt {
        let r = self
            .http
            .get(format!("{}/v1/receipts/{id}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "receipt {id}");
        r.json().await.unwrap()
    }
}

pub(crate) fn chat_body(model: &str, text: &str, max_tokens: u64) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": text }], "max_tokens": max_tokens, "temperature": 0 })
}

pub(crate) fn code(answer: &Answer) -> &str {
    answer
        .json
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A scripted OpenAI-compatible upstream for fault injection. The last user
/// message picks the behaviour: "fail" answers 500; "slow" answers after
/// 2 s; "die N" streams N
/// content chunks then drops the connection; anything else answers with a
/// fixed completion of 10 prompt and 5 completion tokens.
pub(crate) async fn scripted_upstream() -> SocketAddr {
    async fn chat(body: Bytes) -> axum::response::Response {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let text = v
            .pointer("/messages/0/content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
        if text == "fail" {
            return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
        }
        if text == "slow" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if !stream {
            return Json(json!({
                "id": "c1", "object": "chat.completion", "created": 1, "model": "scripted",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": "hello there" }, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
            }))
            .into_response();
        }
        let die_after = text
            .strip_prefix("die ")
            .and_then(|n| n.parse::<usize>().ok());
        let chunks = die_after.unwrap_or(5);
        let include_usage = v
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let stream = async_stream(chunks, die_after.is_some(), include_usage);
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap()
    }
    serve(Router::new().route("/v1/chat/completions", post(chat))).await
}

/// Serves `app` on a free port of 127.0.0.1 for the rest of the test.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn async_stream(
    chunks: usize,
    die: bool,
    usage: bool,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let mut events: Vec<Result<Bytes, std::io::Error>> = (0..chunks)
        .map(|i| {
            Ok(Bytes::from(format!(
                "data: {}\n\n",
                json!({ "id": "c1", "object": "chat.completion.chunk", "choices": [{ "index": 0, "delta": { "content": format!("t{i}") } }] })
            )))
        })
        .collect();
    if die {
        events.push(Err(std::io::Error::other("upstream died")));
    } else {
        if usage {
            events.push(Ok(Bytes::from(format!(
                "data: {}\n\n",
                json!({ "id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": { "prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks } })
            ))));
        }
        events.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    }
    futures::stream::iter(events).then(|e| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        e
    })
}

use futures::StreamExt;

/// Checks a receipt against the registry entry on chain and the bytes seen.
pub(crate) async fn check_receipt(
    env: &Env,
    signed: &SignedReceipt,
    request_digest: B256,
    body: &[u8],
) {
    let r = &signed.receipt;
    let service = env
        .deployer
        .service(env.provider(), "chat")
        .await
        .unwrap()
        .expect("service listed");
    let signer = r
        .signer(&signed.signature().unwrap(), &env.domain())
        .unwrap();
    assert_eq!(
        signer, service.signer,
        "receipt signed by the registered signer"
    );
    assert_eq!(r.service, service.id());
    assert_eq!(r.model_digest, service.model_digest);
    assert!(r.input_price <= service.prices.input && r.output_price <= service.prices.output);
    assert_eq!(
        r.fee,
        r.input_tokens * r.input_price + r.output_tokens * r.output_price
    );
    assert_eq!(r.request_digest, request_digest);
    assert_eq!(r.response_digest, zg_core::keccak256(body));
    assert_eq!(r.provider, env.provider());
}

pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
