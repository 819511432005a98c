//! Market commands: services (discovery), receipts (the book's evidence,
//! with the gateway's audits) and recover (the book rebuilt from signed
//! statements and the chain).

use super::{ChainArgs, Out};
use anyhow::Context;
use clap::Args;
use serde_json::json;
use zg_client::{AckPolicy, Book, ServiceFilter, find_services};
use zg_core::{Address, Domain, Prices, Quote, Service, U256, format_amount, parse_amount};

#[derive(Args)]
pub(super) struct ServicesArgs {
    #[arg(long)]
    model: Option<String>,
    /// "chat", "embeddings", ...
    #[arg(long)]
    kind: Option<String>,
    /// Highest input price, 0G per token.
    #[arg(long)]
    max_input_price: Option<String>,
    /// Highest output price, 0G per token.
    #[arg(long)]
    max_output_price: Option<String>,
    #[arg(long)]
    hardware: Option<String>,
    /// Required verifiability ("tee", ...).
    #[arg(long)]
    verifiability: Option<String>,
    #[arg(long)]
    provider: Vec<Address>,
}

fn price(flag: &str, text: &Option<String>) -> anyhow::Result<Option<U256>> {
    text.as_deref()
        .map(|t| parse_amount(t).with_context(|| format!("{flag} {t:?} (0G per token)")))
        .transpose()
}

/// Each service's prices in force now, from a quote its broker signed
/// (checked against the registry): `None` for a broker that serves no
/// quotes (it charges the listed prices), an error for one that can't be
/// reached or whose quote does not hold.
async fn live_prices(domain: &Domain, services: &[Service]) -> Vec<Result<Option<Quote>, String>> {
    let http = reqwest::Client::new();
    futures::future::join_all(services.iter().map(|s| async {
        zg_client::pay::fetch_quote(&http, domain, s)
            .await
            .map(|taken| taken.map(|t| t.quote))
            .map_err(|e| e.to_string())
    }))
    .await
}

/// Price per million tokens, the unit people compare.
fn per_million(price: U256) -> String {
    format_amount(price.saturating_mul(U256::from(1_000_000u64)))
}

pub(super) async fn services(c: &ChainArgs, a: ServicesArgs, out: Out) -> anyhow::Result<()> {
    let filter = ServiceFilter {
        model: a.model,
        kind: a.kind,
        max_input_price: price("--max-input-price", &a.max_input_price)?,
        max_output_price: price("--max-output-price", &a.max_output_price)?,
        hardware: a.hardware,
        verifiability: a.verifiability,
        only: a.provider,
        ignore: vec![],
    };
    let session = c.session().await?;
    let found = find_services(&session.chain, &filter).await?;
    let quotes = live_prices(&session.chain.domain(), &found).await;
    let rows: Vec<_> = found
        .iter()
        .zip(&quotes)
        .map(|(s, quote)| {
            let now = match quote {
                Ok(Some(q)) => json!({
                    "inputPrice": format_amount(q.tiers[0].prices.input),
                    "outputPrice": format_amount(q.tiers[0].prices.output),
                    "cachedInputPrice": format_amount(q.tiers[0].prices.cached),
                    "validUntil": q.valid_until,
                    "tiers": q.tiers.iter().map(|t| json!({
                        "minPromptTokens": t.min_prompt_tokens, "minOutputTokens": t.min_output_tokens,
                        "inputPrice": format_amount(t.prices.input), "outputPrice": format_amount(t.prices.output),
                        "cachedInputPrice": format_amount(t.prices.cached),
                    })).collect::<Vec<_>>(),
                }),
                Ok(None) => json!(null),
                Err(e) => json!({ "error": e }),
            };
            json!({
                "provider": s.provider, "name": s.name, "kind": s.kind, "model": s.model, "url": s.url,
                "modelDigest": s.model_digest, "hardware": s.hardware,
                "inputPrice": format_amount(s.prices.input), "outputPrice": format_amount(s.prices.output),
                "cachedInputPrice": format_amount(s.prices.cached), "quote": now,
                "verifiability": s.verifiability, "signer": s.signer, "updatedAt": s.updated_at,
            })
        })
        .collect();
    out.print(json!(rows), || {
        if found.is_empty() {
            return "no service fits these filters".into();
        }
        let mut text = format!(
            "{:<42} {:<16} {:<10} {:<28} {:<6} {:>21} {:>21} {:>12}  verif\n",
            "provider",
            "service",
            "kind",
            "model",
            "hw",
            "in/1M 0G now (max)",
            "out/1M 0G now (max)",
            "cached max"
        );
        for (s, quote) in found.iter().zip(&quotes) {
            let now = |pick: fn(&Prices) -> U256| match quote {
                Ok(Some(q)) => per_million(pick(&q.tiers[0].prices)),
                Ok(None) => "as listed".into(),
                Err(_) => "unreachable".into(),
            };
            text += &format!(
                "{:<42} {:<16} {:<10} {:<28} {:<6} {:>21} {:>21} {:>12}  {}\n",
                s.provider.to_string(),
                s.name,
                s.kind,
                s.model,
                s.hardware,
                format!("{} ({})", now(|p| p.input), per_million(s.prices.input)),
                format!("{} ({})", now(|p| p.output), per_million(s.prices.output)),
                per_million(s.prices.cached),
                s.verifiability
            );
        }
        text.trim_end().to_owned()
    });
    Ok(())
}

