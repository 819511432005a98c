//! The gateway's files and fine-tuning APIs on a real chain, driven by the
//! real `openai` Python client (fine_tuning_api.py): a training file's round
//! trip, line-numbered refusals, the size limit, 404s and jobs refused when
//! no fine-tuning service offers the model; files kept across a restart of
//! the gateway; and a gateway without a data directory saying so.

mod common;

use common::{Market, neuron, start_gateway};
use serde_json::{Value, json};
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};
use zg_chain::JobState;
use zg_core::{SigningKey, U256};
use zg_devnet::FineTuningPlan;
use zg_gateway::GatewayConfig;

/// Job `name` at the gateway `url` once it is neither queued nor running.
async fn until_ended(url: &str, name: &str) -> Value {
    let started = Instant::now();
    loop {
        let job: Value = reqwest::get(format!("{url}/fine_tuning/jobs/{name}"))
            .await
            .expect("gateway reachable")
            .json()
            .await
            .expect("a job");
        if job["status"] != "queued" && job["status"] != "running" {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "not done: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Uploads `text` as a fine-tuning file through the gateway at `url` (its `/v1`).
async fn upload(url: &str, api_key: &str, filename: &str, text: String) -> Value {
    let body = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\r\n\
         {text}\r\n--XyZ--\r\n"
    );
    let r = reqwest::Client::new()
        .post(format!("{url}/files"))
        .bearer_auth(api_key)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .expect("gateway reachable");
    assert_eq!(r.status(), 200);
    r.json().await.expect("a file object")
}

/// What fine_tuning_api.py prints `OK <case>` for.
const CASES: [&str; 6] = [
    "round_trip",
    "validation",
    "size_limit",
    "not_found",
    "jobs_refused",
    "delete",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_uploads_lists_reads_and_deletes_training_files() {
    let mut market = Market::start().await;
    let (key, chain) = market.user(2, U256::ZERO, &[]).await;
    let data_dir = market.tempdir();
    let config = GatewayConfig {
        data_dir: Some(data_dir.clone()),
        ..Default::default()
    };
    let (url, gateway, _) = start_gateway(&mut market, &key, chain.clone(), config).await;
    let (_, api_key) = gateway.keys().add("app", None).await.unwrap();

    let python = manifest().join("../../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make venv`",
        python.display()
    );
    let script = manifest().join("tests/fine_tuning_api.py");
    let args = [url.clone(), api_key.clone()];
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).args(args).output())
            .await
            .unwrap()
            .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fine_tuning_api.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for case in CASES {
        assert!(
            stdout.contains(&format!("OK {case}\n")),
            "{case}:\n{stdout}"
        );
    }

    // The routes want the gateway's API key once it has one.
    let http = reqwest::Client::new();
    let r = http.get(format!("{url}/files")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");

    // Files outlive the gateway: a second one on the same folder lists them.
    let line =
        r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#;
    let file = upload(&url, &api_key, "a.jsonl", format!("{line}\n")).await;
    let id = file["id"].as_str().unwrap().to_owned();
    let config = GatewayConfig {
        data_dir: Some(data_dir),
        ..Default::default()
    };
    let (again, gateway2, _) = start_gateway(&mut market, &key, chain.clone(), config).await;
    drop(gateway2);
    let listed: serde_json::Value = http
        .get(format!("{again}/files/{id}"))
        .bearer_auth(&api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, file);

    // Without a data directory the APIs say what is missing.
    let (bare, _, _) = start_gateway(&mut market, &key, chain, GatewayConfig::default()).await;
    for path in ["/files", "/fine_tuning/jobs"] {
        let r = http
            .get(format!("{bare}{path}"))
            .bearer_auth(&api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: serde_json::Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("--data-dir"), "{path}: {body}");
    }
}

/// The whole flow, driven by the official `openai` client, against a real
/// broker that trains for real on the built-in model: the gateway orders the job, follows its steps, downloads
/// the sealed adapter, checks it against the chain, acknowledges, and once
/// settled opens it into the data directory; a user short of escrow is told
/// how much to fund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_ordered_through_the_gateway_ends_with_its_adapter_in_the_data_dir() {
    let mut market = Market::start().await;
    let tune = Tune::start(&mut market, Mode::CutFirstDownload).await;
    let (key, chain) = market.user(2, neuron("0.1"), &[tune.provider]).await;
    let data_dir = market.tempdir();
    let config = GatewayConfig {
        data_dir: Some(data_dir.clone()),
        models_dir: Some(manifest().join("../../models")),
        ..Default::default()
    };
    let (url, gateway, _) = start_gateway(&mut market, &key, chain.clone(), config).await;
    let text = training(8);
    let file = upload(&url, "", "capitals.jsonl", text.clone()).await;
    let order = json!({
        "model": "SmolLM2-135M-Instruct",
        "training_file": file["id"],
        "suffix": "capitals",
        "method": { "type": "supervised", "supervised": { "hyperparameters": { "n_epochs": 1, "batch_size": 4 } } },
        "lora_rank": 4,
    });
    let http = reqwest::Client::new();
    // More epochs than the service's terms allow: refused before anything is signed.
    let mut greedy = order.clone();
    greedy["method"]["supervised"]["hyperparameters"]["n_epochs"] = json!(1_000_000);
    let r = http
        .post(format!("{url}/fine_tuning/jobs"))
        .json(&greedy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("trains at most"), "{body}");
    // The rest of the flow is the official client's (fine_tuning_flow.py):
    // upload, create, follow, events, checkpoints, listings, a cancel.
    let training_file = data_dir.join("capitals-upload.jsonl");
    std::fs::write(&training_file, &text).unwrap();
    let python = manifest().join("../../.venv/bin/python");
    let script = manifest().join("tests/fine_tuning_flow.py");
    let args = [
        url.clone(),
        String::new(),
        training_file.display().to_string(),
    ];
    let output =
        tokio::task::spawn_blocking(move || Command::new(python).arg(script).args(args).output())
            .await
            .unwrap()
            .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fine_tuning_flow.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let job = &outcome["job"];
    let name = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["hyperparameters"]["n_epochs"], 1);
    assert_eq!(job["zg"]["provider"], json!(tune.provider));
    let id_hex = &name["ftjob-".len()..];
    assert_eq!(
        job["fine_tuned_model"],
        format!("ft:SmolLM2-135M-Instruct:capitals:{}", &id_hex[..8])
    );
    let adapter = PathBuf::from(job["zg"]["adapter_path"].as_str().unwrap());
    assert!(adapter.starts_with(&data_dir), "{}", adapter.display());
    assert!(std::fs::read(&adapter).unwrap().starts_with(b"GGUF"));
    let on_chain = chain.job(id_hex.parse().unwrap()).await.unwrap();
    assert_eq!(on_chain.state, JobState::Settled);
    assert_eq!(job["zg"]["fee_neuron"], on_chain.fee.to_string());
    assert!(
        tune.resumed.load(Ordering::SeqCst) >= 1,
        "the cut download resumed with a range"
    );
    // The user's web page lists the job with its tuned model.
    let page = reqwest::Client::new()
        .get(format!("{}/fine-tuning", url.trim_end_matches("/v1")))
        .bearer_auth(gateway.admin_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = page
        .split(&format!("data-id=\"{name}\""))
        .nth(1)
        .expect("the job's row");
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("succeeded") && row.contains(job["fine_tuned_model"].as_str().unwrap()),
        "{row}"
    );

    // The cancelled job's reservation went back on chain.
    let cancelled = outcome["cancelled"]["id"].as_str().unwrap();
    // (A running job stops at the end of its step, then the provider
    // releases it on chain.)
    let cancelled: zg_core::B256 = cancelled["ftjob-".len()..].parse().unwrap();
    let asked = Instant::now();
    while chain.job(cancelled).await.unwrap().state != JobState::Cancelled {
        assert!(
            asked.elapsed() < Duration::from_secs(60),
            "not released on chain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let account = chain.account(chain.wallet(), tune.provider).await.unwrap();
    assert_eq!(account.escrow, neuron("0.1") - on_chain.fee);

    // A user with no escrow at the provider is told what to fund.
    let (poor, poor_chain) = market.user(3, U256::ZERO, &[]).await;
    let config = GatewayConfig {
        data_dir: Some(market.tempdir()),
        ..Default::default()
    };
    let (poor_url, _, _) = start_gateway(&mut market, &poor, poor_chain, config).await;
    let file = upload(&poor_url, "", "capitals.jsonl", text).await;
    let mut order = order;
    order["training_file"] = file["id"].clone();
    let r = http
        .post(format!("{poor_url}/fine_tuning/jobs"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("zg-serving user fund --provider"),
        "{body}"
    );
    tune.broker.shutdown().await.unwrap();
}

/// A provider whose adapter comes back with one byte changed: the job fails
/// with the hash named, and it is never acknowledged on chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_does_not_match_the_deliverable_fails_the_job_unacknowledged() {
    let mut market = Market::start().await;
    let tune = Tune::start(&mut market, Mode::Corrupt).await;
    let (key, chain) = market.user(2, neuron("0.1"), &[tune.provider]).await;
    let config = GatewayConfig {
        data_dir: Some(market.tempdir()),
        ..Default::default()
    };
    let (url, _gateway, _) = start_gateway(&mut market, &key, chain.clone(), config).await;
    let file = upload(&url, "", "capitals.jsonl", training(8)).await;
    let http = reqwest::Client::new();

    let job: Value = http
        .post(format!("{url}/fine_tuning/jobs"))
        .json(&json!({
            "model": "SmolLM2-135M-Instruct",
            "training_file": file["id"],
            "hyperparameters": { "n_epochs": 1, "batch_size": "auto" },
            "lora_rank": 4,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let name = job["id"].as_str().expect("a job").to_owned();
    let job = until_ended(&url, &name).await;
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["error"]["code"], "adapter_hash_mismatch", "{job:#}");
    assert!(job["fine_tuned_model"].is_null());
    let id = name["ftjob-".len()..].parse().unwrap();
    assert_eq!(chain.job(id).await.unwrap().state, JobState::Delivered);
    tune.broker.shutdown().await.unwrap();
}

/// A gateway that stops while the job trains (its whole runtime dropped,
/// as a killed process) leaves the record on disk; the next gateway on the
/// same data directory picks the job up and brings the adapter home.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_mid_job_picks_the_job_up_and_finishes_it() {
    let mut market = Market::start().await;
    let tune = Tune::start(&mut market, Mode::CutFirstDownload).await;
    let (key, chain) = market.user(2, neuron("0.1"), &[tune.provider]).await;
    let data_dir = market.tempdir();
    let book = market.tempdir().join("book.sqlite");

    // The first gateway lives on its own runtime, so that all of it can die.
    let (rpc, contract) = (
        market.chain.url().to_owned(),
        market.deployer.contract_address(),
    );
    let (user_key, dir) = (market.chain.keys()[2], data_dir.clone());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let first = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let chain = zg_chain::ChainClient::connect(&rpc, contract, &user_key)
                .await
                .unwrap();
            let key = SigningKey::from_bytes(&user_key).unwrap();
            let book = zg_client::Book::open(&book, key.address()).await.unwrap();
            let payer = zg_client::Payer::new(
                key,
                chain.domain(),
                book,
                zg_client::AckPolicy::WhenIdle(Duration::from_secs(2)),
            );
            let config = GatewayConfig {
                data_dir: Some(dir),
                ..Default::default()
            };
            let gateway = zg_gateway::Gateway::new(payer, chain, config)
                .await
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx
                .send(gateway.spawn(listener).await.unwrap())
                .unwrap();
            let _ = stop_rx.await;
        });
        // Dropping the runtime ends every task of the first gateway.
        drop(runtime);
    });
    let url = format!("http://{}/v1", addr_rx.recv().unwrap());
    let file = upload(&url, "", "capitals.jsonl", training(8)).await;
    let http = reqwest::Client::new();
    let job: Value = http
        .post(format!("{url}/fine_tuning/jobs"))
        .json(&json!({
            "model": "SmolLM2-135M-Instruct",
            "training_file": file["id"],
            "hyperparameters": { "n_epochs": 1 },
            "lora_rank": 4,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let name = job["id"].as_str().expect("a job").to_owned();
    assert!(
        job["status"] == "queued" || job["status"] == "running",
        "{job:#}"
    );
    stop_tx.send(()).unwrap();
    first.join().unwrap();
    assert!(
        http.get(format!("{url}/files")).send().await.is_err(),
        "the first gateway is gone"
    );

    let config = GatewayConfig {
        data_dir: Some(data_dir),
        ..Default::default()
    };
    let (url, _gateway, _) = start_gateway(&mut market, &key, chain.clone(), config).await;
    let job = until_ended(&url, &name).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let adapter = PathBuf::from(job["zg"]["adapter_path"].as_str().unwrap());
    assert!(std::fs::read(&adapter).unwrap().starts_with(b"GGUF"));
    let id = name["ftjob-".len()..].parse().unwrap();
    assert_eq!(chain.job(id).await.unwrap().state, JobState::Settled);
    tune.broker.shutdown().await.unwrap();
}

/// The first `n` examples of the project's training set.
fn training(n: usize) -> String {
    std::fs::read_to_string(manifest().join("../finetune/data/train.jsonl"))
        .expect("crates/finetune/data/train.jsonl")
        .lines()
        .take(n)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// What the proxy in front of the provider does to adapter downloads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The first download breaks off halfway; the rest pass.
    CutFirstDownload,
    /// Every download comes with its first byte changed.
    Corrupt,
}

/// A provider gone mid-job: cancelling says from when the job can be
/// abandoned; past the delivery timeout the same cancel abandons it on
/// chain and the whole reservation returns to escrow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_provider_is_gone_is_abandoned_by_cancel_after_the_timeout() {
    let mut market = Market::start().await;
    let tune = Tune::start(&mut market, Mode::CutFirstDownload).await;
    let (key, chain) = market.user(2, neuron("0.1"), &[tune.provider]).await;
    let config = GatewayConfig {
        data_dir: Some(market.tempdir()),
        ..Default::default()
    };
    let (url, gateway, _) = start_gateway(&mut market, &key, chain.clone(), config).await;
    let file = upload(&url, "", "capitals.jsonl", training(8)).await;
    let http = reqwest::Client::new();

    // An API key's spend limit covers what it orders: a key with less than
    // the job's most is refused before anything is reserved.
    let (_, small) = gateway
        .keys()
        .add("small", Some(neuron("0.0000001")))
        .await
        .unwrap();
    let refused = http
        .post(format!("{url}/fine_tuning/jobs"))
        .bearer_auth(&small)
        .json(&json!({
            "model": "SmolLM2-135M-Instruct",
            "training_file": file["id"],
            "hyperparameters": { "n_epochs": 3 },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429, "{:?}", refused.text().await);
    assert_eq!(
        chain
            .account(chain.wallet(), tune.provider)
            .await
            .unwrap()
            .escrow,
        neuron("0.1")
    );
    // A key without a limit orders it (the small one revoked: once keys
    // exist, every request needs an active one).
    let (_, app) = gateway.keys().add("app", None).await.unwrap();
    assert!(gateway.keys().revoke("small").await.unwrap());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {app}").parse().unwrap(),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();

    let job: Value = http
        .post(format!("{url}/fine_tuning/jobs"))
        .json(&json!({
            "model": "SmolLM2-135M-Instruct",
            "training_file": file["id"],
            "hyperparameters": { "n_epochs": 3 },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let name = job["id"].as_str().unwrap().to_owned();
    let id: zg_core::B256 = name["ftjob-".len()..].parse().unwrap();
    let reserved = neuron("0.1")
        - chain
            .account(chain.wallet(), tune.provider)
            .await
            .unwrap()
            .escrow;
    assert!(!reserved.is_zero());
    // The key is charged the job's most while it runs.
    assert_eq!(spent(&gateway, "app").await, reserved);
    tune.broker.shutdown().await.unwrap();

    let cancel = || {
        http.post(format!("{url}/fine_tuning/jobs/{name}/cancel"))
            .send()
    };
    let early = cancel().await.unwrap();
    assert!(!early.status().is_success());
    let body: Value = early.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("abandoned on chain from unix time"),
        "{body}"
    );
    assert_eq!(chain.job(id).await.unwrap().state, JobState::Training);

    let rules = chain.fine_tuning_rules().await.unwrap();
    market
        .chain
        .advance_time(rules.delivery_timeout)
        .await
        .unwrap();
    let late = cancel().await.unwrap();
    assert_eq!(late.status(), 200, "{:?}", late.text().await);
    let job: Value = late.json().await.unwrap();
    assert_eq!(job["status"], "cancelled", "{job:#}");
    assert_eq!(chain.job(id).await.unwrap().state, JobState::Abandoned);
    assert_eq!(
        chain
            .account(chain.wallet(), tune.provider)
            .await
            .unwrap()
            .escrow,
        neuron("0.1")
    );
    assert!(
        spent(&gateway, "app").await.is_zero(),
        "a job that cost nothing gives its key the charge back"
    );
}

/// What the gateway's API key `name` has spent.
async fn spent(gateway: &zg_gateway::Gateway, name: &str) -> U256 {
    let keys = gateway.keys().list().await.expect("the keys read");
    let key = keys.into_iter().find(|k| k.name == name);
    key.expect("the key exists").spent
}

/// A real broker with a fine-tuning service on the built-in model, listed
/// at the address of a proxy that meddles with adapter downloads.
struct Tune {
    broker: zg_provider::Running,
    provider: zg_core::Address,
    /// Adapter requests that asked for a range past byte 0.
    resumed: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    mode: Mode,
    downloads: Arc<AtomicUsize>,
    resumed: Arc<AtomicUsize>,
}

impl Tune {
    async fn start(market: &mut Market, mode: Mode) -> Tune {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let db = market.tempdir().join("broker.db");
        let mut plan = market
            .broker_plan(1, &format!("sqlite://{}", db.display()))
            .expect("dev account");
        plan.public_url = Some(format!("http://{}", listener.local_addr().expect("bound")));
        plan.fine_tuning = Some(FineTuningPlan {
            name: "tune".into(),
            model: "SmolLM2-135M-Instruct".into(),
            base_model: manifest().join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf"),
            price_per_token: "0.000000001".into(),
            work_dir: market.tempdir(),
            checkpoint_every: 1,
        });
        let broker = zg_devnet::start_broker(&plan).await.expect("broker starts");
        let resumed = Arc::new(AtomicUsize::new(0));
        let proxy = Proxy {
            upstream: broker.url(),
            mode,
            downloads: Arc::new(AtomicUsize::new(0)),
            resumed: resumed.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Tune {
            broker,
            provider: SigningKey::from_bytes(&market.chain.keys()[1])
                .expect("dev key")
                .address(),
            resumed,
        }
    }
}

async fn forward(
    axum::extract::State(p): axum::extract::State<Proxy>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::header;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut ask = reqwest::Client::new()
        .request(parts.method.clone(), format!("{}{path}", p.upstream))
        .body(body);
    for name in [header::CONTENT_TYPE, header::RANGE] {
        if let Some(v) = parts.headers.get(&name) {
            ask = ask.header(name, v);
        }
    }
    let answer = ask.send().await.expect("broker reachable");
    let status = answer.status();
    let mut out = axum::response::Response::builder().status(status.as_u16());
    for name in [header::CONTENT_TYPE, header::CONTENT_RANGE] {
        if let Some(v) = answer.headers().get(&name) {
            out = out.header(name, v);
        }
    }
    let mut bytes = answer.bytes().await.expect("broker answers").to_vec();
    let adapter = parts.uri.path().ends_with("/adapter") && status.is_success();
    if adapter
        && parts
            .headers
            .get(header::RANGE)
            .is_some_and(|r| r != "bytes=0-")
    {
        p.resumed.fetch_add(1, Ordering::SeqCst);
    }
    let body = if adapter && p.mode == Mode::Corrupt && !bytes.is_empty() {
        bytes[0] ^= 1;
        axum::body::Body::from(bytes)
    } else if adapter
        && p.mode == Mode::CutFirstDownload
        && p.downloads.fetch_add(1, Ordering::SeqCst) == 0
    {
        let half = bytes[..bytes.len() / 2].to_vec();
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            vec![Ok(half), Err(std::io::Error::other("cut"))];
        axum::body::Body::from_stream(futures::stream::iter(chunks))
    } else {
        axum::body::Body::from(bytes)
    };
    out.body(body).expect("response")
}
