//! OpenAI's fine-tuning jobs API once a job is ordered (`order`): listed,
//! read with its events and checkpoints, and cancelled from here.

use super::{
    FtError, authorize, limit, page,
    provider::{self, Fault},
    record::{JobRecord, Status, parse_job_name},
    respond,
};
use crate::Gateway;
use axum::{
    extract::{Path, Query, State},
    http::HeaderMap,
    response::Response,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use zg_core::{
    B256,
    fine_tuning::{CancelJob, cancel_digest},
};

/// The job `name` names, or OpenAI's 404.
async fn find(gw: &Gateway, name: &str) -> Result<JobRecord, FtError> {
    let not_found = || FtError::NotFound {
        what: "fine-tuning job",
        id: name.to_owned(),
        list: "/v1/fine_tuning/jobs",
    };
    let id = parse_job_name(name).ok_or_else(not_found)?;
    gw.fine_tuning.dir()?;
    gw.fine_tuning.job(&id).await.ok_or_else(not_found)
}

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    after: Option<String>,
    limit: Option<i64>,
}

fn list_body(data: Vec<Value>, has_more: bool) -> Value {
    json!({ "object": "list", "data": data, "has_more": has_more })
}

/// `GET /v1/fine_tuning/jobs`: newest first.
pub(super) async fn list(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        gw.fine_tuning.dir()?;
        let limit = limit(q.limit, 20, 100)?;
        let mut jobs: Vec<JobRecord> = gw.fine_tuning.jobs.lock().await.values().cloned().collect();
        jobs.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        let (data, has_more) = page(jobs, JobRecord::name, q.after.as_deref(), limit);
        Ok(list_body(
            data.iter().map(JobRecord::to_openai).collect(),
            has_more,
        ))
    }
    .await;
    respond(result)
}

/// `GET /v1/fine_tuning/jobs/{id}`.
pub(super) async fn get(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        Ok(find(&gw, &name).await?.to_openai())
    }
    .await;
    respond(result)
}

/// A page of `items`, listed by their `id` field.
fn paged(items: Vec<Value>, q: &PageQuery) -> Result<Value, FtError> {
    let limit = limit(q.limit, 20, 1000)?;
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    let (data, has_more) = page(items, id, q.after.as_deref(), limit);
    let mut body = list_body(data, has_more);
    let data = body["data"].as_array().cloned().unwrap_or_default();
    body["first_id"] = data.first().map(id).into();
    body["last_id"] = data.last().map(id).into();
    Ok(body)
}

/// `GET /v1/fine_tuning/jobs/{id}/events`: newest first.
pub(super) async fn events(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        paged(find(&gw, &name).await?.events(), &q)
    }
    .await;
    respond(result)
}

/// `GET /v1/fine_tuning/jobs/{id}/checkpoints`: newest first.
pub(super) async fn checkpoints(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        paged(find(&gw, &name).await?.checkpoints(), &q)
    }
    .await;
    respond(result)
}

/// Abandons job `id` on chain when the provider failed to cancel it (`why`)
/// and the contract allows it (undelivered past its delivery timeout);
/// else says why not, and from when.
async fn abandon_if_due(gw: &Gateway, id: &B256, why: &Fault) -> Result<(), FtError> {
    let refused = |message: String| {
        if why.is_refusal() {
            FtError::invalid(message, "fine_tuning_job_id")
        } else {
            FtError::Provider(message)
        }
    };
    let chain_error = |e: zg_chain::ChainError| FtError::Provider(e.to_string());
    let job = gw.chain.job(*id).await.map_err(chain_error)?;
    if job.state != zg_chain::JobState::Training {
        return Err(refused(format!(
            "the provider would not cancel ({why}), and the job is {:?} on chain",
            job.state
        )));
    }
    match gw.chain.abandon_job(*id).await {
        Ok(_) => Ok(()),
        Err(e) => match e.job_revert() {
            Some(zg_chain::bindings::FineTuning::FineTuningErrors::TooEarly(early)) => {
                Err(refused(format!(
                    "the provider would not cancel ({why}); an undelivered job can be abandoned on chain from unix time {}: cancel again then",
                    early.at
                )))
            }
            _ => Err(chain_error(e)),
        },
    }
}

/// `POST /v1/fine_tuning/jobs/{id}/cancel`: the user's signed request to
/// the provider, which cancels on chain and returns the reservation (or,
/// past the delivery timeout of a provider that does not, the user's
/// abandon on chain).
pub(super) async fn cancel(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let result = async {
        authorize(&gw, &headers).await?;
        let record = find(&gw, &name).await?;
        if record.status.is_final() {
            return Err(FtError::invalid(
                format!(
                    "job {name} has already ended ({}): there is nothing to cancel",
                    json!(record.status).as_str().unwrap_or_default()
                ),
                "fine_tuning_job_id",
            ));
        }
        let signature = gw.payer.signing_key().sign_hash(&cancel_digest(&record.id));
        let cancelled = provider::cancel(
            gw.payer.http(),
            &record.url,
            &record.id,
            &CancelJob { signature },
        )
        .await;
        let note = match cancelled {
            Ok(_) => "Cancelled at the provider; the reservation returns to escrow",
            // A provider that is gone (or will not stop) cannot hold the
            // money past the delivery timeout: the user takes it back.
            Err(e) => {
                abandon_if_due(&gw, &record.id, &e).await?;
                "The provider did not cancel and the delivery timeout passed: abandoned on chain, the reservation returned to escrow"
            }
        };
        let record = gw.update_job(&record.id, |r| {
                r.note("info", note);
                r.finish(Status::Cancelled, None);
            })
            .await?;
        Ok(record.to_openai())
    }
    .await;
    respond(result)
}
