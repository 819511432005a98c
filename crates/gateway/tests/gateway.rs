//! The gateway through real parts: anvil with the contracts, real brokers
//! (zg-provider) in front of the real engine on the real model, and the real
//! `openai` Python client.

mod common;

use common::{Market, chat_body, engine, eventually, neuron, post, served_by, start_gateway};
use std::{process::Command, time::Duration};
use zg_core::{Prices, U256};
use zg_gateway::{GatewayConfig, RankingPolicy};

fn venv_python() -> std::path::PathBuf {
    let python =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `make venv`",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openai_python_client_gets_a_paid_verified_chat_and_stream_through_the_gateway() {
    let e = engine();
    let mut market = Market::start().await;
    let provider = market
        .broker(1, &e.url, &e.model, e.digest, "0.000000001", "0.000000002")
        .await;
    let (key, chain) = market.user(2, neuron("0.1"), &[provider.address()]).await;
    let (url, _gateway, payer) =
        start_gateway(&mut market, &key, chain, GatewayConfig::default()).await;

    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let (url2, model) = (url.clone(), e.model.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(venv_python())
            .arg(script)
            .args([&url2, &model, "any-key"])
            .output()
    })
    .await
    .expect("join")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "openai client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |tag: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    assert!(!line("PLAIN").is_empty(), "plain answer: {stdout}");
    assert!(!line("STREAM").is_empty(), "streamed answer: {stdout}");

    // Both answers were paid for after their receipts passed every check...
    let book = payer.book().clone();
    assert!(
        eventually(async || book.receipts(None, false, 10).await.unwrap().len() == 2).await,
        "two receipts in the book"
    );
    let receipts = book.receipts(None, false, 10).await.unwrap();
    assert!(
        receipts
            .iter()
            .all(|r| r.status == "paid" && !r.fee.is_zero()),
        "{receipts:?}"
    );
    let stream_usage = receipts[0].output_tokens;
    assert!(stream_usage > U256::ZERO);
    // ...and the user's tally agrees with what the broker says it is owed.
    let owed: U256 = receipts.iter().map(|r| r.fee).sum();
    let account = book.tab(provider.address()).await.unwrap();
    assert_eq!(account.owed, owed);
    let statement =
        zg_client::recovery::statement(&payer, &provider.running.url(), provider.address())
            .await
            .unwrap();
    assert_eq!(
        statement.verify(provider.signer.address()).unwrap().owed,
        owed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cheaper_provider_is_chosen_until_it_dies_then_the_gateway_fails_over() {
    let e = engine();
    let mut market = Market::start().await;
    let cheap = market
        .broker(1, &e.url, &e.model, e.digest, "0.000000001", "0.000000002")
        .await;
    let dear = market
        .broker(3, &e.url, &e.model, e.digest, "0.000000002", "0.000000004")
        .await;
    let (key, chain) = market
        .user(4, neuron("0.1"), &[cheap.address(), dear.address()])
        .await;
    let config = GatewayConfig {
        // Latency must not outweigh a 2x price difference on a busy test machine.
        ranking: RankingPolicy {
            latency_scale_ms: 1e9,
            failure_cooldown: Duration::from_secs(60),
        },
        ..Default::default()
    };
    let (url, gateway, _payer) = start_gateway(&mut market, &key, chain, config).await;
    let body = chat_body(&e.model, "Say yes.", 4);

    for _ in 0..2 {
        let r = post(&url, &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            served_by(&r),
            cheap.address(),
            "the cheaper provider is chosen"
        );
        assert_eq!(r.headers()["x-zg-receipt-status"], "paid");
    }

    let cheap_address = cheap.address();
    cheap.running.shutdown().await.expect("shutdown");
    let r = post(&url, &body).await;
    assert_eq!(r.status(), 200, "failed over before the first byte");
    assert_eq!(served_by(&r), dear.address());
    let standing = gateway.ranking().standings();
    let cheap_standing = standing
        .iter()
        .find(|s| s.provider == cheap_address)
        .expect("measured");
    assert!(
        cheap_standing.cooling && cheap_standing.failures_in_a_row == 1,
        "{standing:?}"
    );

    // While it cools down the dead provider is not even tried first.
    let r = post(&url, &body).await;
    assert_eq!(served_by(&r), dear.address());
    let again = gateway.ranking().standings();
    assert_eq!(
        again
            .iter()
            .find(|s| s.provider == cheap_address)
            .unwrap()
            .failures_in_a_row,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_key_spend_limit_holds_under_concurrent_requests() {
    let e = engine();
    let mut market = Market::start().await;
    let provider = market
        .broker(1, &e.url, &e.model, e.digest, "0.000000001", "0.000000002")
        .await;
    let (key, chain) = market.user(5, neuron("0.1"), &[provider.address()]).await;
    let (url, gateway, payer) =
        start_gateway(&mut market, &key, chain, GatewayConfig::default()).await;
    let body = chat_body(&e.model, "Count to three.", 8);
    let bytes = serde_json::to_vec(&body).unwrap().len();
    // Worst case of one request, by the rule the broker and the gateway share.
    let prices = Prices::new(neuron("0.000000001"), neuron("0.000000002"));
    let worst = prices.worst_case(bytes, 8);
    let limit = worst * U256::from(3u64);
    let (_, secret) = gateway.keys().add("app", Some(limit)).await.unwrap();
    let (_, other) = gateway.keys().add("other", None).await.unwrap();

    let unauthorized = post(&url, &body).await;
    assert_eq!(unauthorized.status(), 401, "keys exist, so one is needed");

    let client = reqwest::Client::new();
    let requests = (0..8).map(|_| {
        client
            .post(format!("{url}/chat/completions"))
            .bearer_auth(&secret)
            .json(&body)
            .send()
    });
    let answers = futures::future::join_all(requests).await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    // Eight worst cases at once can't all be held against a limit of three.
    assert!(ok >= 1 && limited >= 1, "{statuses:?}");
    assert_eq!(ok + limited, 8, "{statuses:?}");

    let book = payer.book().clone();
    assert!(eventually(async || book.receipts(None, false, 20).await.unwrap().len() == ok).await);
    let spent = gateway
        .keys()
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "app")
        .unwrap()
        .spent;
    let paid: U256 = book
        .receipts(None, false, 20)
        .await
        .unwrap()
        .iter()
        .map(|r| r.fee)
        .sum();
    assert_eq!(spent, paid, "the key is charged exactly the receipts' fees");
    assert!(spent <= limit);

    let r = client
        .post(format!("{url}/chat/completions"))
        .bearer_auth(&other)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "another key of the same wallet is not limited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_refusals_are_json_in_openais_shape() {
    let mut market = Market::start().await;
    let (key, chain) = market.user(6, neuron("0.1"), &[]).await;
    let (url, _gateway, _payer) =
        start_gateway(&mut market, &key, chain, GatewayConfig::default()).await;
    let client = reqwest::Client::new();
    let refusals = [
        client.get(format!("{url}/nowhere")),
        client.get(format!("{url}/chat/completions")),
        client
            .post(format!("{url}/chat/completions"))
            .body(vec![b' '; 9 * 1024 * 1024]),
    ];
    let mut got = Vec::new();
    for request in refusals {
        let r = zg_devnet::send_past_resets(request).await.unwrap();
        let status = r.status().as_u16();
        let json: serde_json::Value = r.json().await.unwrap_or_default();
        assert!(json.pointer("/error/message").is_some(), "{json}");
        got.push((
            status,
            json["error"]["code"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let expected = [
        (404, "not_found"),
        (405, "method_not_allowed"),
        (413, "request_too_large"),
    ];
    assert_eq!(got, expected.map(|(s, c)| (s, c.to_owned())));
}
