//! The activity page: the book's receipts newest first with the API key
//! that asked for each, their checks and audits, filters by provider, model
//! and key, and cumulative spend charts per key and per provider. Also the
//! JSON lookup the playground uses to find the receipt of the request it
//! just streamed.

use super::{banners, frame};
use crate::Gateway;
use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};
use zg_client::ReceiptRecord;
use zg_core::{Address, U256};
use zg_web::{Markup, Series, amount, html, line_chart, unix_time};

/// Receipts read for the page and its charts, newest first.
const READ: u32 = 5000;
/// Rows shown in the table.
const SHOWN: usize = 200;
/// The label of answers asked without an API key (an open gateway).
const NO_KEY: &str = "no key";

#[derive(Debug, Default, Deserialize)]
pub(super) struct Filter {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    key: String,
}

impl Filter {
    fn keeps(&self, r: &ReceiptRecord, key: Option<&str>) -> bool {
        (self.provider.is_empty() || r.provider.to_string().eq_ignore_ascii_case(&self.provider))
            && (self.model.is_empty() || r.model == self.model)
            && (self.key.is_empty() || key.unwrap_or(NO_KEY) == self.key)
    }
}

pub(super) async fn page(State(gw): State<Arc<Gateway>>, Query(filter): Query<Filter>) -> Markup {
    let mut problems = Vec::new();
    let (receipts, keys, names) = tokio::join!(
        gw.payer.book().receipts(None, false, READ),
        gw.keys.receipt_keys(),
        gw.keys.list(),
    );
    let receipts = receipts
        .map_err(|e| problems.push(format!("the book's receipts could not be read: {e}")))
        .unwrap_or_default();
    let keys = keys
        .map_err(|e| problems.push(format!("the keys of the receipts could not be read: {e}")))
        .unwrap_or_default();
    let names: HashMap<String, String> = names
        .unwrap_or_default()
        .into_iter()
        .map(|k| (k.id, k.name))
        .collect();
    let key_of = |r: &ReceiptRecord| keys.get(&r.id).map(String::as_str);
    let key_label = |id: Option<&str>| match id {
        Some(id) => match names.get(id) {
            Some(name) => format!("{name} ({id})"),
            None => id.to_owned(),
        },
        None => NO_KEY.to_owned(),
    };
    let shown: Vec<&ReceiptRecord> = receipts
        .iter()
        .filter(|r| filter.keeps(r, key_of(r)))
        .collect();
    let providers: BTreeSet<Address> = receipts.iter().map(|r| r.provider).collect();
    let models: BTreeSet<&str> = receipts.iter().map(|r| r.model.as_str()).collect();
    let key_ids: BTreeSet<&str> = receipts
        .iter()
        .map(|r| key_of(r).unwrap_or(NO_KEY))
        .collect();
    let by_key = spend(&shown, |r| key_label(key_of(r)));
    let by_provider = spend(&shown, |r| r.provider.to_string());
    let total: U256 = shown
        .iter()
        .filter(|r| r.status == "paid")
        .map(|r| r.fee)
        .sum();
    let selected = |value: &str, chosen: &str| value.eq_ignore_ascii_case(chosen);
    let body = html! {
        (banners(&problems))
        form #filter .inline method="get" action="/activity" {
            label { "Provider" select name="provider" {
                option value="" { "all" }
                @for p in &providers { option value=(p) selected[selected(&p.to_string(), &filter.provider)] { (p) } }
            } }
            label { "Model" select name="model" {
                option value="" { "all" }
                @for m in &models { option value=(m) selected[*m == filter.model] { (m) } }
            } }
            label { "API key" select name="key" {
                option value="" { "all" }
                @for k in &key_ids {
                    option value=(k) selected[*k == filter.key] { (key_label(Some(*k).filter(|k| *k != NO_KEY))) }
                }
            } }
            button type="submit" { "Filter" }
        }
        div #charts .cards data-live="" {
            (line_chart("spend-chart", "Spend per API key (cumulative)", "0G", &by_key))
            (line_chart("provider-chart", "Spend per provider (cumulative)", "0G", &by_provider))
        }
        p #activity-total data-live="" {
            (shown.len()) " receipts, " (amount(total)) " 0G paid"
            @if shown.len() > SHOWN { " (the newest " (SHOWN) " shown)" }
        }
        div.scroll {
            table #receipts .sortable data-live="" {
                thead { tr {
                    th.num { "#" } th { "Time" } th { "Provider" } th { "Model" } th { "API key" }
                    th.num { "In" } th.num { "Out" } th.num { "Cached" } th.num { "Fee (0G)" }
                    th { "Check" } th { "Audit" }
                } }
                tbody {
                    @for r in shown.iter().take(SHOWN) {
                        (row(r, &key_label(key_of(r))))
                    }
                    @if shown.is_empty() {
                        tr.empty { td colspan="11" .muted { "No receipt yet: send a request through /v1 or the playground." } }
                    }
                }
            }
        }
    };
    frame("Activity · zg-serving gateway", "/activity", body)
}

