//! `zg-serving chain` as an operator runs it: the real binary deploys to a
//! second anvil with a chain id of its own, reached by its URL only, from
//! a keystore; the network file it writes is what `chain info` and the
//! user commands read with `--network`. And the refusals: a preset's chain
//! id that the RPC contradicts, a name already taken, bad network files.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::path::Path;
use tokio::process::Command;
use zg_core::{SigningKey, parse_amount};
use zg_devnet::{DevChain, DevChainOptions};

const CHAIN_ID: u64 = 4242;

/// The binary with no network, chain or key settings from the environment.
fn bin(networks: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zg-serving"));
    for var in [
        "ZG_RPC_URL",
        "ZG_CONTRACT",
        "ZG_NETWORK",
        "ZG_PRIVATE_KEY",
        "ZG_KEYSTORE",
        "ZG_KEYSTORE_PASSWORD",
        "ZG_BOOK",
        "ZG_DEV_DATA_DIR",
    ] {
        command.env_remove(var);
    }
    command.env("ZG_NETWORKS_DIR", networks);
    command
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn run(command: &mut Command) -> Run {
    let out = command.output().await.unwrap();
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "{command:?} panicked: {}",
        run.stderr
    );
    run
}

async fn json_ok(command: &mut Command) -> Value {
    let run = run(command).await;
    assert!(run.ok, "{command:?} failed: {}", run.stderr);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{command:?} printed no JSON ({e}): {}", run.stdout))
}

/// A command that must fail; its error output.
async fn refused(command: &mut Command) -> String {
    let run = run(command).await;
    assert!(!run.ok, "{command:?} should have failed: {}", run.stdout);
    run.stderr
}

/// The number of transactions `address` has sent on the chain at `url`.
async fn nonce(url: &str, address: &str) -> u64 {
    let answer: Value = reqwest::Client::new()
        .post(url)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount", "params": [address, "latest"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hex = answer["result"].as_str().unwrap();
    u64::from_str_radix(hex.trim_start_matches("0x"), 16).unwrap()
}

/// A second chain, and a keystore (with its password file) of its dev key 0.
struct Setup {
    chain: DevChain,
    dir: tempfile::TempDir,
    deployer: SigningKey,
}

