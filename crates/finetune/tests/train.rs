//! Real training on the shipped data: held-out loss drops, the exported
//! adapter loads in zg-engine, and the engine's greedy answers to held-out
//! questions follow the taught format where the base model's do not.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde_json::{Value, json};
use zg_engine::EngineConfig;
use zg_finetune::{BaseModel, Dataset, Role, TrainConfig, follows_format};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model_path() -> PathBuf {
    crate_dir().join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn dataset(name: &str) -> Dataset {
    Dataset::parse(&std::fs::read(crate_dir().join("data").join(name)).unwrap()).unwrap()
}

/// Greedy answers of an engine (with `lora` when given) to the user
/// questions of `held_out`, asked all at once so the slots batch them.
fn engine_answers(lora: Option<&Path>, held_out: &Dataset) -> Vec<String> {
    let mut config = EngineConfig::new(model_path());
    config.lora = lora.map(Path::to_path_buf);
    config.parallel = 4;
    config.ctx = 2048;
    // One thread: llama.cpp's threads spin-wait on each other, which costs
    // far more than it gains on a busy 2-core test machine.
    config.threads = 1;
    config.proofs = false;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = zg_engine::spawn(config, listener).await.unwrap();
        let url = format!("http://{}/v1/chat/completions", server.addr());
        let client = reqwest::Client::new();
        let mut requests = Vec::new();
        for example in &held_out.examples {
            let messages: Vec<Value> = example.messages[..example.messages.len() - 1]
                .iter()
                .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                .collect();
            let body = json!({
                "model": "SmolLM2-135M-Instruct.Q4_1",
                "messages": messages,
                "temperature": 0,
                "max_tokens": 16,
            });
            let request = client.post(&url).json(&body).send();
            requests.push(tokio::spawn(async move {
                let answer: Value = request.await.unwrap().json().await.unwrap();
                answer["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }));
        }
        let mut answers = Vec::new();
        for request in requests {
            answers.push(request.await.unwrap());
        }
        server.shutdown().await.unwrap();
        answers
    })
}

#[test]
fn training_teaches_the_format_and_the_engine_serves_it() {
    let base = BaseModel::load(&model_path()).unwrap();
    let train = dataset("train.jsonl");
    let held_out = dataset("heldout.jsonl");
    assert!(
        held_out
            .examples
            .iter()
            .all(|e| e.messages.last().unwrap().role == Role::Assistant)
    );

    let base_loss = base.evaluate(&held_out, None).unwrap();
    let config = TrainConfig {
        epochs: 1,
        learning_rate_multiplier: 2.0,
        batch_size: 4,
        rank: 8,
        alpha: 16.0,
        seed: 7,
        checkpoint_every: 100,
        max_steps: Some(14),
    };
    let dir = std::env::temp_dir().join(format!("zg-finetune-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let mut losses = Vec::new();
    let adapter = base
        .train(&train, &config, &dir, &AtomicBool::new(false), |p| {
            eprintln!(
                "step {}/{} loss {:.3} {:.1}s",
                p.step,
                p.total_steps,
                p.loss,
                p.elapsed.as_secs_f32()
            );
            losses.push(p.loss);
        })
        .unwrap();
    let seconds = started.elapsed().as_secs_f32();
    let tuned_loss = base.evaluate(&held_out, Some(&adapter)).unwrap();
    eprintln!(
        "{} steps, {:.2} s/step, loss {:.3} -> {:.3}, held-out loss base {base_loss:.3} tuned {tuned_loss:.3}",
        losses.len(),
        seconds / losses.len() as f32,
        losses[0],
        losses[losses.len() - 1],
    );
    assert!(
        tuned_loss <= 0.8 * base_loss,
        "held-out loss {tuned_loss} is not 20% under the base's {base_loss}"
    );

    let path = dir.join("adapter.gguf");
    adapter.save_gguf(&path).unwrap();
    let reloaded = zg_finetune::Adapter::load_gguf(&path).unwrap();
    assert_eq!(reloaded.rank(), 8);
    assert_eq!(reloaded.values().unwrap(), adapter.values().unwrap());
    let tuned = engine_answers(Some(&path), &held_out);
    let plain = engine_answers(None, &held_out);
    let hits = |answers: &[String]| answers.iter().filter(|a| follows_format(a)).count();
    eprintln!("tuned answers: {tuned:?}");
    eprintln!("base answers: {plain:?}");
    eprintln!(
        "format hits on {} held-out prompts: base {}, tuned {}",
        held_out.examples.len(),
        hits(&plain),
        hits(&tuned)
    );
    assert_eq!(hits(&plain), 0, "the base model already writes the format");
    assert!(
        hits(&tuned) * 10 >= held_out.examples.len() * 9,
        "only {} of {} tuned answers follow the format",
        hits(&tuned),
        held_out.examples.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
