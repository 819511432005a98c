//! A paid chat, a paid stream and paid embeddings end to end through the
//! real built-in engine on the real model, each receipt checked against the
//! registry on chain, exactly as a client would.

mod common;

use common::*;
use serde_json::json;
use zg_core::{B256, U256, keccak256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_chat_and_stream_through_the_real_engine() {
    let root = workspace_root();
    let mut engine_config =
        zg_engine::EngineConfig::new(root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    engine_config.threads = 2;
    engine_config.parallel = 2;
    engine_config.ctx = 2048;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let engine = zg_engine::spawn(engine_config, listener)
        .await
        .expect("engine starts (run `make model` first)");
    let card = engine.engine().models()[0].clone();
    let digest: B256 = format!("0x{}", card.sha256).parse().unwrap();

    let env = Env::start().await;
    let (db, _dir) = sqlite_url();
    let config = env.config(&db, &engine.base_url(), &card.id, digest, "1");
    let broker = env.broker(config).await;
    let (key, _) = env.user(2, U256::from(10u64).pow(U256::from(16u64))).await;
    let mut payer = Payer::new(key, &env, &broker.url());

    // Plain: the receipt rides in X-ZG-Receipt.
    let a = payer
        .send("/v1/chat/completions", &chat_body("chat", "Say hello.", 12))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let content = a
        .json
        .pointer("/choices/0/message/content")
        .and_then(|c| c.as_str())
        .unwrap();
    assert!(!content.is_empty());
    let signed = a.receipt.expect("X-ZG-Receipt");
    check_receipt(&env, &signed, a.digest, &a.body).await;
    let usage = &a.json["usage"];
    assert_eq!(
        signed.receipt.input_tokens,
        U256::from(usage["prompt_tokens"].as_u64().unwrap())
    );
    assert_eq!(
        signed.receipt.output_tokens,
        U256::from(usage["completion_tokens"].as_u64().unwrap())
    );
    assert!(signed.receipt.output_tokens <= U256::from(12u64));
    assert_eq!(signed.receipt.owed, signed.receipt.fee);
    payer.owed = signed.receipt.owed;

    // Stream: unchanged SSE for a stock client, receipt by id.
    let body = json!({ "model": "chat", "messages": [{ "role": "user", "content": "Count to three." }], "max_tokens": 10, "stream": true });
    let s = payer.send("/v1/chat/completions", &body).await;
    assert_eq!(s.status, 200);
    let text = String::from_utf8(s.body.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(
        !text.contains("\"prompt_tokens\""),
        "usage stripped when not asked for"
    );
    let signed = payer.receipt(s.request_id.as_deref().unwrap()).await;
    check_receipt(&env, &signed, s.digest, &s.body).await;
    let chunks = text.matches("\"content\":\"").count() as u64;
    assert!(
        signed.receipt.output_tokens >= U256::from(1u64)
            && signed.receipt.output_tokens <= U256::from(chunks.max(1))
    );
    assert!(signed.receipt.input_tokens > U256::ZERO);
    assert_eq!(signed.receipt.owed, payer.owed + signed.receipt.fee);
    assert_eq!(signed.receipt.response_digest, keccak256(&s.body));

    broker.shutdown().await.unwrap();
    engine.shutdown().await.unwrap();
}
