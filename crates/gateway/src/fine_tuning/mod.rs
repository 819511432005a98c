//! OpenAI's files and fine-tuning APIs in the gateway: uploads kept under the
//! data directory (`files`), jobs ordered from the cheapest fine-tuning
//! service that accepts them (`order`), listed, read and cancelled
//! (`jobs`, records in `record`), and each job
//! followed to its adapter: downloaded, checked against the chain,
//! acknowledged, opened and written out (`delivery`); the user's `ft:`
//! models are then answered on this machine (`local`).

mod delivery;
mod files;
mod jobs;
mod local;
mod order;
mod provider;
mod record;

use crate::{
    Gateway,
    keys::{Hold, KeyRefusal},
};
use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use record::JobRecord;
use serde_json::Value;
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
};
use zg_chain::ChainError;
use zg_client::ClientError;
use zg_core::{B256, ErrorBody, ErrorCode, U256};

pub(crate) use local::{answer as answer_locally, names_fine_tuned};

/// The files and fine-tuning routes, OpenAI's paths.
pub(crate) fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route(
            "/v1/files",
            post(files::upload)
                .get(files::list)
                // Room for the multipart framing around the largest file, so
                // that an oversized file gets the files API's own message.
                .layer(DefaultBodyLimit::max(files::MAX_BYTES + (1 << 20))),
        )
        .route("/v1/files/{id}", get(files::get).delete(files::delete))
        .route("/v1/files/{id}/content", get(files::content))
        .route("/v1/fine_tuning/jobs", post(order::create).get(jobs::list))
        .route("/v1/fine_tuning/jobs/{id}", get(jobs::get))
        .route("/v1/fine_tuning/jobs/{id}/events", get(jobs::events))
        .route(
            "/v1/fine_tuning/jobs/{id}/checkpoints",
            get(jobs::checkpoints),
        )
        .route("/v1/fine_tuning/jobs/{id}/cancel", post(jobs::cancel))
}

/// The gateway's fine-tuning state: where files and adapters live, and the
/// job records (mirrored on disk, one JSON file per job).
pub(crate) struct FineTuning {
    dir: Option<PathBuf>,
    /// Held across each record's file write, so the disk never ends on an
    /// older state than memory when two writers race.
    jobs: tokio::sync::Mutex<BTreeMap<B256, JobRecord>>,
    /// Jobs whose delivery task runs, so a resume never starts a second.
    driving: std::sync::Mutex<HashSet<B256>>,
    /// Engines answering the user's `ft:` models on this machine.
    local: local::Local,
}

impl FineTuning {
    /// Reads the job records under `dir` (None: the API answers that the
    /// gateway has no data directory). A record that does not parse is
    /// skipped with a warning rather than keeping the gateway down.
    pub(crate) fn open(dir: Option<PathBuf>, models_dir: Option<PathBuf>) -> Self {
        let mut jobs = BTreeMap::new();
        if let Some(dir) = &dir {
            for record in record::load_all(&jobs_dir(dir)) {
                jobs.insert(record.id, record);
            }
        }
        Self {
            dir,
            jobs: tokio::sync::Mutex::new(jobs),
            driving: Default::default(),
            local: local::Local::new(models_dir),
        }
    }

    fn dir(&self) -> Result<&Path, FtError> {
        self.dir.as_deref().ok_or(FtError::NoDataDir)
    }

    async fn job(&self, id: &B256) -> Option<JobRecord> {
        self.jobs.lock().await.get(id).cloned()
    }

    /// Writes `record` to disk, then to memory.
    async fn save(&self, record: JobRecord) -> Result<(), FtError> {
        let dir = jobs_dir(self.dir()?);
        let mut jobs = self.jobs.lock().await;
        record.write(&dir).await?;
        jobs.insert(record.id, record);
        Ok(())
    }

    /// Changes job `id` with `change` and saves it; returns the new record.
    /// (Through [`Gateway::update_job`], which settles the API key's charge.)
    async fn update(
        &self,
        id: &B256,
        change: impl FnOnce(&mut JobRecord),
    ) -> Result<JobRecord, FtError> {
        let dir = jobs_dir(self.dir()?);
        let mut jobs = self.jobs.lock().await;
        let Some(record) = jobs.get_mut(id) else {
            return Err(FtError::NotFound {
                what: "fine-tuning job",
                id: record::job_name(id),
                list: "/v1/fine_tuning/jobs",
            });
        };
        let mut changed = record.clone();
        change(&mut changed);
        // A poll that learned nothing new writes nothing.
        if changed == *record {
            return Ok(changed);
        }
        changed.write(&dir).await?;
        *record = changed.clone();
        Ok(changed)
    }

    async fn forget(&self, id: &B256) -> Result<(), FtError> {
        let dir = jobs_dir(self.dir()?);
        self.jobs.lock().await.remove(id);
        record::remove(&dir, id).await
    }

    /// The base model's digest and the adapter file of the user's
    /// fine-tuned model `model`, once its job succeeded.
    async fn adapter_of(&self, model: &str) -> Option<(B256, PathBuf)> {
        let jobs = self.jobs.lock().await;
        let record = jobs
            .values()
            .find(|r| r.fine_tuned_model.as_deref() == Some(model))?;
        Some((record.order.base_model, record.adapter_path.clone()?))
    }

    /// Every job as the API shows it, newest first (for the web page).
    pub(crate) async fn jobs_as_openai(&self) -> Vec<Value> {
        let jobs = self.jobs.lock().await;
        let mut records: Vec<&JobRecord> = jobs.values().collect();
        records.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        records.iter().map(|r| r.to_openai()).collect()
    }