#[derive(Args)]
pub(super) struct ReceiptsArgs {
    #[arg(long)]
    provider: Option<Address>,
    /// Only receipts that failed their checks (not paid, kept as evidence).
    #[arg(long)]
    rejected: bool,
    #[arg(long, default_value_t = 20)]
    limit: u32,
}

pub(super) async fn receipts(c: &ChainArgs, a: ReceiptsArgs, out: Out) -> anyhow::Result<()> {
    let user = c.key.load()?.address();
    let book = Book::open(&c.book_path()?, user).await?;
    let list = book.receipts(a.provider, a.rejected, a.limit).await?;
    let rows: Vec<_> = list
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "provider": r.provider, "service": r.service, "model": r.model,
                "fee": format_amount(r.fee), "owed": format_amount(r.owed),
                "inputTokens": r.input_tokens.to_string(), "outputTokens": r.output_tokens.to_string(),
                "status": r.status, "fault": r.fault, "createdAt": r.created_at, "signed": r.signed,
                "audit": r.audit,
            })
        })
        .collect();
    out.print(json!(rows), || {
        if list.is_empty() {
            return "no receipts in the book yet".into();
        }
        list.iter()
            .map(|r| {
                format!(
                    "#{} {} {} {} in/{} out tokens, fee {} 0G, owed {} 0G: {}{}{}",
                    r.id,
                    r.provider,
                    r.model,
                    r.input_tokens,
                    r.output_tokens,
                    format_amount(r.fee),
                    format_amount(r.owed),
                    r.status,
                    r.fault
                        .as_deref()
                        .map(|f| format!(" ({f})"))
                        .unwrap_or_default(),
                    r.audit.as_ref().map(audit_text).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

/// A receipt's audit as `user receipts` prints it.
fn audit_text(a: &zg_client::AuditRecord) -> String {
    let verdict = if a.pass { "passed" } else { "FAILED" };
    let dispute = a
        .dispute
        .map(|id| format!(", dispute #{id}"))
        .unwrap_or_default();
    format!("; audit {verdict} ({}){dispute}", a.detail)
}

pub(super) async fn recover(c: &ChainArgs, out: Out) -> anyhow::Result<()> {
    let session = c.session().await?;
    let payer = c.payer(&session, AckPolicy::Never).await?;
    let recovered = zg_client::recover(&payer, &session.chain).await?;
    let rows: Vec<_> = recovered
        .iter()
        .map(|r| {
            json!({ "provider": r.provider, "authorized": format_amount(r.authorized),
                    "owed": format_amount(r.owed), "settled": format_amount(r.settled) })
        })
        .collect();
    out.print(json!(rows), || {
        if recovered.is_empty() {
            return "no escrow at any provider: nothing to recover".into();
        }
        recovered
            .iter()
            .map(|r| {
                format!(
                    "{}: authorized {} 0G, owed {} 0G, settled {} 0G",
                    r.provider,
                    format_amount(r.authorized),
                    format_amount(r.owed),
                    format_amount(r.settled)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