impl Setup {
    async fn start() -> Setup {
        let chain = DevChain::start_with(DevChainOptions {
            chain_id: CHAIN_ID,
            accounts: 3,
            state: None,
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("password"), "correct horse\n").unwrap();
        let deployer = SigningKey::from_bytes(&chain.keys()[0]).unwrap();
        let setup = Setup {
            chain,
            dir,
            deployer,
        };
        let imported = json_ok(
            setup
                .bin()
                .args(["keys", "--json", "import"])
                .arg(setup.keystore())
                .args(["--key-env", "ZG_TEST_DEPLOYER_KEY", "--password-file"])
                .arg(setup.password())
                .env("ZG_TEST_DEPLOYER_KEY", setup.chain.keys()[0].to_string()),
        )
        .await;
        assert_eq!(
            imported["address"],
            json!(setup.deployer.address()),
            "{imported}"
        );
        setup
    }

    fn networks(&self) -> std::path::PathBuf {
        self.dir.path().join("networks")
    }

    fn keystore(&self) -> std::path::PathBuf {
        self.dir.path().join("deployer.json")
    }

    fn password(&self) -> std::path::PathBuf {
        self.dir.path().join("password")
    }

    fn bin(&self) -> Command {
        bin(&self.networks())
    }

    /// `chain deploy` from the deployer's keystore, with `args` added.
    fn deploy(&self, args: &[&str]) -> Command {
        let mut command = self.bin();
        command
            .args(["chain", "deploy", "--key-file"])
            .arg(self.keystore())
            .arg("--password-file")
            .arg(self.password())
            .args(args);
        command
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_by_url_then_every_command_reaches_it_by_network_name() {
    let s = Setup::start().await;
    let url = s.chain.url().to_string();

    let deployed = json_ok(&mut s.deploy(&[
        "--json",
        "--rpc-url",
        &url,
        "--name",
        "testnet2",
        "--explorer-url",
        "https://explorer.example",
    ]))
    .await;
    let network = &deployed["network"];
    assert_eq!(network["chain_id"], json!(CHAIN_ID), "{deployed}");
    assert_eq!(network["rpc_url"], json!(url));
    assert_eq!(deployed["owner"], json!(s.deployer.address()));
    let contract = network["contract"].as_str().unwrap().to_string();
    let block = network["deployment_block"].as_u64().unwrap();
    assert!(block >= 1, "{deployed}");
    assert_eq!(
        deployed["explorer"],
        json!(format!(
            "https://explorer.example/address/{}",
            contract.parse::<zg_core::Address>().unwrap()
        ))
    );

    // The file holds what a later command needs, in TOML.
    let file = s.networks().join("testnet2.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(table["name"].as_str(), Some("testnet2"), "{text}");
    assert_eq!(table["chain_id"].as_integer(), Some(CHAIN_ID as i64));
    assert_eq!(table["contract"].as_str(), Some(contract.as_str()));
    assert_eq!(table["deployment_block"].as_integer(), Some(block as i64));

    let info = json_ok(
        s.bin()
            .args(["chain", "info", "--json", "--network", "testnet2"]),
    )
    .await;
    assert_eq!(info["chain_id"], json!(CHAIN_ID), "{info}");
    assert_eq!(info["contract"], json!(contract));
    assert_eq!(info["deployment_block"], json!(block));
    assert_eq!(info["owner"], json!(s.deployer.address()));
    assert_eq!(info["min_stake"], json!("0.1"));
    assert_eq!(info["lock_period"], json!(86_400));
    assert_eq!(info["code"], json!("this build's ZgServing"));
    let settings: Vec<&str> = info["owner_settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["setting"].as_str().unwrap())
        .collect();
    assert_eq!(
        settings,
        ["lock_period", "min_stake", "verifiers", "disputes", "owner"]
    );
    assert_eq!(
        (&info["verifiers"], &info["quorum"]),
        (&json!(0), &json!(0))
    );
    let text = run(s.bin().args(["chain", "info", "--network", "testnet2"])).await;
    assert!(text.ok && text.stdout.contains("4242"), "{}", text.stdout);

    // The owner changes a setting; info shows it.
    let set = run(s
        .bin()
        .args([
            "chain",
            "set",
            "--network",
            "testnet2",
            "--lock-period",
            "3600",
            "--add-verifier",
            "0x00000000000000000000000000000000000000aa",
            "--add-verifier",
            "0x00000000000000000000000000000000000000bb",
            "--quorum",
            "2",
            "--dispute-bond",
            "0.02",
            "--slash-bps",
            "2500",
        ])
        .arg("--key-file")
        .arg(s.keystore())
        .arg("--password-file")
        .arg(s.password()))
    .await;
    assert!(set.ok, "{}", set.stderr);
    let info = json_ok(
        s.bin()
            .args(["chain", "info", "--json", "--network", "testnet2"]),
    )
    .await;
    assert_eq!(info["lock_period"], json!(3600), "{info}");
    assert_eq!(
        (&info["verifiers"], &info["quorum"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(info["dispute_rules"]["bond"], json!("0.02"));
    assert_eq!(info["dispute_rules"]["slash_bps"], json!(2500));
    // Bounds are the contract's, and its refusal is said in words.
    let bad = run(s
        .bin()
        .args(["chain", "set", "--network", "testnet2", "--quorum", "3"])
        .arg("--key-file")
        .arg(s.keystore())
        .arg("--password-file")
        .arg(s.password()))
    .await;
    assert!(
        !bad.ok && bad.stderr.contains("quorum 3 is outside 1..=2"),
        "{}",
        bad.stderr
    );

    // A user reaches the deployment by name only.
    let user = |args: &[&str]| {
        let mut command = s.bin();
        command
            .args(["user", "--json", "--network", "testnet2"])
            .args(args)
            .env("ZG_PRIVATE_KEY", s.chain.keys()[1].to_string())
            .env("ZG_BOOK", s.dir.path().join("book.sqlite"));
        command
    };
    json_ok(&mut user(&["deposit", "--amount", "1.5"])).await;
    let ledger = json_ok(&mut user(&["ledger"])).await;
    let balance = parse_amount(ledger["balance"].as_str().unwrap()).unwrap();
    assert_eq!(balance, parse_amount("1.5").unwrap(), "{ledger}");

    // The name is taken: a second deployment under it is refused before
    // anything is sent; --force replaces the file with a new deployment.
    let deployer = s.deployer.address().to_string();
    let sent = nonce(&url, &deployer).await;
    let taken = refused(&mut s.deploy(&["--rpc-url", &url, "--name", "testnet2"])).await;
    assert!(
        taken.contains("exists") && taken.contains("--force"),
        "{taken}"
    );
    assert_eq!(nonce(&url, &deployer).await, sent, "nothing sent");
    let again = json_ok(&mut s.deploy(&["--json", "--network", "testnet2", "--force"])).await;
    assert_ne!(again["network"]["contract"], json!(contract), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preset_whose_chain_id_the_rpc_contradicts_is_refused() {
    let s = Setup::start().await;
    let url = s.chain.url().to_string();
    let deployer = s.deployer.address().to_string();

    // galileo is chain 16602; this RPC serves 4242: nothing is deployed.
    let wrong = refused(&mut s.deploy(&["--network", "galileo", "--rpc-url", &url])).await;
    assert!(
        wrong.contains("16602") && wrong.contains(&CHAIN_ID.to_string()),
        "{wrong}"
    );
    assert!(wrong.contains("nothing deployed"), "{wrong}");
    assert_eq!(nonce(&url, &deployer).await, 0, "no transaction sent");
    assert!(!s.networks().join("galileo.toml").exists());

    // The same check guards every command that reads a network.
    let deployed = json_ok(&mut s.deploy(&["--json", "--rpc-url", &url, "--name", "mine"])).await;
    let contract = deployed["network"]["contract"].as_str().unwrap();
    let mismatch = refused(s.bin().args([
        "chain",
        "info",
        "--network",
        "mainnet",
        "--rpc-url",
        &url,
        "--contract",
        contract,
    ]))
    .await;
    assert!(
        mismatch.contains("16661") && mismatch.contains("4242"),
        "{mismatch}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_network_files_and_names_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let networks = dir.path();
    let write = |name: &str, text: &str| std::fs::write(networks.join(name), text).unwrap();
    write("garbage.toml", "this is [not toml");
    write(
        "wrongtype.toml",
        "name = 3\nchain_id = 1\nrpc_url = \"http://x\"\n",
    );
    write(
        "missing.toml",
        "name = \"missing\"\nrpc_url = \"http://127.0.0.1:1\"\n",
    );
    write(
        "badaddress.toml",
        "name = \"b\"\nchain_id = 1\nrpc_url = \"http://127.0.0.1:1\"\ncontract = \"0x12\"\n",
    );
    write(
        "ftp.toml",
        "name = \"ftp\"\nchain_id = 1\nrpc_url = \"ftp://example.com\"\ncontract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n",
    );
    let info = |network: &str| {
        let mut command = bin(networks);
        command.args(["chain", "info", "--network", network]);
        command
    };
    for (network, expected) in [
        ("garbage", "garbage.toml is not a network"),
        ("wrongtype", "invalid type"),
        ("missing", "missing field `chain_id`"),
        ("badaddress", "contract = \"0x12\""),
        ("ftp", "not an http:// or https:// URL"),
        ("../etc/passwd", "expected 1 to 64 letters"),
        ("nowhere", "presets: galileo, mainnet, dev"),
        ("galileo", "chain deploy --network galileo"),
    ] {
        let error = refused(&mut info(network)).await;
        assert!(error.contains(expected), "{network}: {error}");
    }
    // Through a user command too, before any key is needed for the chain.
    let error = refused(
        bin(networks)
            .args(["user", "ledger", "--network", "garbage"])
            .env(
                "ZG_PRIVATE_KEY",
                SigningKey::random().to_bytes().to_string(),
            ),
    )
    .await;
    assert!(error.contains("garbage.toml is not a network"), "{error}");
}