    /// The succeeded jobs' models, for `/v1/models`.
    pub(crate) async fn models(&self) -> Vec<Value> {
        self.jobs
            .lock()
            .await
            .values()
            .filter_map(JobRecord::model_entry)
            .collect()
    }
}

impl Gateway {
    /// Changes job `id` with `change` and saves it; once the job has ended,
    /// gives the API key that ordered it back what it did not cost (the key
    /// was charged the order's maxFee at the start). The record lets go of
    /// the key first: a crash between the two loses a credit, never pays one twice.
    async fn update_job(
        &self,
        id: &B256,
        change: impl FnOnce(&mut JobRecord),
    ) -> Result<JobRecord, FtError> {
        let mut key = None;
        let record = self
            .fine_tuning
            .update(id, |r| {
                change(r);
                if r.status.is_final() {
                    key = r.key.take();
                }
            })
            .await?;
        if let Some(key) = key {
            let unspent = record.order.max_fee.saturating_sub(record.cost());
            self.keys.credit(key, unspent).await?;
        }
        Ok(record)
    }

    /// Starts delivery of every unfinished job (a gateway that stopped
    /// mid-download or mid-settlement picks up where it was).
    pub(crate) async fn resume_fine_tuning(self: &Arc<Self>) {
        let unfinished: Vec<B256> = self
            .fine_tuning
            .jobs
            .lock()
            .await
            .values()
            .filter(|r| !r.status.is_final())
            .map(|r| r.id)
            .collect();
        for id in unfinished {
            delivery::spawn(self.clone(), id);
        }
    }
}

fn jobs_dir(dir: &Path) -> PathBuf {
    dir.join("fine_tuning")
}

/// A handler's answer: `result` as JSON, or its error in OpenAI's shape.
fn respond<T: serde::Serialize>(result: Result<T, FtError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Checks the request's API key (open while the gateway has none) and
/// holds `most` neuron against its spend limit; the caller closes the hold
/// with what was spent.
async fn hold(gw: &Gateway, headers: &HeaderMap, most: U256) -> Result<Hold, FtError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    gw.keys.hold(bearer, most).await?.map_err(FtError::Key)
}

async fn authorize(gw: &Gateway, headers: &HeaderMap) -> Result<(), FtError> {
    let hold = hold(gw, headers, U256::ZERO).await?;
    Ok(gw.keys.close(hold, U256::ZERO).await?)
}

/// Why a files or fine-tuning request failed; each answers OpenAI's error shape.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FtError {
    #[error(
        "this gateway keeps no files: the files and fine-tuning APIs need a data directory (start the gateway with --data-dir DIR)"
    )]
    NoDataDir,
    #[error("{message}")]
    Invalid {
        message: String,
        param: Option<&'static str>,
    },
    #[error("no {what} {id:?}: GET {list} lists them")]
    NotFound {
        what: &'static str,
        id: String,
        list: &'static str,
    },
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Escrow(String),
    #[error("{0}")]
    Key(KeyRefusal),
    #[error("{0}")]
    Provider(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FtError {
    fn invalid(message: impl Into<String>, param: &'static str) -> Self {
        Self::Invalid {
            message: message.into(),
            param: Some(param),
        }
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

impl IntoResponse for FtError {
    fn into_response(self) -> Response {
        let (code, param) = match &self {
            Self::NoDataDir => (ErrorCode::InvalidRequest, None),
            Self::Invalid { param, .. } => (ErrorCode::InvalidRequest, *param),
            Self::NotFound { .. } => (ErrorCode::NotFound, None),
            Self::TooLarge(_) => (ErrorCode::RequestTooLarge, Some("file")),
            Self::Escrow(_) => (ErrorCode::InsufficientEscrow, None),
            Self::Key(KeyRefusal::Limit { .. }) => (ErrorCode::RateLimited, None),
            Self::Key(_) => (ErrorCode::Unauthorized, None),
            Self::Provider(_) | Self::Chain(_) | Self::Client(_) => {
                (ErrorCode::UpstreamFailed, None)
            }
            Self::Io { .. } => (ErrorCode::Internal, None),
        };
        let body = ErrorBody::raw(code.as_str(), code.error_type(), self.to_string(), param);
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(body)).into_response()
    }
}

/// Writes `bytes` to `path` whole or not at all (a temp file, then a rename).
async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FtError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(FtError::io("creating", parent))?;
    }
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    tokio::fs::write(&temp, bytes)
        .await
        .map_err(FtError::io("writing", &temp))?;
    tokio::fs::rename(&temp, path)
        .await
        .map_err(FtError::io("renaming into place", path))
}

/// `after` and `limit` of OpenAI's list endpoints over `items` (already in
/// the order listed): the page, and whether more follow.
fn page<T>(
    items: Vec<T>,
    id: impl Fn(&T) -> String,
    after: Option<&str>,
    limit: usize,
) -> (Vec<T>, bool) {
    let start = after
        .and_then(|a| items.iter().position(|i| id(i) == a).map(|p| p + 1))
        .unwrap_or(0);
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let has_more = rest.len() > limit;
    rest.truncate(limit);
    (rest, has_more)
}

/// OpenAI's `limit` query parameter: 1 to `max`, `default` when absent.
fn limit(given: Option<i64>, default: usize, max: usize) -> Result<usize, FtError> {
    match given {
        None => Ok(default),
        Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
        Some(n) => Err(FtError::invalid(
            format!("limit {n} is out of range: give 1 to {max}"),
            "limit",
        )),
    }
}