fn row(r: &ReceiptRecord, key: &str) -> Markup {
    let check = match (&r.status[..], &r.fault) {
        ("paid", _) => "paid".to_owned(),
        (status, Some(fault)) => format!("{status}: {fault}"),
        (status, None) => status.to_owned(),
    };
    html! {
        tr.receipt data-id=(r.id) {
            td.id.num { (r.id) }
            td.time data-sort=(r.created_at) { (unix_time(r.created_at)) }
            td.provider.addr title=(r.provider) { (super::short(r.provider)) }
            td.model { (r.model) }
            td.key { (key) }
            td.input.num { (r.input_tokens) }
            td.output.num { (r.output_tokens) }
            td.cached.num { (r.signed.receipt.cached_tokens) }
            td.fee.num data-sort=(r.fee) { (amount(r.fee)) }
            td.check.(if r.status == "paid" { "ok" } else { "bad" }) { (check) }
            @match &r.audit {
                None => td.audit.muted { "—" },
                Some(a) => td.audit.(if a.pass { "pass" } else { "fail" }) title=(a.detail) {
                    (if a.pass { "pass" } else { "fail" })
                    @if let Some(d) = a.dispute { " (dispute #" (d) ")" }
                },
            }
        }
    }
}

/// Cumulative paid fees over time, one series per `label`; amounts in 0G
/// as floats only for the drawing.
fn spend(receipts: &[&ReceiptRecord], label: impl Fn(&ReceiptRecord) -> String) -> Vec<Series> {
    let mut sums: BTreeMap<String, (U256, Vec<(i64, f64)>)> = BTreeMap::new();
    // The book gives them newest first; a running sum goes oldest first.
    for r in receipts.iter().rev().filter(|r| r.status == "paid") {
        let (sum, points) = sums.entry(label(r)).or_default();
        *sum = sum.saturating_add(r.fee);
        points.push((r.created_at, amount(*sum).parse().unwrap_or(0.0)));
    }
    sums.into_iter()
        .map(|(label, (_, points))| Series { label, points })
        .collect()
}

/// `GET /receipts/by-request/{request_id}`: the receipt of the broker's
/// request `request_id`, once its answer ended; 404 until then.
pub(super) async fn by_request(
    State(gw): State<Arc<Gateway>>,
    Path(request_id): Path<String>,
) -> Response {
    match gw.keys.answered(&request_id).await {
        Ok(Some(a)) => Json(json!({
            "request_id": a.request_id,
            "receipt_id": a.receipt,
            "key_id": a.key_id,
            "check": a.verdict,
            "fee": amount(a.fee),
        }))
        .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no answer to request {request_id:?} has ended yet") })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("the book could not be read: {e}") })),
        )
            .into_response(),
    }
}
