//! `zg-serving user chat`: one prompt or an interactive conversation with a
//! chat service, streamed to the terminal; each answer's receipt is checked
//! and acknowledged before the next prompt.

use super::{ChainArgs, Out};
use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use zg_client::{AckPolicy, Payer, ServiceFilter, find_services};
use zg_core::{Address, Service, format_amount};

#[derive(Args)]
pub(super) struct ChatArgs {
    /// Model name as listed (`zg-serving user services --kind chat`).
    #[arg(long)]
    model: String,
    /// Use this provider; by default the cheapest listing the model.
    #[arg(long)]
    provider: Option<Address>,
    #[arg(long, default_value_t = 256)]
    max_tokens: u64,
    /// The prompt; without one, read prompts from stdin until EOF.
    prompt: Vec<String>,
}

pub(super) async fn chat(c: &ChainArgs, a: ChatArgs, out: Out) -> anyhow::Result<()> {
    let session = c.session().await?;
    let filter = ServiceFilter {
        model: Some(a.model.clone()),
        kind: Some("chat".into()),
        only: a.provider.into_iter().collect(),
        ..Default::default()
    };
    let services = find_services(&session.chain, &filter).await?;
    let Some(service) = services.into_iter().next() else {
        bail!(
            "no provider lists chat model {:?}: see `zg-serving user services --kind chat`",
            a.model
        );
    };
    let payer = c.payer(&session, AckPolicy::Immediate).await?;
    let mut history: Vec<Value> = Vec::new();
    if !a.prompt.is_empty() {
        return turn(
            &payer,
            &service,
            &mut history,
            a.prompt.join(" "),
            a.max_tokens,
            out,
        )
        .await;
    }
    eprintln!(
        "chatting with {} at {} (Ctrl-D to end)",
        service.model, service.provider
    );
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("reading stdin")? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        turn(
            &payer,
            &service,
            &mut history,
            line.trim().to_owned(),
            a.max_tokens,
            out,
        )
        .await?;
    }
}

async fn turn(
    payer: &Payer,
    service: &Service,
    history: &mut Vec<Value>,
    prompt: String,
    max_tokens: u64,
    out: Out,
) -> anyhow::Result<()> {
    history.push(json!({ "role": "user", "content": prompt }));
    let body = json!({ "model": service.model, "messages": history, "stream": true, "max_tokens": max_tokens });
    let answer = payer
        .send_stream(
            service,
            "/v1/chat/completions",
            serde_json::to_vec(&body)?.into(),
        )
        .await?;
    let mut text = String::new();
    let mut pending = String::new();
    let mut body = answer.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the stream broke off")?;
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(data.trim()) else {
                continue;
            };
            if let Some(piece) = event["choices"][0]["delta"]["content"].as_str() {
                text.push_str(piece);
                if !out.json {
                    print!("{piece}");
                    std::io::stdout().flush().ok();
                }
            }
        }
    }
    if !out.json {
        println!();
    }
    history.push(json!({ "role": "assistant", "content": text }));
    let receipt = answer
        .receipt
        .await
        .context("the receipt check was interrupted")?;
    match receipt {
        Ok(paid) => {
            let r = &paid.signed.receipt;
            if out.json {
                println!(
                    "{}",
                    json!({ "answer": text, "provider": paid.provider, "fee": format_amount(paid.fee),
                            "owed": format_amount(paid.owed), "inputTokens": r.input_tokens.to_string(),
                            "outputTokens": r.output_tokens.to_string(), "receipt": paid.id, "verified": true })
                );
            } else {
                eprintln!(
                    "[receipt #{} verified: {} in + {} out tokens, fee {} 0G, owed {} 0G in all]",
                    paid.id,
                    r.input_tokens,
                    r.output_tokens,
                    format_amount(paid.fee),
                    format_amount(paid.owed)
                );
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
