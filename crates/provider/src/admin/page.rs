//! The provider page's HTML: banners for what could not be read, the four
//! figures of `provider status`'s last line, then services, traffic,
//! users, settlements, fine-tuning jobs, refunds, disputes and errors. Every part that
//! changes is an element with an id and `data-live`, re-read on refresh.

use std::fmt::Display;

use maud::{Markup, html};
use zg_chain::DisputeInfo;
use zg_core::{Prices, U256, fine_tuning::JobView};
use zg_web::{Nav, Page, Series, amount, line_chart, tx_link, unix_time};

use super::view::{Refund, ServiceRow, View};
use crate::{admission::Tab, store::SettlementRecord};

const NAV: Nav = Nav {
    brand: "zg-serving provider",
    links: &[
        ("nav-overview", "/", "Overview"),
        ("nav-users", "/#users-part", "Users"),
        ("nav-settlements", "/#settlements-part", "Settlements"),
        ("nav-disputes", "/#disputes-part", "Disputes"),
    ],
    active: "/",
};

pub(super) fn render(view: &View, explorer: Option<&str>) -> Markup {
    let body = html! {
        (banners(view))
        p.muted {
            "provider " code.addr { (view.provider) }
            " · chain " (view.chain_id) " · contract " code.addr { (view.contract) }
        }
        (figures(view))
        h2 #services-part { "Services" }
        (services(view))
        (rates(view))
        h2 #users-part { "Users" }
        (users(view))
        h2 #settlements-part { "Settlements" }
        (settlements(view, explorer))
        @if let Some(jobs) = &view.jobs {
            h2 #fine-tuning-part { "Fine-tuning jobs" }
            (fine_tuning(jobs))
        }
        h2 #refunds-part { "Refunds about to unlock" }
        (refunds(view))
        h2 #disputes-part { "Disputes against this provider" }
        (disputes(view))
        h2 #errors-part { "Errors by code" }
        (errors(view))
    };
    Page::new("zg-serving provider", NAV)
        .live("/events")
        .render(body)
}

/// One banner per part that could not be read, saying what is missing.
fn banners(view: &View) -> Markup {
    let b = &view.books;
    let chain: Vec<String> = [
        b.stake.as_ref().err().map(ToString::to_string),
        b.listed.as_ref().err().map(ToString::to_string),
        b.earnings.as_ref().err().map(ToString::to_string),
        view.refunds.as_ref().err().map(ToString::to_string),
        view.disputes.as_ref().err().map(ToString::to_string),
    ]
    .into_iter()
    .flatten()
    .collect();
    let store: Vec<String> = [
        b.tabs.as_ref().err().map(ToString::to_string),
        view.settlements.as_ref().err().map(ToString::to_string),
    ]
    .into_iter()
    .flatten()
    .collect();
    html! {
        div #banners data-live {
            @if let Some(first) = chain.first() {
                p.banner #chain-down role="alert" {
                    strong { "The chain is not answering: " }
                    "earnings, stake, refunds and disputes are missing until it does. (" (first) ")"
                }
            }
            @if let Some(first) = store.first() {
                p.banner #store-down role="alert" {
                    strong { "The database is not answering: " }
                    "users' books and settlements are missing. (" (first) ")"
                }
            }
            @for (service, why) in &view.upstreams_down {
                p.banner .upstream-down role="alert" {
                    strong { "The upstream of " (service) " is not answering: " }
                    "its requests fail (free for users) until it does. (" (why) ")"
                }
            }
        }
    }
}

/// A figure that may be missing: the value, or a dash.
fn or_dash<T, E>(value: &Result<T, E>, show: impl Fn(&T) -> String) -> String {
    value.as_ref().map_or_else(|_| "—".to_owned(), show)
}

fn figures(view: &View) -> Markup {
    let totals = view.totals();
    let sum = |pick: fn(&crate::status::Totals) -> U256| {
        totals
            .as_ref()
            .map_or_else(|| "—".to_owned(), |t| amount(pick(t)))
    };
    let stake = &view.books.stake;
    html! {
        div.cards {
            (figure("earnings", "Earnings on the ledger", &or_dash(&view.books.earnings, |e| amount(*e)), "0G"))
            (figure("owed", "Owed by users", &sum(|t| t.owed), "0G"))
            (figure("settled", "Settled on chain", &sum(|t| t.settled), "0G"))
            (figure("unsettled", "Unsettled vouchers", &sum(|t| t.unsettled), "0G"))
            (figure("stake", "Stake", &or_dash(stake, |s| amount(s.stake)), "0G"))
            (figure("open-disputes", "Open disputes", &or_dash(stake, |s| s.open_disputes.to_string()), ""))
        }
    }
}

