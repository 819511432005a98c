//! `make demo`'s run: money before, a chat and a streamed chat through the
//! gateway, the receipts and their checks, settlement on chain, money after,
//! and one line that says whether the provider earned exactly the receipts.

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use std::time::{Duration, Instant};
use zg_core::{Address, U256, format_amount};
use zg_devnet::Stack;

pub(super) async fn run(stack: &Stack) -> Result<()> {
    let user = stack.user.user();
    let providers: Vec<Address> = stack.providers.iter().map(|p| p.address).collect();
    println!("\n== balances before");
    let before = balances(stack, user, &providers).await?;

    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", stack.gateway_url);
    println!("\n== chat completion through the gateway");
    let body = serde_json::json!({
        "model": stack.chat_model,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        "max_tokens": 48,
        "temperature": 0,
    });
    let answer: serde_json::Value = http
        .post(&url)
        .bearer_auth(&stack.api_key)
        .json(&body)
        .send()
        .await?
        .error_for_status()
        .context("the gateway refused the chat request")?
        .json()
        .await?;
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        !text.trim().is_empty(),
        "the chat answer is empty: {answer}"
    );
    println!("{text}");

    println!("\n== streamed chat completion");
    let mut stream_body = body.clone();
    stream_body["stream"] = true.into();
    stream_body["messages"][0]["content"] = "Name three colors.".into();
    let response = http
        .post(&url)
        .bearer_auth(&stack.api_key)
        .json(&stream_body)
        .send()
        .await?
        .error_for_status()
        .context("the gateway refused the streamed request")?;
    let mut chunks = response.bytes_stream();
    let mut pending = String::new();
    let mut streamed = String::new();
    while let Some(chunk) = chunks.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                break;
            }
            let piece: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
            if let Some(delta) = piece["choices"][0]["delta"]["content"].as_str() {
                print!("{delta}");
                streamed.push_str(delta);
            }
        }
    }
    println!();
    ensure!(!streamed.trim().is_empty(), "the streamed answer is empty");
    let requests = 2;

    println!("\n== receipts (checked by the gateway before it paid)");
    let book = &stack.book;
    let receipts = wait_for_receipts(book, requests).await?;
    let mut verified = 0;
    let mut receipt_total = U256::ZERO;
    for r in &receipts {
        println!(
            "  #{} {} via {}: {} in + {} out tokens, fee {} neuron, owed {} neuron: {}",
            r.id, r.service, r.provider, r.input_tokens, r.output_tokens, r.fee, r.owed, r.status
        );
        if r.status == "paid" {
            verified += 1;
            receipt_total += r.fee;
        } else {
            println!("    refused: {}", r.fault.as_deref().unwrap_or("?"));
        }
    }

    println!("\n== settlement on chain");
    wait_for_acknowledgements(book).await?;
    let mut settled = U256::ZERO;
    for provider in &stack.providers {
        let round = provider
            .running
            .broker()
            .settler()
            .settle_now()
            .await
            .with_context(|| format!("settling for provider {}", provider.address))?;
        println!(
            "  provider {}: {} voucher(s) settled, {} rejected, {} neuron paid, tx {:?}",
            provider.address, round.settled, round.rejected, round.paid, round.txs
        );
        settled += round.paid;
    }

    println!("\n== balances after");
    let after = balances(stack, user, &providers).await?;
    let earned = after.providers_total - before.providers_total;
    let figures = format!(
        "requests={requests} receipts_verified={verified} settled_neuron={settled} provider_earned_neuron={earned}"
    );
    let mut failures = Vec::new();
    if verified != requests {
        failures.push(format!(
            "{verified} of {requests} receipts passed their checks"
        ));
    }
    if settled != receipt_total {
        failures.push(format!(
            "settled {settled} neuron but the receipts add up to {receipt_total}"
        ));
    }
    if earned != settled {
        failures.push(format!(
            "the provider earned {earned} neuron but {settled} were settled"
        ));
    }
    if earned.is_zero() {
        failures.push("nothing was earned".to_owned());
    }
    if !failures.is_empty() {
        bail!("demo failed ({figures}): {}", failures.join("; "));
    }
    println!("\ndemo ok: {figures}");
    Ok(())
}

struct Balances {
    providers_total: U256,
}

async fn balances(stack: &Stack, user: Address, providers: &[Address]) -> Result<Balances> {
    let chain = stack.user.chain();
    println!(
        "  user {user}: ledger {} 0G",
        format_amount(chain.balance_of(user).await?)
    );
    let mut providers_total = U256::ZERO;
    for provider in providers {
        let escrow = chain.account(user, *provider).await?;
        let earned = chain.balance_of(*provider).await?;
        providers_total += earned;
        println!(
            "  escrow user -> {provider}: {} 0G (settled {} 0G); provider ledger {} 0G",
            format_amount(escrow.escrow),
            format_amount(escrow.settled),
            format_amount(earned)
        );
    }
    Ok(Balances { providers_total })
}

async fn wait_for_receipts(
    book: &zg_client::Book,
    n: usize,
) -> Result<Vec<zg_client::ReceiptRecord>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let receipts = book.receipts(None, false, 100).await?;
        if receipts.len() >= n {
            return Ok(receipts);
        }
        if Instant::now() > deadline {
            bail!(
                "expected {n} receipts in the book, found {}",
                receipts.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The last answer's fee is paid by an acknowledgement voucher the gateway
/// sends once it is idle; settle only after it is out, so nothing is left owed.
async fn wait_for_acknowledgements(book: &zg_client::Book) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let accounts = book.tabs().await?;
        if accounts.iter().all(|a| a.authorized >= a.owed) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the gateway did not acknowledge every receipt: {accounts:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
