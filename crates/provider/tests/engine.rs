//! Paid chats, legacy completions and several choices end to end through
//! the real built-in engine on the real model, each receipt checked against
//! the registry on chain, exactly as a client would; the worst case that
//! admission reserves counts every choice.

mod common;

use common::*;
use serde_json::{Value, json};
use zg_core::{B256, U256, capability, fees::input_bound, keccak256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_chat_completions_and_choices_through_the_real_engine() {
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
    payer.owed = signed.receipt.owed;

    // The service lists what the engine's model card says it can do.
    let models: Value = reqwest::get(format!("{}/v1/models", broker.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = &models["data"][0];
    assert_eq!(listed["capabilities"], json!(capability::ALL), "{models}");
    assert_eq!(listed["verifiability"], "none");
    assert_eq!(listed["max_choices"], 8);

    // The legacy endpoint, plain: billed from its usage like chat.
    let body =
        json!({ "model": "chat", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0 });
    let c = payer.send("/v1/completions", &body).await;
    assert_eq!(c.status, 200, "{:?}", c.json);
    assert_eq!(c.json["object"], "text_completion");
    assert!(!c.json["choices"][0]["text"].as_str().unwrap().is_empty());
    let signed = c.receipt.expect("X-ZG-Receipt");
    check_receipt(&env, &signed, c.digest, &c.body).await;
    assert_billed(&signed.receipt, &c.json["usage"]);
    assert_eq!(signed.receipt.owed, payer.owed + signed.receipt.fee);
    payer.owed = signed.receipt.owed;

    // The legacy endpoint, streamed, the usage asked for and passed on.
    let body = json!({ "model": "chat", "prompt": "One, two,", "max_tokens": 6, "temperature": 0,
                       "stream": true, "stream_options": { "include_usage": true } });
    let cs = payer.send("/v1/completions", &body).await;
    assert_eq!(cs.status, 200);
    let text = String::from_utf8(cs.body.to_vec()).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v.get("usage").filter(|u| !u.is_null()).cloned())
        .expect("the usage chunk asked for");
    let signed = payer.receipt(cs.request_id.as_deref().unwrap()).await;
    check_receipt(&env, &signed, cs.digest, &cs.body).await;
    assert_billed(&signed.receipt, &usage);
    assert_eq!(signed.receipt.owed, payer.owed + signed.receipt.fee);
    payer.owed = signed.receipt.owed;

    // Two choices: the receipt bills the tokens of both. Each choice's
    // tokens are its log-probability entries, plus the end-of-generation
    // token of one that stopped (counted, not shown).
    let mut body = chat_body("chat", "Tell me about the sea.", 5);
    body["n"] = json!(2);
    body["logprobs"] = json!(true);
    body["temperature"] = json!(1.0);
    let two = payer.send("/v1/chat/completions", &body).await;
    assert_eq!(two.status, 200, "{:?}", two.json);
    let choices = two.json["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    let per_choice: u64 = choices
        .iter()
        .map(|c| {
            let shown = c["logprobs"]["content"].as_array().unwrap().len() as u64;
            shown + u64::from(c["finish_reason"] == "stop")
        })
        .sum();
    let signed = two.receipt.expect("X-ZG-Receipt");
    check_receipt(&env, &signed, two.digest, &two.body).await;
    assert_billed(&signed.receipt, &two.json["usage"]);
    assert_eq!(signed.receipt.output_tokens, U256::from(per_choice));
    assert!(
        per_choice > 5,
        "two choices of up to 5 tokens: {per_choice}"
    );
    payer.owed = signed.receipt.owed;

    // More choices than the service answers: refused before admission.
    let mut body = chat_body("chat", "Hi.", 4);
    body["n"] = json!(9);
    let refused = payer.send("/v1/chat/completions", &body).await;
    assert_eq!(refused.status, 400, "{:?}", refused.json);
    assert_eq!(refused.json["error"]["param"], "n");
    assert!(refused.receipt.is_none());

    // An escrow that covers one choice's worst case and not two's: the
    // reservation counts n.
    let one = chat_body("chat", "Hi.", 4);
    let mut two = one.clone();
    two["n"] = json!(2);
    let worst_one = U256::from(input_bound(serde_json::to_vec(&one).unwrap().len()))
        * U256::from(INPUT_PRICE)
        + U256::from(4 * OUTPUT_PRICE);
    let (key, _) = env.user(3, worst_one + U256::from(2 * OUTPUT_PRICE)).await;
    let mut short = Payer::new(key, &env, &broker.url());
    let over = short.send("/v1/chat/completions", &two).await;
    assert_eq!(over.status, 402, "{:?}", over.json);
    assert_eq!(code(&over), "insufficient_escrow");
    let fits = short.send("/v1/chat/completions", &one).await;
    assert_eq!(fits.status, 200, "{:?}", fits.json);

    broker.shutdown().await.unwrap();
    engine.shutdown().await.unwrap();
}

/// The receipt bills the upstream's `usage` at the service's prices.
fn assert_billed(receipt: &zg_core::Receipt, usage: &Value) {
    let input = usage["prompt_tokens"]
        .as_u64()
        .expect("usage.prompt_tokens");
    let output = usage["completion_tokens"]
        .as_u64()
        .expect("usage.completion_tokens");
    assert!(output > 0, "{usage}");
    assert_eq!(receipt.input_tokens, U256::from(input));
    assert_eq!(receipt.output_tokens, U256::from(output));
    assert_eq!(
        receipt.fee,
        U256::from(input * INPUT_PRICE + output * OUTPUT_PRICE)
    );
}
