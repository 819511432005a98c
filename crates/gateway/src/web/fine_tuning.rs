//! The fine-tuning page: the user's jobs, newest first, as the fine-tuning
//! API reports them (status, the last step's loss, the fee, the tuned
//! model and where its adapter lies); jobs are ordered through the API.

use super::frame;
use crate::Gateway;
use axum::extract::State;
use serde_json::Value;
use std::sync::Arc;
use zg_web::{Markup, amount, html, unix_time};

const TITLE: &str = "Fine-tuning · zg-serving gateway";

pub(super) async fn page(State(gw): State<Arc<Gateway>>) -> Markup {
    let jobs = gw.fine_tuning.jobs_as_openai().await;
    let body = html! {
        p.muted {
            "Jobs are ordered with OpenAI's fine-tuning API on this gateway (POST /v1/fine_tuning/jobs); "
            "a succeeded job's model answers here at /v1/chat/completions."
        }
        div.scroll {
            table #jobs .sortable data-live="" {
                thead { tr {
                    th { "Job" } th { "Base model" } th { "Status" } th.num { "Trained tokens" }
                    th.num { "Fee (0G)" } th { "Tuned model" } th { "Created" }
                } }
                tbody {
                    @for job in &jobs {
                        (row(job))
                    }
                    @if jobs.is_empty() {
                        tr.empty { td.muted colspan="7" { "no fine-tuning jobs yet" } }
                    }
                }
            }
        }
    };
    frame(TITLE, "/fine-tuning", body)
}

fn row(job: &Value) -> Markup {
    let text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "—".into());
    let fee = job["zg"]["fee_neuron"]
        .as_str()
        .and_then(|f| f.parse().ok())
        .map_or("—".into(), amount);
    let created = job["created_at"].as_i64().unwrap_or_default();
    html! {
        tr.job data-id=(text(&job["id"])) {
            td.id title=(text(&job["id"])) { code { (text(&job["id"]).chars().take(14).collect::<String>()) } }
            td { (text(&job["model"])) }
            td.status {
                (text(&job["status"]))
                @if let Some(message) = job["error"]["message"].as_str() { br; span.muted { (message) } }
            }
            td.num { (job["trained_tokens"].as_u64().map_or("—".into(), |t| t.to_string())) }
            td.num { (fee) }
            td {
                (text(&job["fine_tuned_model"]))
                @if let Some(path) = job["zg"]["adapter_path"].as_str() { br; span.muted { (path) } }
            }
            td data-sort=(created) { (unix_time(created)) }
        }
    }
}
