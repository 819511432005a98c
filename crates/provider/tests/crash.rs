//! kill -9 of the real `zg-serving provider serve` process under load, at
//! random points, then a restart on the same SQLite file: every answer a
//! client got is on record with the same receipt, no request is charged
//! twice (what a user owes is exactly the sum of the charged fees), nothing
//! stays reserved, and settlement afterwards collects every voucher.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use zg_core::{U256, headers::SignedReceipt};

fn binary() -> PathBuf {
    let root = workspace_root();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "-q", "-p", "zg-serving", "--bin", "zg-serving"])
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building zg-serving failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target.join("debug/zg-serving")
}

fn spawn(bin: &Path, config: &Path) -> Child {
    Command::new(bin)
        .args(["provider", "serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("zg-serving starts")
}

async fn wait_healthy(url: &str) {
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{url}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("broker at {url} never became healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_and_restart_loses_nothing() {
    let bin = tokio::task::spawn_blocking(binary).await.unwrap();
    let env = Env::start().await;
    let upstream = scripted_upstream().await;
    let (db, dir) = sqlite_url();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let text = BrokerPlan {
        listen: listen.clone(),
        ..env.plan(
            &db,
            &format!("http://{upstream}/v1"),
            "scripted",
            Default::default(),
            "1",
        )
    }
    .toml();
    let config_path = dir.path().join("provider.toml");
    std::fs::write(&config_path, text).unwrap();

    let mut users = Vec::new();
    for index in 2..6 {
        users.push(
            env.user(index, U256::from(10u64).pow(U256::from(16u64)))
                .await
                .0,
        );
    }
    // Every answer the clients got, with its request id.
    let got: Arc<Mutex<Vec<(String, SignedReceipt)>>> = Arc::default();
    let mut tallies: Vec<U256> = vec![U256::ZERO; users.len()];

    for round in 0..3 {
        let mut child = spawn(&bin, &config_path);
        wait_healthy(&url).await;
        let mut tasks = Vec::new();
        for (i, key) in users.iter().enumerate() {
            let mut payer = Payer::new(key.clone(), &env, &url);
            payer.owed = tallies[i];
            let got = got.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let bytes = serde_json::to_vec(&chat_body("chat", "hi", 8)).unwrap();
                    let (h, _) = payer.headers(&bytes, payer.owed);
                    let mut request = payer
                        .http
                        .post(format!("{}/v1/chat/completions", payer.base))
                        .body(bytes);
                    for (n, v) in h.encode() {
                        request = request.header(n, v);
                    }
                    let Ok(response) = request.send().await else {
                        return payer.owed;
                    };
                    if response.status() != 200 {
                        return payer.owed;
                    }
                    let id = response
                        .headers()
                        .get("x-zg-request-id")
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_string();
                    let receipt = SignedReceipt::from_header(
                        response
                            .headers()
                            .get("x-zg-receipt")
                            .unwrap()
                            .to_str()
                            .unwrap(),
                    )
                    .unwrap();
                    if response.bytes().await.is_err() {
                        return payer.owed;
                    }
                    payer.owed = receipt.receipt.owed;
                    got.lock().unwrap().push((id, receipt));
                }
            }));
        }
        let pause = 300 + (rand::random::<u64>() % 1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        child.kill().expect("kill -9");
        child.wait().unwrap();
        for (i, t) in tasks.into_iter().enumerate() {
            tallies[i] = t.await.unwrap();
        }
        eprintln!(
            "round {round}: killed after {pause} ms, {} answers so far",
            got.lock().unwrap().len()
        );
    }

    // Restart and check the books.
    let mut child = spawn(&bin, &config_path);
    wait_healthy(&url).await;
    let http = reqwest::Client::new();
    let got = got.lock().unwrap().clone();
    assert!(got.len() > 10, "load ran: {} answers", got.len());
    for (id, receipt) in &got {
        let stored: SignedReceipt = http
            .get(format!("{url}/v1/receipts/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            &stored, receipt,
            "answer {id} is on record with the same receipt"
        );
    }
    let path = db.strip_prefix("sqlite://").unwrap();
    let sql = rusqlite::Connection::open(path).unwrap();
    let text = |query: &str, user: &str| -> Vec<Option<String>> {
        let mut stmt = sql.prepare(query).unwrap();
        stmt.query_map([user], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let amount = |t: &Option<String>| {
        t.as_deref()
            .map(|t| U256::from_str_radix(t, 10).unwrap())
            .unwrap_or_default()
    };
    let mut newest = Vec::new();
    for key in &users {
        let user = format!("{:#x}", key.address());
        let charged = text(
            "SELECT o.fee FROM outcomes o JOIN requests q ON q.seq = o.request \
             WHERE q.user_addr = unhex(substr(?1, 3)) AND o.state = 'charged'",
            &user,
        )
        .iter()
        .fold(U256::ZERO, |t, f| t + amount(f));
        let owed = text("SELECT owed FROM accounts WHERE user_addr = ?1", &user);
        let reserved = text("SELECT reserved FROM accounts WHERE user_addr = ?1", &user);
        assert_eq!(
            amount(&owed[0]),
            charged,
            "owed is exactly the sum of charges: none twice"
        );
        assert_eq!(
            reserved[0].as_deref(),
            Some("0"),
            "nothing left reserved after the restart"
        );
        let mine: Vec<_> = got
            .iter()
            .filter(|(_, r)| r.receipt.user == key.address())
            .collect();
        let max_owed = mine
            .iter()
            .map(|(_, r)| r.receipt.owed)
            .max()
            .unwrap_or_default();
        assert!(max_owed <= charged);
        newest.push(amount(
            &text(
                "SELECT cumulative FROM accounts WHERE user_addr = ?1",
                &user,
            )[0],
        ));
    }
    drop(sql);

    // Settle through the CLI: every user's newest voucher is paid.
    let out = Command::new(&bin)
        .args(["provider", "settle", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, key) in users.iter().enumerate() {
        let account = env
            .deployer
            .account(key.address(), env.provider())
            .await
            .unwrap();
        assert_eq!(
            account.settled, newest[i],
            "the newest stored voucher of every user is settled"
        );
        assert!(
            newest[i] <= tallies[i],
            "no voucher above what the client signed"
        );
    }
    let status = Command::new(&bin)
        .args(["provider", "status", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("earnings"));
    child.kill().unwrap();
    child.wait().unwrap();
}
