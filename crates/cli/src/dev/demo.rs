//! `make demo`'s run: money before, a cheating provider caught by the
//! gateway's audits and slashed by the verifiers (with `--cheater`), a chat
//! and a streamed chat through the gateway, the receipts and their checks,
//! settlement on chain, money after, and one line that says whether the
//! honest provider earned exactly the receipts.

use anyhow::{Context, Result, bail, ensure};
use futures::StreamExt;
use std::time::{Duration, Instant};
use zg_chain::DisputeState;
use zg_core::{Address, U256, format_amount};
use zg_devnet::Stack;

/// Answers the cheater may give before the audits must have caught it.
const CATCH_WITHIN: usize = 10;

/// What catching the cheater took.
#[derive(Default)]
struct Caught {
    /// Answers given while the cheater was being caught.
    answers: usize,
    audits_failed: u64,
    disputes_won: u64,
    slashed: U256,
}

pub(super) async fn run(stack: &Stack) -> Result<()> {
    let user = stack.user.user();
    let providers: Vec<Address> = stack.providers.iter().map(|p| p.address).collect();
    println!("\n== balances before");
    let before = balances(stack, user, &providers).await?;

    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", stack.gateway_url);
    let caught = match &stack.cheater {
        Some((cheater, _)) => catch_cheater(stack, &http, &url, cheater.address).await?,
        None => Caught::default(),
    };
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
    let receipts = wait_for_receipts(book, &providers, requests).await?;
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
    wait_for_acknowledgements(book, &providers).await?;
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

    println!("\n== audits of the honest answers");
    let audits = honest_audits(stack, &providers, &caught).await?;

    println!("\n== balances after");
    let after = balances(stack, user, &providers).await?;
    let earned = after.providers_total - before.providers_total;
    let figures = format!(
        "requests={requests} receipts_verified={verified} settled_neuron={settled} provider_earned_neuron={earned} audits_passed={} audits_failed={} disputes_won={} slashed_neuron={}",
        audits.passed, audits.failed, caught.disputes_won, caught.slashed
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

/// The receipts of the honest `providers` once there are `n`.
async fn wait_for_receipts(
    book: &zg_client::Book,
    providers: &[Address],
    n: usize,
) -> Result<Vec<zg_client::ReceiptRecord>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut receipts = book.receipts(None, false, 100).await?;
        receipts.retain(|r| providers.contains(&r.provider));
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
async fn wait_for_acknowledgements(book: &zg_client::Book, providers: &[Address]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut accounts = book.tabs().await?;
        accounts.retain(|a| providers.contains(&a.provider));
        if accounts.iter().all(|a| a.authorized >= a.owed) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the gateway did not acknowledge every receipt: {accounts:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Chats through the gateway until an audit of the cheater's answers fails
/// (at most [`CATCH_WITHIN`] answers), then waits for the dispute the
/// gateway opens to be decided by the verifiers.
async fn catch_cheater(
    stack: &Stack,
    http: &reqwest::Client,
    url: &str,
    cheater: Address,
) -> Result<Caught> {
    println!(
        "\n== a cheater: {cheater} lists the honest model's digest at half the price and serves a requantized substitute"
    );
    let chain = &stack.owner;
    let stake_before = chain.stake_of(cheater).await?.stake;
    let mut answers = 0;
    while stack.gateway.audit_counts().failed == 0 {
        ensure!(
            answers < CATCH_WITHIN,
            "{CATCH_WITHIN} answers went by and no audit failed"
        );
        let body = serde_json::json!({
            "model": stack.chat_model,
            "messages": [{"role": "user", "content": format!("Tell me one fact about the number {answers}.")}],
            "max_tokens": 32,
            "temperature": 0,
        });
        http.post(url)
            .bearer_auth(&stack.api_key)
            .json(&body)
            .send()
            .await?
            .error_for_status()
            .context("the gateway refused a chat request")?;
        answers += 1;
        // The audit runs in the background: give it time before the next answer.
        let deadline = Instant::now() + Duration::from_secs(60);
        while audits_done(stack) < answers && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let counts = stack.gateway.audit_counts();
    println!(
        "  {answers} answer(s), {} audit(s) failed: the gateway stopped routing to {cheater} and disputed",
        counts.failed
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let disputes_won = loop {
        let mut won = 0;
        let mut open = 0;
        for id in 1..=chain.dispute_count().await? {
            let dispute = chain.dispute(id).await?;
            match dispute.state {
                DisputeState::Guilty if dispute.provider == cheater => won += 1,
                DisputeState::Open => open += 1,
                _ => {}
            }
        }
        if won > 0 && open == 0 {
            break won;
        }
        ensure!(
            Instant::now() < deadline,
            "no dispute against {cheater} was decided guilty in time ({won} guilty, {open} open)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let stake_after = chain.stake_of(cheater).await?.stake;
    let slashed = stake_before.saturating_sub(stake_after);
    let failed_at = chain
        .services_of(cheater, 0, 10)
        .await?
        .items
        .iter()
        .map(|s| s.failed_at)
        .max()
        .unwrap_or(0);
    ensure!(
        failed_at != 0,
        "the cheater's service is not marked as failed"
    );
    println!(
        "  {disputes_won} dispute(s) decided guilty by the verifiers: {} 0G of stake slashed, the service marked failed",
        format_amount(slashed)
    );
    Ok(Caught {
        answers,
        audits_failed: counts.failed,
        disputes_won,
        slashed,
    })
}

/// Waits until every answer so far was audited (the first ten of a service
/// all are), and checks that the honest providers passed and were never
/// disputed.
async fn honest_audits(
    stack: &Stack,
    honest: &[Address],
    caught: &Caught,
) -> Result<zg_gateway::AuditCounts> {
    let answers = caught.answers + 2;
    let deadline = Instant::now() + Duration::from_secs(60);
    while audits_done(stack) < answers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts = stack.gateway.audit_counts();
    println!(
        "  {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.skipped
    );
    ensure!(
        counts.failed == caught.audits_failed,
        "an honest answer failed its audit ({} failures, {} of them the cheater's)",
        counts.failed,
        caught.audits_failed
    );
    let chain = &stack.owner;
    for id in 1..=chain.dispute_count().await? {
        let provider = chain.dispute(id).await?.provider;
        ensure!(
            !honest.contains(&provider),
            "dispute {id} was opened against the honest provider {provider}"
        );
    }
    Ok(counts)
}

fn audits_done(stack: &Stack) -> usize {
    let c = stack.gateway.audit_counts();
    usize::try_from(c.passed + c.failed + c.skipped).unwrap_or(usize::MAX)
}
