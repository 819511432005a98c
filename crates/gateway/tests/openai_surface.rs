//! The whole OpenAI surface through the gateway of a real marketplace (anvil
//! with the contracts, real brokers in front of the real engine on the real
//! model), driven by the real clients: `openai` for Python (sync and async)
//! and the official `openai` for Node. Each covers tools (plain and
//! streamed), both response formats, logprobs, n, completions, the
//! Responses API (plain, tools, schema, streamed), the
//! `provider` routing object, the `models` fallbacks, `usage.cost`, and the
//! errors a client maps (400, 401, 402, 404, 429). Then a provider that
//! lists no capabilities gets the plain requests and none of the others.

mod common;

use common::{Market, chat_body, engine, neuron, start_gateway};
use std::{path::PathBuf, process::Command, time::Duration};
use zg_core::{Address, U256};
use zg_gateway::{GatewayConfig, RankingPolicy};

/// What each client script prints `OK <client> <case>` for.
const CASES: [&str; 11] = [
    "tools",
    "tools_stream",
    "formats",
    "logprobs",
    "n",
    "completions",
    "responses",
    "responses_stream",
    "routing",
    "fallbacks",
    "errors",
];

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a client script to the end; returns its stdout, or fails with both outputs.
async fn run(program: PathBuf, script: PathBuf, args: Vec<String>) -> String {
    assert!(
        program.exists() || program.components().count() == 1,
        "{} is missing: run `make venv node-client`",
        program.display()
    );
    let shown = script.display().to_string();
    let output =
        tokio::task::spawn_blocking(move || Command::new(program).arg(script).args(args).output())
            .await
            .expect("join")
            .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Who answered a request made with API key `key` at `path` (under `/v1`).
async fn served_by(url: &str, key: &str, path: &str, body: &serde_json::Value) -> Address {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("gateway reachable");
    let provider = r.headers().get("x-zg-provider").cloned();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    provider
        .and_then(|p| p.to_str().ok()?.parse().ok())
        .expect("x-zg-provider")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_python_and_node_clients_use_the_whole_openai_surface_through_the_gateway() {
    let e = engine();
    let mut market = Market::start().await;
    let a = market
        .broker(1, &e.url, &e.model, e.digest, "0.000000001", "0.000000002")
        .await;
    let b = market
        .broker(3, &e.url, &e.model, e.digest, "0.0000000015", "0.000000003")
        .await;
    let (key, chain) = market.user(2, neuron("0.1"), &[a.address()]).await;
    // B holds too little for a 200 KB prompt's worst case: the 402 case.
    chain.deposit(neuron("0.0002")).await.expect("deposit");
    chain
        .fund(b.address(), neuron("0.0002"))
        .await
        .expect("fund");
    let config = GatewayConfig {
        // Price, not latency, decides between A and B on a busy test machine.
        ranking: RankingPolicy {
            latency_scale_ms: 1e9,
            failure_cooldown: Duration::from_secs(1),
        },
        refresh: Duration::from_secs(1),
        ..Default::default()
    };
    let (url, gateway, _payer) = start_gateway(&mut market, &key, chain, config).await;
    let (_, app_key) = gateway.keys().add("app", None).await.unwrap();
    let (_, small_key) = gateway
        .keys()
        .add("small", Some(neuron("0.000001")))
        .await
        .unwrap();
    let args = vec![
        url.clone(),
        e.model.clone(),
        app_key.clone(),
        small_key,
        a.address().to_string(),
        b.address().to_string(),
    ];

    let python = manifest().join("../../.venv/bin/python");
    let out = run(
        python,
        manifest().join("tests/openai_surface.py"),
        args.clone(),
    )
    .await;
    for tag in ["sync", "async"] {
        for case in CASES {
            assert!(
                out.contains(&format!("OK {tag} {case}\n")),
                "python {tag} {case}:\n{out}"
            );
        }
    }
    assert!(
        manifest().join("tests/node/node_modules/openai").is_dir(),
        "the Node client is missing: run `make node-client`"
    );
    let out = run(
        PathBuf::from("node"),
        manifest().join("tests/node/openai_surface.mjs"),
        args,
    )
    .await;
    for case in CASES {
        assert!(
            out.contains(&format!("OK node {case}\n")),
            "node {case}:\n{out}"
        );
    }

    // A cheaper provider that lists no capabilities gets the plain chat,
    // and none of the requests that need more.
    let plain_only = market
        .broker_with(
            4,
            &e.url,
            &e.model,
            e.digest,
            ("0.0000000005", "0.000000001"),
            |s| s.capabilities = Some(Vec::new()),
        )
        .await;
    let (_, wallet) = market.user(2, U256::ZERO, &[]).await;
    wallet.deposit(neuron("0.01")).await.expect("deposit");
    wallet
        .fund(plain_only.address(), neuron("0.01"))
        .await
        .expect("fund");
    // The gateway reads the registry again after `refresh`.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let plain = chat_body(&e.model, "Hi", 4);
    let chat = "/chat/completions";
    assert_eq!(
        served_by(&url, &app_key, chat, &plain).await,
        plain_only.address()
    );
    let mut tools = chat_body(&e.model, "Weather in Paris?", 40);
    tools["tools"] = serde_json::json!([{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]);
    tools["tool_choice"] = "required".into();
    assert_eq!(served_by(&url, &app_key, chat, &tools).await, a.address());
    let text = serde_json::json!({ "model": e.model, "prompt": "Once", "max_tokens": 4 });
    assert_eq!(
        served_by(&url, &app_key, "/completions", &text).await,
        a.address()
    );
    plain_only.running.shutdown().await.expect("shutdown");
}