fn figure(id: &str, label: &str, value: &str, unit: &str) -> Markup {
    html! {
        section.card {
            div.muted { (label) }
            span.figure id=(id) data-live { (value) }
            @if !unit.is_empty() { " " span.muted { (unit) } }
        }
    }
}

/// Per-token prices in neuron: `input / output / cached`.
fn prices(p: &Prices) -> String {
    format!("{} / {} / {}", p.input, p.output, p.cached)
}

fn services(view: &View) -> Markup {
    let listed = view.books.listed.as_ref().ok();
    let state = |row: &ServiceRow| match listed.map(|l| l.iter().find(|s| s.name == row.name)) {
        None => "?".to_owned(),
        Some(None) => "not listed".to_owned(),
        Some(Some(s)) if s.failed_at != 0 => {
            format!("FAILED verification {}", unix_time(s.failed_at as i64))
        }
        Some(Some(_)) => "listed".to_owned(),
    };
    html! {
        div.scroll {
            table #services .sortable data-live {
                thead { tr {
                    th { "name" } th { "kind" } th.hide-narrow { "model" }
                    th { "ceilings (neuron/token in / out / cached)" }
                    th { "price now" }
                    th.num { "requests/min" } th.num { "tokens/min" }
                    th.hide-narrow { "registry" }
                } }
                tbody {
                    @for s in &view.services {
                        tr data-service=(s.name) {
                            td { (s.name) } td { (s.kind) } td.hide-narrow { (s.model) }
                            td.ceilings { (prices(&s.ceilings)) }
                            td.price-now {
                                (prices(&s.now))
                                @if s.tiers > 1 { span.muted { " (+" (s.tiers - 1) " tiers)" } }
                            }
                            td.num.rpm { (s.per_minute.requests) }
                            td.num.tpm { (s.per_minute.tokens) }
                            td.hide-narrow { (state(s)) }
                        }
                    }
                }
            }
        }
    }
}

fn rates(view: &View) -> Markup {
    let series = |label: &str, pick: fn(&crate::metrics::Count) -> u64| Series {
        label: label.to_owned(),
        points: view
            .history
            .iter()
            .map(|(t, c)| (*t, pick(c) as f64))
            .collect(),
    };
    let lines = if view.history.is_empty() {
        Vec::new()
    } else {
        vec![
            series("requests per minute", |c| c.requests),
            series("tokens per minute", |c| c.tokens),
        ]
    };
    html! {
        div #rates data-live {
            (line_chart("rate-chart", "Paid answers, last hour", "per min", &lines))
        }
    }
}

/// A table body that says why it is empty.
fn empty_row(columns: usize, why: &str) -> Markup {
    html! { tr.empty { td.muted colspan=(columns) { (why) } } }
}

fn users(view: &View) -> Markup {
    let tabs: &[Tab] = view.books.tabs.as_deref().unwrap_or_default();
    html! {
        div.scroll {
            table #users .sortable data-live {
                thead { tr {
                    th { "user" } th.num { "owed" } th.num { "voucher" } th.num { "settled" }
                    th.num { "in flight" } th.num { "unsettled" }
                } }
                tbody {
                    @for a in tabs {
                        tr data-user=(a.user) {
                            td.addr { (a.user) }
                            (money(a.owed)) (money(a.cumulative())) (money(a.settled))
                            (money(a.reserved)) (money(a.unsettled()))
                        }
                    }
                    @if tabs.is_empty() {
                        (empty_row(6, if view.books.tabs.is_ok() { "no users yet" } else { "the database is not answering" }))
                    }
                }
            }
        }
    }
}

/// An amount cell: decimal 0G, sorted by its neuron value.
fn money(value: U256) -> Markup {
    html! { td.num data-sort=(value) { (amount(value)) } }
}

fn settlements(view: &View, explorer: Option<&str>) -> Markup {
    let rows: &[SettlementRecord] = view.settlements.as_deref().unwrap_or_default();
    html! {
        div.scroll {
            table #settlements .sortable data-live {
                thead { tr {
                    th { "final at" } th.num { "users" } th.num { "paid (0G)" }
                    th { "transaction" } th.num.hide-narrow { "block" } th.num.hide-narrow { "rejected" }
                } }
                tbody {
                    @for s in rows {
                        tr data-tx=(format!("{:#x}", s.tx)) {
                            td data-sort=(s.final_at) { (unix_time(s.final_at)) }
                            td.num title=(joined(&s.users)) { (s.users.len()) }
                            (money(s.paid))
                            td { (tx_link(explorer, &format!("{:#x}", s.tx))) }
                            td.num.hide-narrow { (s.block) }
                            td.num.hide-narrow { (s.rejected) }
                        }
                    }
                    @if rows.is_empty() {
                        (empty_row(6, if view.settlements.is_ok() { "no settlement yet" } else { "the database is not answering" }))
                    }
                }
            }
        }
    }
}

