//! `make demo-finetune`'s run on `zg-serving dev`: the project's training
//! file uploaded through the gateway's OpenAI files API, a fine-tuning job
//! at the first provider, its events, the sealed delivery, the
//! acknowledgement and settlement on chain, then the tuned model (the
//! adapter the gateway decrypted, answered by the gateway with the engine
//! and the adapter) against the base model (through the marketplace) on
//! the held-out prompts; one `finetune ok:` line.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use zg_core::U256;
use zg_devnet::Stack;
use zg_finetune::{BaseModel, Dataset, Message, Role, follows_format};

/// The shipped data (crates/finetune/data): answers in a fixed format.
const TRAIN: &str = include_str!("../../../finetune/data/train.jsonl");
const HELDOUT: &str = include_str!("../../../finetune/data/heldout.jsonl");
/// Training must end within this.
const TRAIN_WITHIN: Duration = Duration::from_secs(480);
/// Output tokens of each held-out answer.
const ANSWER_TOKENS: u64 = 32;

pub(super) async fn run(stack: &Stack, model: &Path) -> Result<()> {
    let started = Instant::now();
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", stack.gateway_url);
    let provider = stack
        .providers
        .first()
        .context("dev started no provider")?
        .address;
    let user = stack.user.user();
    let earned_before = stack.owner.balance_of(provider).await?;

    println!("\n== upload the training file (OpenAI files API)");
    let form = reqwest::multipart::Form::new()
        .text("purpose", "fine-tune")
        .part(
            "file",
            reqwest::multipart::Part::bytes(TRAIN.as_bytes().to_vec()).file_name("train.jsonl"),
        );
    let file: Value = ok_json(
        http.post(api("/files"))
            .bearer_auth(&stack.api_key)
            .multipart(form)
            .send()
            .await?,
        "uploading the training file",
    )
    .await?;
    let file_id = file["id"].as_str().context("the file has no id")?;
    println!("{file_id}: {} bytes", file["bytes"]);

    println!("\n== create the job");
    let job: Value = ok_json(
        http.post(api("/fine_tuning/jobs"))
            .bearer_auth(&stack.api_key)
            .json(&json!({
                "model": stack.chat_model,
                "training_file": file_id,
                "suffix": "zg-format",
                "hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 2},
            }))
            .send()
            .await?,
        "creating the fine-tuning job",
    )
    .await?;
    let id = job["id"].as_str().context("the job has no id")?.to_owned();
    println!("{id}: {}", job["status"]);

    println!("\n== training (events as they come)");
    let job = until_done(&http, stack, &api(&format!("/fine_tuning/jobs/{id}"))).await?;
    ensure!(
        job["status"] == "succeeded",
        "the job ended {}: {}",
        job["status"],
        job["error"]
    );
    let events: Value = ok_json(
        http.get(api(&format!("/fine_tuning/jobs/{id}/events?limit=1000")))
            .bearer_auth(&stack.api_key)
            .send()
            .await?,
        "reading the job's events",
    )
    .await?;
    let mut losses: Vec<(u64, f64)> = events["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "metrics")
        .filter_map(|e| {
            Some((
                e["data"]["step"].as_u64()?,
                e["data"]["train_loss"].as_f64()?,
            ))
        })
        .collect();
    losses.sort_by_key(|(step, _)| *step);
    let (Some(first), Some(last)) = (losses.first(), losses.last()) else {
        bail!("the job reported no training steps: {events}");
    };
    let fee = amount(&job["zg"]["fee_neuron"]).context("the job names no fee")?;
    let adapter = PathBuf::from(
        job["zg"]["adapter_path"]
            .as_str()
            .context("the job names no adapter file")?,
    );
    let settled = stack.owner.balance_of(provider).await? - earned_before;
    let escrow = stack.owner.account(user, provider).await?.escrow;
    println!(
        "{}: {} steps, fee {fee} neuron, provider earned {settled} neuron, escrow left {escrow}; adapter {}",
        job["fine_tuned_model"],
        last.0,
        adapter.display()
    );

    println!("\n== held-out loss and format, base against tuned");
    let heldout = Dataset::parse(HELDOUT.as_bytes())?;
    let (loss_base, loss_tuned) = heldout_losses(model, &adapter, &heldout).await?;
    let prompts = prompts(&heldout);
    let base_hits = hits(
        &http,
        &api("/chat/completions"),
        &stack.api_key,
        &stack.chat_model,
        &prompts,
    )
    .await?;
    // The tuned model through the same gateway: it answers `ft:` models
    // on this machine with the decrypted adapter.
    let tuned_model = job["fine_tuned_model"]
        .as_str()
        .context("the job names no fine-tuned model")?;
    let tuned_hits = hits(
        &http,
        &api("/chat/completions"),
        &stack.api_key,
        tuned_model,
        &prompts,
    )
    .await?;

    let n = prompts.len();
    let line = format!(
        "job={id} steps={} loss_first={:.3} loss_last={:.3} heldout_loss_base={loss_base:.3} \
         heldout_loss_tuned={loss_tuned:.3} format_hits_base={base_hits}/{n} format_hits_tuned={tuned_hits}/{n} \
         fee_neuron={fee} settled_neuron={settled} seconds={}",
        last.0,
        first.1,
        last.1,
        started.elapsed().as_secs()
    );
    let good = f64::from(loss_tuned) <= 0.8 * f64::from(loss_base)
        && tuned_hits * 2 > n
        && tuned_hits > base_hits
        && fee == settled;
    if !good {
        bail!("finetune FAILED: {line}");
    }
    println!("\nfinetune ok: {line}");
    Ok(())
}

/// Polls the job until it ends, printing each new training step's loss.
async fn until_done(http: &reqwest::Client, stack: &Stack, url: &str) -> Result<Value> {
    let deadline = Instant::now() + TRAIN_WITHIN;
    let mut status = String::new();
    let mut shown = 0;
    loop {
        let job: Value = ok_json(
            http.get(url).bearer_auth(&stack.api_key).send().await?,
            "reading the job",
        )
        .await?;
        let now = job["status"].as_str().unwrap_or_default().to_owned();
        if now != status {
            println!("status {now}");
            status = now;
        }
        let events: Value = ok_json(
            http.get(format!("{url}/events?limit=1000"))
                .bearer_auth(&stack.api_key)
                .send()
                .await?,
            "reading the job's events",
        )
        .await?;
        let mut steps: Vec<(u64, u64, f64)> = events["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "metrics")
            .filter_map(|e| {
                let d = &e["data"];
                Some((
                    d["step"].as_u64()?,
                    d["total_steps"].as_u64()?,
                    d["train_loss"].as_f64()?,
                ))
            })
            .collect();
        steps.sort_by_key(|s| s.0);
        let since = shown;
        for (step, total, loss) in steps.iter().filter(|s| s.0 > since) {
            if *step == 1 || step.is_multiple_of(10) || step == total {
                println!("step {step}/{total} loss {loss:.3}");
            }
            shown = *step;
        }
        if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
            return Ok(job);
        }
        if Instant::now() > deadline {
            bail!("the job is still {status} after {TRAIN_WITHIN:?}: {job}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Mean loss per answer token of the held-out set, base and with the adapter.
async fn heldout_losses(model: &Path, adapter: &Path, heldout: &Dataset) -> Result<(f32, f32)> {
    let (model, adapter, heldout) = (model.to_path_buf(), adapter.to_path_buf(), heldout.clone());
    tokio::task::spawn_blocking(move || -> Result<(f32, f32)> {
        let base = BaseModel::load(&model)?;
        let tuned = zg_finetune::Adapter::load_gguf(&adapter)?;
        Ok((
            base.evaluate(&heldout, None)?,
            base.evaluate(&heldout, Some(&tuned))?,
        ))
    })
    .await?
}

/// Each held-out example without its answer: the chat to continue.
fn prompts(heldout: &Dataset) -> Vec<Value> {
    heldout
        .examples
        .iter()
        .map(|example| {
            let messages: Vec<&Message> = example
                .messages
                .iter()
                .take_while(|m| m.role != Role::Assistant)
                .collect();
            json!(
                messages
                    .iter()
                    .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                    .collect::<Vec<_>>()
            )
        })
        .collect()
}

/// How many greedy answers of `model` at `url` follow the taught format.
async fn hits(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    model: &str,
    prompts: &[Value],
) -> Result<usize> {
    let mut hits = 0;
    for messages in prompts {
        let answer: Value = ok_json(
            http.post(url)
                .bearer_auth(key)
                .json(&json!({
                    "model": model,
                    "messages": messages,
                    "max_tokens": ANSWER_TOKENS,
                    "temperature": 0,
                }))
                .send()
                .await?,
            "asking a held-out question",
        )
        .await?;
        let text = answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        hits += usize::from(follows_format(text));
    }
    Ok(hits)
}

fn amount(value: &Value) -> Option<U256> {
    value.as_str()?.parse().ok()
}

/// The JSON of a successful response, or an error with its body.
async fn ok_json(response: reqwest::Response, what: &str) -> Result<Value> {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{what}: the server answered {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: not JSON: {body}"))
}
