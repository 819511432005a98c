//! `zg-serving dev` end to end, as a person runs it: the binary as a
//! subprocess, driven by the real `openai` Python client through the
//! gateway, then settled with the provider CLI, with the money on chain
//! checked against the receipts in the user's book.

#[path = "common/dev.rs"]
mod dev;

use dev::{
    Dev, bin, json_amount as amount, json_output, root, run_ok, terminate, wait_with_timeout,
};
use std::{process::Command, time::Duration};
use zg_core::{U256, parse_amount};

#[test]
fn dev_serves_the_openai_client_and_settles_what_the_receipts_say() {
    let root = root();
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), ".venv missing: run `make venv`");
    let data = std::env::temp_dir().join(format!("zg-dev-test-{}", std::process::id()));
    let (mut dev, banner) = Dev::start(&data);
    let env = banner.env();
    let gateway = banner.field("gateway ");
    let api_key = banner.field("api key ");
    let provider_config = banner.provider_config();

    let seen = json_output(
        Command::new(&python)
            .arg(root.join("crates/cli/tests/dev_openai.py"))
            .args([
                &gateway,
                &api_key,
                "SmolLM2-135M-Instruct.Q4_1",
                "all-MiniLM-L6-v2",
            ]),
    );
    assert!(
        !seen["chat"].as_str().unwrap_or_default().trim().is_empty(),
        "{seen}"
    );
    assert!(
        !seen["stream"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .is_empty(),
        "{seen}"
    );
    assert_eq!(seen["embedding_dim"], 384, "{seen}");
    assert_eq!(seen["tool_call"][0], "get_weather", "{seen}");
    assert_eq!(
        seen["structured"].as_array().map(Vec::len),
        Some(2),
        "{seen}"
    );
    assert!(seen["logprobs"].as_u64() > Some(0), "{seen}");

    let user =
        |args: &[&str]| json_output(bin().arg("user").arg("--json").args(args).envs(env.clone()));
    let services = user(&["services", "--kind", "chat"]);
    let provider = services[0]["provider"]
        .as_str()
        .expect("a listed chat service")
        .to_owned();
    user(&["fund", "--provider", &provider, "--amount", "1"]);
    let chat = run_ok(
        bin()
            .args(["user", "chat", "--model", "SmolLM2-135M-Instruct.Q4_1"])
            .args(["--max-tokens", "16", "Say hi"])
            .envs(env.clone()),
    );
    assert!(!chat.trim().is_empty());

    // The gateway acknowledges the last receipt once idle; then the provider settles.
    std::thread::sleep(Duration::from_secs(2));
    run_ok(bin().args(["provider", "settle", "--config", &provider_config]));
    let status = run_ok(bin().args(["provider", "status", "--config", &provider_config]));
    assert!(
        status.contains("smollm2-135m-instruct") && status.contains("users: 1"),
        "{status}"
    );

    let receipts = user(&["receipts"]);
    let receipts = receipts.as_array().expect("a list of receipts");
    assert_eq!(
        receipts.len(),
        7,
        "chat, stream, embeddings, tools, structured, completions and the CLI chat each have a receipt: {receipts:?}"
    );
    assert!(
        receipts.iter().all(|r| r["status"] == "paid"),
        "{receipts:?}"
    );
    let fees: U256 = receipts
        .iter()
        .map(|r| amount(&r["fee"]))
        .fold(U256::ZERO, |a, b| a + b);
    assert!(!fees.is_zero());
    let ledger = user(&["ledger"]);
    let escrow = &ledger["escrows"][0];
    assert_eq!(
        amount(&escrow["settled"]),
        fees,
        "settled on chain vs receipts: {ledger}"
    );
    assert_eq!(
        amount(&escrow["escrow"]) + fees,
        parse_amount("11").unwrap(),
        "{ledger}"
    );
    user(&["refund", "--provider", &provider, "--amount", "0.5"]);
    let ledger = user(&["ledger"]);
    assert_eq!(
        amount(&ledger["escrows"][0]["refundAmount"]),
        parse_amount("0.5").unwrap(),
        "{ledger}"
    );

    // `--network dev` finds the chain and the contract in dev's data directory.
    let by_name = |args: &[&str]| {
        json_output(
            bin()
                .args(args)
                .envs(env.clone())
                .env_remove("ZG_RPC_URL")
                .env_remove("ZG_CONTRACT")
                .env("ZG_DEV_DATA_DIR", &data),
        )
    };
    let info = by_name(&["chain", "info", "--json", "--network", "dev"]);
    let contract = &env
        .iter()
        .find(|(k, _)| k == "ZG_CONTRACT")
        .expect("the banner exports ZG_CONTRACT")
        .1;
    assert_eq!(info["chain_id"], 31337, "{info}");
    assert_eq!(
        info["contract"].as_str().map(str::to_lowercase),
        Some(contract.to_lowercase()),
        "{info}"
    );
    let by_network = by_name(&["user", "--json", "--network", "dev", "ledger"]);
    assert_eq!(by_network["escrows"], ledger["escrows"], "{by_network}");

    // SIGTERM stops everything cleanly.
    terminate(&dev.0);
    let status = wait_with_timeout(&mut dev.0, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "dev did not stop cleanly: {status:?}"
    );

    // A provider's own config starts from the commented example.
    let example = data.join("provider-example.toml");
    run_ok(bin().args(["provider", "init", "--config"]).arg(&example));
    let text = std::fs::read_to_string(&example).expect("init wrote the example");
    assert!(
        text.contains("[[services]]") && text.contains("upstream"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// `make demo`'s run: a provider that serves a requantized substitute under
/// the honest model's digest, at half the price, is audited on its first
/// answer, disputed by the gateway, found guilty by dev's two verifiers and
/// slashed; the honest provider's settlement still equals its receipts.
#[test]
fn demo_catches_the_cheater_and_slashes_its_stake() {
    let data = std::env::temp_dir().join(format!("zg-dev-cheater-{}", std::process::id()));
    let out = bin()
        .args([
            "dev",
            "--demo",
            "--cheater",
            "--fresh",
            "--port",
            "0",
            "--data-dir",
        ])
        .arg(&data)
        .current_dir(root())
        .env("RUST_LOG", "warn")
        .output()
        .expect("dev runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let last = stdout
        .lines()
        .find(|l| l.starts_with("demo ok: "))
        .unwrap_or_else(|| panic!("no demo line in:\n{stdout}"));
    let field = |name: &str| -> U256 {
        let value = last
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in {last}"));
        value.parse().expect("a number")
    };
    assert!(field("audits_failed") >= U256::from(1u64), "{last}");
    assert!(field("disputes_won") >= U256::from(1u64), "{last}");
    assert!(field("slashed_neuron") > U256::ZERO, "{last}");
    assert!(field("audits_passed") >= U256::from(2u64), "{last}");
    assert_eq!(
        field("settled_neuron"),
        field("provider_earned_neuron"),
        "{last}"
    );
    let _ = std::fs::remove_dir_all(&data);
}