/// Each job: whose, where it is (the last step and its loss), what it
/// trains on and charges.
fn fine_tuning(jobs: &[JobView]) -> Markup {
    html! {
        div.scroll {
            table #jobs .sortable data-live {
                thead { tr {
                    th { "job" } th { "user" } th { "status" } th.num { "step" }
                    th.num { "loss" } th.num { "trained tokens" } th.num { "fee" } th { "started" }
                } }
                tbody {
                    @for job in jobs {
                        @let last = job.events.last();
                        tr data-job=(job.id) {
                            td.addr title=(job.id) { (format!("{:.10}", job.id.to_string())) }
                            td.addr { (job.order.user) }
                            td { (format!("{:?}", job.status).to_lowercase()) }
                            td.num { (last.map_or("—".into(), |e| format!("{}/{}", e.step, e.total_steps))) }
                            td.num { (last.map_or("—".into(), |e| format!("{:.3}", e.train_loss))) }
                            td.num { (job.trained_tokens) }
                            (money(job.fee))
                            td { (unix_time(job.created_at as i64)) }
                        }
                    }
                    @if jobs.is_empty() {
                        (empty_row(8, "no fine-tuning jobs yet"))
                    }
                }
            }
        }
    }
}

fn joined<T: Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn refunds(view: &View) -> Markup {
    let rows: &[Refund] = view.refunds.as_deref().unwrap_or_default();
    html! {
        div.scroll {
            table #refunds .sortable data-live {
                thead { tr {
                    th { "user" } th.num { "refund (0G)" } th { "unlocks" }
                    th.num.hide-narrow { "escrow (0G)" } th.num { "unsettled (0G)" }
                } }
                tbody {
                    @for r in rows {
                        @let unlock = i64::try_from(r.refund.unlock_at).unwrap_or(i64::MAX);
                        tr data-user=(r.user) {
                            td.addr { (r.user) }
                            (money(r.refund.amount))
                            td.bad[unlock <= view.now] data-sort=(unlock) {
                                (unix_time(unlock))
                                @if unlock <= view.now { " (unlocked)" } @else { " (in " (span_of(unlock - view.now)) ")" }
                            }
                            td.num.hide-narrow data-sort=(r.escrow) { (amount(r.escrow)) }
                            @match r.unsettled {
                                Some(u) => (money(u)),
                                None => td.num.muted { "—" },
                            }
                        }
                    }
                    @if rows.is_empty() {
                        (empty_row(5, if view.refunds.is_ok() { "no refund pending" } else { "the chain is not answering" }))
                    }
                }
            }
        }
    }
}

/// Seconds as a short span ("2 h 5 min", "40 s").
fn span_of(secs: i64) -> String {
    match secs {
        s if s >= 3600 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

fn disputes(view: &View) -> Markup {
    let rows: &[DisputeInfo] = view.disputes.as_deref().unwrap_or_default();
    let service = |d: &DisputeInfo| {
        view.services
            .iter()
            .find(|s| s.id == d.service)
            .map_or_else(|| format!("{:#x}", d.service), |s| s.name.clone())
    };
    html! {
        div.scroll {
            table #disputes .sortable data-live {
                thead { tr {
                    th.num { "id" } th { "state" } th { "service" } th.hide-narrow { "user" }
                    th.num { "fee (0G)" } th { "opened" } th { "deadline" } th.num { "votes guilty / not" }
                } }
                tbody {
                    @for d in rows {
                        tr data-dispute=(d.id) {
                            td.num { (d.id) }
                            td.bad[d.state == zg_chain::DisputeState::Guilty] { (d.state.as_str()) }
                            td { (service(d)) }
                            td.addr.hide-narrow { (d.user) }
                            (money(d.fee))
                            td { (unix_time(d.opened_at as i64)) }
                            td { (unix_time(d.deadline as i64)) }
                            td.num { (d.guilty_votes) " / " (d.not_guilty_votes) }
                        }
                    }
                    @if rows.is_empty() {
                        (empty_row(8, if view.disputes.is_ok() { "no dispute against this provider" } else { "the chain is not answering" }))
                    }
                }
            }
        }
    }
}

fn errors(view: &View) -> Markup {
    html! {
        div.scroll {
            table #errors .sortable data-live {
                thead { tr { th { "code" } th.num { "answers" } } }
                tbody {
                    @for (code, n) in &view.errors {
                        tr data-code=(code) { td { code { (code) } } td.num { (n) } }
                    }
                    @if view.errors.is_empty() { (empty_row(2, "no error answered since this broker started")) }
                }
            }
            p.muted { "Counted since this process started (as /metrics counts them)." }
        }
    }
}
