//! TLS end to end with a self-made CA: the broker serves HTTPS from `[tls]`
//! and forwards to an https upstream it trusts only through `extra_ca`.
// Test helpers: a panic here is the failure message.
#![allow(clippy::unwrap_used)]

mod common;

use axum::{Json, Router, routing::post};
use common::*;
use serde_json::json;
use std::path::Path;
use zg_core::U256;
use zg_provider::{TlsConfig, TlsListener};

/// A CA, and a certificate it signed for localhost and 127.0.0.1; PEM files
/// `ca.pem`, `cert.pem`, `key.pem` in `dir`.
fn make_ca_and_cert(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
}

/// A fixed-answer chat upstream served over HTTPS with `dir`'s certificate.
async fn https_upstream(dir: &Path) -> std::net::SocketAddr {
    let tls = TlsConfig {
        cert: Some(dir.join("cert.pem")),
        key: Some(dir.join("key.pem")),
        extra_ca: vec![],
    };
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            Json(json!({
                "id": "c1", "object": "chat.completion", "created": 1, "model": "scripted",
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": "over tls" }, "finish_reason": "stop" }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 }
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = TlsListener::new(listener, tls.acceptor().unwrap().unwrap()).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_serves_https_and_forwards_to_an_https_upstream_it_trusts_by_extra_ca() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    make_ca_and_cert(dir.path());
    let upstream = https_upstream(dir.path()).await;
    let (db, _db_dir) = sqlite_url();
    // The same broker config twice: with [tls] and extra_ca, then without.
    let upstream_url = format!("https://localhost:{}/v1", upstream.port());
    let config_text = |db: &str| {
        BrokerPlan {
            listen: "127.0.0.1:0".into(),
            ..env.plan(db, &upstream_url, "scripted", Default::default(), "1")
        }
        .toml()
    };
    let text = config_text(&db);
    let d = dir.path().display();
    let with_tls = format!(
        "{text}\n[tls]\ncert = \"{d}/cert.pem\"\nkey = \"{d}/key.pem\"\nextra_ca = [\"{d}/ca.pem\"]\n"
    );
    let config = zg_provider::Config::parse(&with_tls, "test", std::iter::empty()).unwrap();
    let broker = env.broker(config).await;
    assert!(broker.url().starts_with("https://"), "{}", broker.url());
    let base = broker.url().replace("127.0.0.1", "localhost");

    let (key, _) = env.user(2, U256::from(10u64).pow(U256::from(16u64))).await;
    let mut payer = Payer::new(key, &env, &base);
    // A client that trusts only webpki's roots refuses the broker's certificate.
    let refused = payer.http.get(format!("{base}/v1/models")).send().await;
    assert!(
        refused.is_err(),
        "a self-made CA must not be trusted by default"
    );

    let ca =
        reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.pem")).unwrap()).unwrap();
    payer.http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let answer = payer
        .send("/v1/chat/completions", &chat_body("scripted", "hi", 8))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(
        answer.json.pointer("/choices/0/message/content"),
        Some(&json!("over tls"))
    );
    let receipt = answer.receipt.expect("a signed receipt over https");
    check_receipt(&env, &receipt, answer.digest, &answer.body).await;
    broker.shutdown().await.unwrap();

    // Without the extra CA the broker does not trust the upstream: the
    // request fails as the upstream's failure, and costs nothing.
    let (db, _db_dir2) = sqlite_url();
    let text = config_text(&db);
    let config = zg_provider::Config::parse(&text, "test", std::iter::empty()).unwrap();
    let broker = env.broker(config).await;
    let mut payer = Payer::new(payer.key.clone(), &env, &broker.url());
    let answer = payer
        .send("/v1/chat/completions", &chat_body("scripted", "hi", 8))
        .await;
    assert_eq!(
        (answer.status, code(&answer)),
        (502, "upstream_failed"),
        "{}",
        answer.json
    );
    broker.shutdown().await.unwrap();
}

/// An https front of anvil (TLS ends here, bytes go on to anvil) with
/// `dir`'s certificate: a chain RPC behind a private CA.
async fn https_rpc(dir: &Path, anvil: &str) -> String {
    let acceptor = TlsConfig {
        cert: Some(dir.join("cert.pem")),
        key: Some(dir.join("key.pem")),
        extra_ca: vec![],
    }
    .acceptor()
    .unwrap()
    .unwrap();
    let anvil = anvil.strip_prefix("http://").unwrap().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, anvil) = (acceptor.clone(), anvil.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut upstream = tokio::net::TcpStream::connect(anvil).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    format!("https://localhost:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_rpc_behind_a_private_ca_is_trusted_by_extra_ca() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    make_ca_and_cert(dir.path());
    let rpc = https_rpc(dir.path(), env.chain.url()).await;
    let upstream = format!("http://{}/v1", scripted_upstream().await);
    let config_text = |db: &str| {
        BrokerPlan {
            rpc_url: rpc.to_string(),
            ..env.plan(db, &upstream, "scripted", Default::default(), "1")
        }
        .toml()
    };

    // Without the CA the broker can't reach the chain, and says so.
    let (db, _db_dir) = sqlite_url();
    let config = zg_provider::Config::parse(&config_text(&db), "test", std::iter::empty()).unwrap();
    assert_eq!(config.chain.rpc_url, rpc, "the RPC is the https front");
    let refused = match zg_provider::Broker::open(config).await {
        Ok(_) => panic!("an RPC behind a self-made CA must not be trusted by default"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains(&rpc), "{refused}");

    // With it in extra_ca: the broker starts (registry sync over https),
    // serves a paid request (escrow read from chain) and settles it.
    let d = dir.path().display();
    let text = format!("{}\n[tls]\nextra_ca = [\"{d}/ca.pem\"]\n", config_text(&db));
    let config = zg_provider::Config::parse(&text, "test", std::iter::empty()).unwrap();
    let broker = env.broker(config).await;
    let (key, _) = env.user(2, U256::from(10u64).pow(U256::from(16u64))).await;
    let mut payer = Payer::new(key, &env, &broker.url());
    let answer = payer
        .send("/v1/chat/completions", &chat_body("scripted", "hi", 8))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let fee = answer.receipt.expect("a receipt").receipt.fee;
    payer.owed += fee;
    let ack = payer
        .send("/v1/chat/completions", &chat_body("scripted", "hi", 8))
        .await;
    assert_eq!(ack.status, 200, "{}", ack.json);
    let round = broker.broker().settler().settle_now().await.unwrap();
    assert_eq!((round.settled, round.paid), (1, fee), "{round:?}");
    broker.shutdown().await.unwrap();
}
