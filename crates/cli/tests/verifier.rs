//! `zg-serving verifier serve` as an operator runs it, against anvil with the
//! contract and disputes made from a real answer of the real engine: a
//! dispute of the honest answer is decided not guilty (the bond goes to the
//! provider), a dispute of the same answer edited after generation (signed
//! by the provider as edited) guilty (the stake is slashed and the service
//! marked failed), and /metrics counts both. Bad configs are clear errors.

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use zg_chain::{ChainClient, DeployParams, DisputeState};
use zg_core::{Prices, Service, SigningKey, U256, verifiability::ZG_LOGITS_V1};
use zg_devnet::DevChain;

/// Kills the node when the test ends, however it ends.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn decided(chain: &ChainClient, id: u64) -> DisputeState {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let state = chain.dispute(id).await.expect("dispute").state;
        if state != DisputeState::Open || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_votes_honest_answers_free_and_edited_ones_guilty() {
    let chain = DevChain::start().await.expect("anvil starts");
    let keys = chain.keys();
    let owner = ChainClient::deploy(chain.url(), &keys[0], DeployParams::default())
        .await
        .expect("deploys");
    let provider = owner.with_key(&keys[1]).expect("key");
    let challenger = owner.with_key(&keys[2]).expect("key");
    let verifier = SigningKey::from_bytes(&keys[3]).expect("key");
    let signer = SigningKey::random();
    let domain = owner.domain();

    let honest = common::real_evidence(provider.wallet(), "chat", &signer, &domain).await;
    let service = Service {
        provider: provider.wallet(),
        name: "chat".into(),
        kind: "chat".into(),
        url: "http://127.0.0.1:1/v1".into(),
        model: "SmolLM2-135M-Instruct.Q4_1".into(),
        model_digest: honest.receipt.receipt.model_digest,
        hardware: "cpu".into(),
        prices: Prices::new(U256::from(1u64), U256::from(2u64)),
        verifiability: ZG_LOGITS_V1.into(),
        signer: signer.address(),
        updated_at: 0,
        failed_at: 0,
    };
    let stake = owner.min_stake().await.expect("min stake");
    provider
        .add_or_update_service(&service, stake)
        .await
        .expect("listed");
    owner
        .set_verifier(verifier.address(), true)
        .await
        .expect("verifier registered");

    let dir = tempfile::tempdir().expect("tempdir");
    let models = common::model().parent().expect("models dir").to_path_buf();
    let port = free_port();
    let config = dir.path().join("verifier.toml");
    std::fs::write(
        &config,
        format!(
            "models_dir = {models:?}\nlisten = \"127.0.0.1:{port}\"\nthreads = 1\npoll_secs = 1\nfrom_block = 0\n"
        ),
    )
    .expect("config written");
    let bin = env!("CARGO_BIN_EXE_zg-serving");
    let _node = Node(
        Command::new(bin)
            .args(["verifier", "serve", "--config"])
            .arg(&config)
            .args(["--rpc-url", chain.url(), "--contract"])
            .arg(owner.contract_address().to_string())
            .env("ZG_PRIVATE_KEY", verifier.to_bytes().to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the node starts"),
    );

    let bond = owner.dispute_rules().await.expect("rules").bond;
    let (id, _) = challenger
        .open_dispute(&honest, bond)
        .await
        .expect("dispute opened");
    assert_eq!(decided(&owner, id).await, DisputeState::NotGuilty);
    assert_eq!(owner.balance_of(provider.wallet()).await.unwrap(), bond);
    assert_eq!(
        owner.stake_of(provider.wallet()).await.unwrap().stake,
        stake
    );

    let edited = common::edited(&honest, &signer, &domain);
    let (id, _) = challenger
        .open_dispute(&edited, bond)
        .await
        .expect("dispute opened");
    assert_eq!(decided(&owner, id).await, DisputeState::Guilty);
    let left = owner.stake_of(provider.wallet()).await.unwrap();
    assert!(left.stake < stake && left.open_disputes == 0, "{left:?}");
    let listed = owner
        .service(provider.wallet(), "chat")
        .await
        .unwrap()
        .expect("still listed");
    assert_ne!(listed.failed_at, 0, "the service is marked failed");

    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("metrics served")
        .text()
        .await
        .expect("text");
    for line in [
        "zg_verifier_verdicts_total{verdict=\"guilty\"} 1",
        "zg_verifier_verdicts_total{verdict=\"not_guilty\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing in:\n{metrics}");
    }
}

#[test]
fn bad_configs_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_zg-serving");
    let cases = [
        ("models_dir = 7\n", "verifier config"),
        ("listen = \"x\"\n", "models_dir"),
        ("models_dir = \"/no/such/dir\"\n", "is not a folder"),
        (
            "models_dir = \".\"\nthreads = 0\n",
            "threads must be at least 1",
        ),
        ("models_dir = \".\"\nbogus = 1\n", "bogus"),
    ];
    for (text, expected) in cases {
        let config = dir.path().join("verifier.toml");
        std::fs::write(&config, text).expect("written");
        let out = Command::new(bin)
            .args(["verifier", "serve", "--config"])
            .arg(&config)
            .env("ZG_PRIVATE_KEY", format!("0x{}", "11".repeat(32)))
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(
            err.contains(expected),
            "{text}: expected {expected:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let example = dir.path().join("example.toml");
    let out = Command::new(bin)
        .args(["verifier", "init", "--out"])
        .arg(&example)
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = std::fs::read_to_string(&example).expect("written");
    assert!(
        text.contains("models_dir") && text.contains("--add-verifier"),
        "{text}"
    );
}
