//! The providers page: every listed service with its ceilings, the price
//! its broker quotes now, what this gateway measured (latency, throughput,
//! failures, bans) and the audits of its answers. Quotes are asked of all
//! brokers at once with a short timeout, so a dead one shows "—" and does
//! not hold the page.

use super::{banners, frame, listed_or_noted};
use crate::{Gateway, Standing};
use axum::extract::State;
use rusqlite::params;
use std::{collections::HashMap, sync::Arc, time::Duration};
use zg_client::{ClientError, pay::TakenQuote};
use zg_core::{Address, Prices, Service, U256};
use zg_web::{Markup, amount, html};

/// How long a broker gets to quote before the page goes on without it.
const QUOTE_WAIT: Duration = Duration::from_secs(2);

/// Audits of one provider's answers, from the book.
#[derive(Debug, Default, Clone, Copy)]
struct Audited {
    passed: u64,
    failed: u64,
}

pub(super) async fn page(State(gw): State<Arc<Gateway>>) -> Markup {
    let mut problems = Vec::new();
    let services = listed_or_noted(&gw, &mut problems).await;
    let (quotes, audits) = tokio::join!(quotes(&gw, &services), audits(&gw));
    let audits = audits
        .map_err(|e| problems.push(format!("the book's audits could not be read: {e}")))
        .unwrap_or_default();
    let standings: HashMap<Address, Standing> = gw
        .ranking
        .standings()
        .into_iter()
        .map(|s| (s.provider, s))
        .collect();
    let dead = quotes.iter().filter(|q| q.is_err()).count();
    if dead > 0 {
        problems.push(format!(
            "{dead} of {} brokers did not quote (shown as —): they may be down",
            services.len()
        ));
    }
    let body = html! {
        (banners(&problems))
        p.muted { "Prices are 0G per token. The quote is what the broker charges now, under its listed ceilings." }
        div.scroll {
            table #providers .sortable data-live="" {
                thead { tr {
                    th { "Provider" } th { "Service" } th { "Model" } th { "Kind" } th.hide-narrow { "Hardware" }
                    th.num { "Ceiling in / out / cached" } th.num { "Quote in / out / cached" }
                    th.num { "Latency (ms)" } th.num { "Tokens/s" } th.num { "Failures" }
                    th { "Audits" } th { "Proof method" }
                } }
                tbody {
                    @for (s, quote) in services.iter().zip(&quotes) {
                        (row(s, quote, standings.get(&s.provider), audits.get(&s.provider).copied().unwrap_or_default()))
                    }
                    @if services.is_empty() {
                        tr.empty { td colspan="12" .muted { "No service is listed (or the registry could not be read)." } }
                    }
                }
            }
        }
    };
    frame("Providers · zg-serving gateway", "/providers", body)
}

fn prices(p: &Prices) -> Markup {
    html! { (amount(p.input)) " / " (amount(p.output)) " / " (amount(p.cached)) }
}

fn row(
    s: &Service,
    quote: &Result<Option<TakenQuote>, String>,
    standing: Option<&Standing>,
    audited: Audited,
) -> Markup {
    let quoted = match quote {
        Ok(Some(taken)) => taken.quote.tiers.first().map(|t| t.prices),
        _ => None,
    };
    let why_none = match quote {
        Ok(Some(_)) => "the quote has no tier".to_owned(),
        Ok(None) => "this broker serves no quotes: it charges the ceilings".to_owned(),
        Err(e) => e.clone(),
    };
    let number = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.0}"));
    html! {
        tr.service data-provider=(s.provider) {
            td.provider.addr title=(s.provider) { (super::short(s.provider)) }
            td.name { (s.name) }
            td.model { (s.model) }
            td.kind { (s.kind) }
            td.hardware.hide-narrow { @if s.hardware.is_empty() { "—" } @else { (s.hardware) } }
            td.ceiling.num data-sort=(s.prices.input) { (prices(&s.prices)) }
            @match quoted {
                Some(p) => td.quote.num data-sort=(p.input) { (prices(&p)) },
                None => td.quote.num data-sort=(U256::MAX) title=(why_none) { "—" },
            }
            td.latency.num data-sort=[standing.and_then(|s| s.latency_ms)] { (number(standing.and_then(|s| s.latency_ms))) }
            td.throughput.num { (number(standing.and_then(|s| s.tokens_per_s))) }
            td.failures.num {
                (standing.map_or(0, |s| s.failures_in_a_row))
                @if standing.is_some_and(|s| s.cooling) { " (cooling down)" }
                @if let Some(why) = standing.and_then(|s| s.banned.as_deref()) { br; span.bad { "banned: " (why) } }
            }
            td.audits {
                span.pass { (audited.passed) " passed" } ", "
                span.(if audited.failed > 0 { "fail" } else { "muted" }) { (audited.failed) " failed" }
            }
            td.proof { (s.verifiability) }
        }
    }
}

/// Each service's quote now, in the order of `services`, all asked at once.
async fn quotes(gw: &Gateway, services: &[Service]) -> Vec<Result<Option<TakenQuote>, String>> {
    let ask = async |s: &Service| match tokio::time::timeout(QUOTE_WAIT, gw.payer.quote(s)).await {
        Ok(Ok(q)) => Ok(q),
        Ok(Err(e)) => Err(format!("the broker did not quote: {e}")),
        Err(_) => Err(format!(
            "the broker did not quote within {} s",
            QUOTE_WAIT.as_secs()
        )),
    };
    futures::future::join_all(services.iter().map(ask)).await
}

/// Audits passed and failed per provider, as the book keeps them.
async fn audits(gw: &Gateway) -> Result<HashMap<Address, Audited>, ClientError> {
    let user = gw.payer.user().to_string();
    let rows: Vec<(String, String, u64)> = gw
        .payer
        .book()
        .call(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT r.provider, a.result, count(*) FROM audits a JOIN receipts r ON r.id = a.receipt
                 WHERE r.user = ?1 GROUP BY r.provider, a.result",
            )?;
            let rows = stmt.query_map(params![user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await?;
    let mut by_provider: HashMap<Address, Audited> = HashMap::new();
    for (provider, result, n) in rows {
        let Ok(provider) = provider.parse() else {
            continue;
        };
        let entry = by_provider.entry(provider).or_default();
        if result == "pass" {
            entry.passed += n;
        } else {
            entry.failed += n;
        }
    }
    Ok(by_provider)
}
