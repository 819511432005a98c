//! Embeddings on the real all-MiniLM-L6-v2, and `/v1/models`.

mod common;

use common::*;
use serde_json::{Value, json};

fn vectors(answer: &Value) -> Vec<Vec<f64>> {
    answer["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| {
            d["embedding"]
                .as_array()
                .expect("floats")
                .iter()
                .map(|x| x.as_f64().expect("float"))
                .collect()
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn related_sentences_are_closer_than_unrelated_ones() {
    let (status, answer) = post(
        "/v1/embeddings",
        &json!({
            "model": "all-MiniLM-L6-v2",
            "input": [
                "A man is playing a guitar.",
                "Someone is performing music on an instrument.",
                "The stock market fell sharply today.",
            ],
        }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let v = vectors(&answer);
    assert_eq!(v.len(), 3);
    for (i, x) in v.iter().enumerate() {
        assert_eq!(x.len(), 384);
        assert!((dot(x, x) - 1.0).abs() < 1e-4, "unit length");
        assert_eq!(answer["data"][i]["index"], i);
    }
    let related = dot(&v[0], &v[1]);
    let unrelated = dot(&v[0], &v[2]);
    assert!(
        related > unrelated + 0.2,
        "related {related}, unrelated {unrelated}"
    );
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 15);
}

#[tokio::test]
async fn single_string_and_base64_agree_with_the_list_form() {
    let (_, one) = post("/v1/embeddings", &json!({"input": "hello world"})).await;
    let v = &vectors(&one)[0];
    // sentence-transformers' all-MiniLM-L6-v2 gives "hello world" these first values.
    for (got, want) in v.iter().zip([-0.034477, 0.031023, 0.006735, 0.026109]) {
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    }
    // [CLS] hello world [SEP]
    assert_eq!(one["usage"]["prompt_tokens"], 4);
    let (_, b64) = post(
        "/v1/embeddings",
        &json!({"input": ["hello world"], "encoding_format": "base64"}),
    )
    .await;
    let encoded = b64["data"][0]["embedding"].as_str().expect("base64 string");
    let decoded = decode_base64(encoded);
    assert_eq!(decoded.len(), 384 * 4);
    for (i, want) in v.iter().enumerate() {
        let bytes: [u8; 4] = decoded[i * 4..i * 4 + 4].try_into().unwrap();
        assert!((f64::from(f32::from_le_bytes(bytes)) - want).abs() < 1e-6);
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64 char") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[tokio::test]
async fn models_lists_both_with_sha256() {
    let body: Value = client()
        .get(format!("{}/v1/models", engine().url))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(
        data[0]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(data[1]["id"], "all-MiniLM-L6-v2");
    assert_eq!(data[1]["kind"], "embeddings");
    assert_eq!(
        data[1]["sha256"],
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    );
}
