//! Following a job to its adapter, in the background: the provider's
//! progress (steps, checkpoints) while it trains; once delivered on chain,
//! the sealed adapter downloaded with range requests (a cut download
//! resumes) and its hash checked against the chain's deliverable before the
//! job is acknowledged; once settled, the content key opened with the
//! voucher key and the adapter written out as a GGUF LoRA file.

use super::{
    FtError, jobs_dir,
    provider::{self, Fault},
    record::{JobRecord, Status, job_name},
    write_atomic,
};
use crate::Gateway;
use reqwest::{StatusCode, header};
use std::{path::PathBuf, sync::Arc, time::Duration};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;
use zg_chain::{JobInfo, JobState};
use zg_client::pay::endpoint;
use zg_core::{
    B256,
    fine_tuning::{JobStatus, JobView, routes},
    format_amount, keccak256, now_unix, seal,
};

/// Between two looks at a job that is moving along.
const POLL: Duration = Duration::from_secs(2);
/// The longest wait between retries after errors (doubling up to it).
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Block times may run this far ahead of this machine's clock.
const CLOCK_SLACK_SECS: u64 = 60;
/// A LoRA adapter is megabytes; past this the provider is not sending one.
const MAX_ADAPTER_BYTES: u64 = 4 << 30;

enum Step {
    /// Look again after [`POLL`].
    Wait,
    Done,
}

enum Stop {
    /// Something is down or cut off: try again later.
    Retry(String),
    /// The job cannot end well: it fails with this code and message.
    Fail(&'static str, String),
}

impl From<FtError> for Stop {
    fn from(e: FtError) -> Self {
        Stop::Retry(e.to_string())
    }
}

impl From<zg_chain::ChainError> for Stop {
    fn from(e: zg_chain::ChainError) -> Self {
        Stop::Retry(e.to_string())
    }
}

/// Follows job `id` until it ends, unless a task already does.
pub(super) fn spawn(gw: Arc<Gateway>, id: B256) {
    let fresh = gw
        .fine_tuning
        .driving
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id);
    if !fresh {
        return;
    }
    let span =
        tracing::info_span!("fine_tuning_job", job = %job_name(&id), user = %gw.payer.user());
    tokio::spawn(
        async move {
            drive(&gw, &id).await;
            gw.fine_tuning
                .driving
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
        .instrument(span),
    );
}

async fn drive(gw: &Gateway, id: &B256) {
    let mut wait = POLL;
    loop {
        match step(gw, id).await {
            Ok(Step::Done) => return,
            Ok(Step::Wait) => wait = POLL,
            Err(Stop::Retry(why)) => {
                tracing::warn!(%why, retry_in_s = wait.as_secs(), "fine-tuning job: will look again");
                wait = (wait * 2).min(MAX_WAIT);
            }
            Err(Stop::Fail(code, message)) => {
                let failed = gw
                    .update_job(id, |r| {
                        if !r.status.is_final() {
                            r.finish(Status::Failed, Some((code, message)));
                        }
                    })
                    .await;
                if let Err(e) = failed {
                    tracing::error!(error = %e, "could not record the job's failure; it is looked at again at the next start");
                }
                return;
            }
        }
        tokio::time::sleep(wait).await;
    }
}

fn state_name(state: JobState) -> String {
    format!("{state:?}").to_lowercase()
}

/// One look at the job: what the chain and the provider say, and the next
/// move that follows from it.
async fn step(gw: &Gateway, id: &B256) -> Result<Step, Stop> {
    let Some(record) = gw.fine_tuning.job(id).await else {
        return Ok(Step::Done);
    };
    if record.status.is_final() {
        return Ok(Step::Done);
    }
    let info = gw.chain.job(*id).await?;
    let view = provider::view(gw.payer.http(), &record.url, id).await;
    let record = gw
        .update_job(id, |r| learn(r, &info, view.as_ref().ok()))
        .await?;
    if record.status.is_final() {
        return Ok(Step::Done);
    }
    match info.state {
        JobState::None => match view {
            // Until the order expires, the provider may still start it.
            Err(e) if e.is_not_found() && now_unix() > record.order.start_by + CLOCK_SLACK_SECS => {
                Err(Stop::Fail(
                    "job_not_started",
                    format!(
                        "the provider does not know this job and it never started on chain before its order expired ({e}); nothing was reserved"
                    ),
                ))
            }
            Err(e) if e.is_not_found() => Ok(Step::Wait),
            Err(e) => Err(Stop::Retry(e.to_string())),
            Ok(v) => provider_ended(gw, id, &v).await,
        },
        JobState::Training => match view {
            Ok(v) => provider_ended(gw, id, &v).await,
            Err(e) => Err(Stop::Retry(e.to_string())),
        },
        JobState::Delivered => {
            fetch_sealed(gw, &record, info.deliverable).await?;
            gw.chain.acknowledge_job(*id).await?;
            gw.update_job(id, |r| {
                    r.note(
                        "info",
                        "The adapter's hash matches the chain's deliverable: acknowledged, waiting for the provider to settle with the content key",
                    )
                })
                .await?;
            Ok(Step::Wait)
        }
        JobState::Acknowledged => Ok(Step::Wait),
        JobState::Settled => open(gw, &record, &info).await,
        JobState::Abandoned | JobState::Cancelled => {
            gw.update_job(id, |r| {
                r.note(
                    "info",
                    format!(
                        "The job was {} on chain; its reservation returned to escrow",
                        state_name(info.state)
                    ),
                );
                r.finish(Status::Cancelled, None);
            })
            .await?;
            Ok(Step::Done)
        }
    }
}

/// Copies what is new in the chain's and the provider's view into the record.
fn learn(r: &mut JobRecord, info: &JobInfo, view: Option<&JobView>) {
    if r.status.is_final() {
        return;
    }
    let state = state_name(info.state);
    if r.state_on_chain.as_ref() != Some(&state) {
        if info.state == JobState::Delivered {
            r.note(
                "info",
                format!(
                    "Delivered on chain: {} trained tokens, a fee of {} 0G; downloading the sealed adapter",
                    info.trained_tokens,
                    format_amount(info.fee)
                ),
            );
        }
        r.state_on_chain = Some(state);
    }
    if !info.fee.is_zero() {
        r.fee = Some(info.fee);
    }
    if !info.deliverable.is_zero() {
        r.deliverable = Some(info.deliverable);
    }
    if let Some(v) = view {
        r.steps.clone_from(&v.events);
        r.checkpoints.clone_from(&v.checkpoints);
        if v.trained_tokens > 0 {
            r.trained_tokens = Some(v.trained_tokens);
        }
    }
    let training =
        info.state != JobState::None || view.is_some_and(|v| v.status != JobStatus::Queued);
    if training && matches!(r.status, Status::ValidatingFiles | Status::Queued) {
        r.status = Status::Running;
    } else if r.status == Status::ValidatingFiles {
        r.status = Status::Queued;
    }
}

/// The job while the provider has it: ended there, or still going.
async fn provider_ended(gw: &Gateway, id: &B256, view: &JobView) -> Result<Step, Stop> {
    let why = view
        .error
        .clone()
        .unwrap_or_else(|| "no reason given".into());
    match view.status {
        JobStatus::Failed => Err(Stop::Fail(
            "training_failed",
            format!(
                "the provider's training failed: {why}; the reservation returns when it cancels the job on chain, or with an abandon after the delivery timeout"
            ),
        )),
        JobStatus::Cancelled => {
            gw.update_job(id, |r| {
                r.note("info", format!("Cancelled by the provider: {why}"));
                r.finish(Status::Cancelled, None);
            })
            .await?;
            Ok(Step::Done)
        }
        _ => Ok(Step::Wait),
    }
}

fn sealed_path(gw: &Gateway, id: &B256) -> Result<PathBuf, Stop> {
    Ok(jobs_dir(gw.fine_tuning.dir()?).join(format!("{}.sealed", hex::encode(id))))
}

fn part_path(sealed: &std::path::Path) -> PathBuf {
    let mut part = sealed.as_os_str().to_owned();
    part.push(".part");
    PathBuf::from(part)
}

/// The sealed adapter whose keccak256 is `deliverable`: the one kept, or
/// downloaded (resuming a cut download). A wrong hash fails the job, so it
/// is never acknowledged.
async fn fetch_sealed(
    gw: &Gateway,
    record: &JobRecord,
    deliverable: B256,
) -> Result<Vec<u8>, Stop> {
    let sealed = sealed_path(gw, &record.id)?;
    if let Ok(bytes) = tokio::fs::read(&sealed).await {
        if keccak256(&bytes) == deliverable {
            return Ok(bytes);
        }
        remove(&sealed).await?;
    }
    let part = part_path(&sealed);
    let resumed = download(gw, record, &part).await?;
    if let Some(bytes) = check(&part, &sealed, deliverable).await? {
        return Ok(bytes);
    }
    // A resumed download may have joined two different answers: once more,
    // whole, before blaming the provider.
    if resumed {
        download(gw, record, &part).await?;
        if let Some(bytes) = check(&part, &sealed, deliverable).await? {
            return Ok(bytes);
        }
    }
    Err(Stop::Fail(
        "adapter_hash_mismatch",
        format!(
            "the adapter the provider serves does not hash to the deliverable it put on chain ({deliverable}): not acknowledged, so the provider can take only the penalty share once the acknowledgement timeout passes"
        ),
    ))
}

/// The downloaded bytes when they hash to `deliverable` (kept as `sealed`);
/// otherwise the download is thrown away.
async fn check(
    part: &PathBuf,
    sealed: &PathBuf,
    deliverable: B256,
) -> Result<Option<Vec<u8>>, Stop> {
    let bytes = tokio::fs::read(part)
        .await
        .map_err(|e| Stop::Retry(format!("reading {}: {e}", part.display())))?;
    if keccak256(&bytes) != deliverable {
        tracing::warn!(got = %keccak256(&bytes), expected = %deliverable, bytes = bytes.len(),
                       "the downloaded adapter's hash is not the deliverable");
        remove(part).await?;
        return Ok(None);
    }
    tokio::fs::rename(part, sealed)
        .await
        .map_err(|e| Stop::Retry(format!("renaming {}: {e}", part.display())))?;
    Ok(Some(bytes))
}

async fn remove(path: &PathBuf) -> Result<(), Stop> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Stop::Retry(format!("removing {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

/// Downloads the sealed adapter into `part`, from where an earlier download
/// stopped; returns whether it continued an earlier one.
async fn download(gw: &Gateway, record: &JobRecord, part: &PathBuf) -> Result<bool, Stop> {
    if let Some(dir) = part.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Stop::Retry(format!("creating {}: {e}", dir.display())))?;
    }
    let have = tokio::fs::metadata(part).await.map_or(0, |m| m.len());
    let url = endpoint(&record.url, &routes::adapter(record.id));
    let mut request = gw.payer.http().get(&url);
    if have > 0 {
        request = request.header(header::RANGE, format!("bytes={have}-"));
    }
    let unreachable =
        |e: reqwest::Error| Stop::Retry(format!("downloading the adapter from {url}: {e}"));
    let mut response = request.send().await.map_err(unreachable)?;
    let resumed = match response.status() {
        StatusCode::PARTIAL_CONTENT => {
            // The range must start where the file ends, or the bytes would
            // land in the wrong place.
            let starts_at_end = response
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {have}-")));
            if !starts_at_end {
                remove(part).await?;
                return Err(Stop::Retry(format!(
                    "{url} answered a range that does not start at byte {have}: downloading again from the start"
                )));
            }
            have > 0
        }
        StatusCode::OK => false,
        // Nothing past what is here: the file is whole, or it is checked
        // and thrown away.
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => return Ok(true),
        status => {
            let fault = Fault::Refused {
                url: url.clone(),
                status: status.as_u16(),
                message: response
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect(),
            };
            return Err(Stop::Retry(fault.to_string()));
        }
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(part)
        .await
        .map_err(|e| Stop::Retry(format!("opening {}: {e}", part.display())))?;
    let mut written = if resumed { have } else { 0 };
    let io = |e: std::io::Error| Stop::Retry(format!("writing {}: {e}", part.display()));
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                // What came is kept: the next look resumes after it.
                file.flush().await.map_err(io)?;
                return Err(Stop::Retry(format!(
                    "the adapter's download broke off after {written} bytes ({e}); it resumes from there"
                )));
            }
        };
        written += chunk.len() as u64;
        if written > MAX_ADAPTER_BYTES {
            drop(file);
            remove(part).await?;
            return Err(Stop::Fail(
                "adapter_too_large",
                format!(
                    "the provider's adapter is over {MAX_ADAPTER_BYTES} bytes: a LoRA adapter is far smaller; not acknowledged"
                ),
            ));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)?;
    Ok(resumed)
}

/// The settled job: its content key opened with the voucher key, the
/// adapter decrypted and written out.
async fn open(gw: &Gateway, record: &JobRecord, info: &JobInfo) -> Result<Step, Stop> {
    let sealed = fetch_sealed(gw, record, info.deliverable).await?;
    let key = gw.chain.job_content_key(record.id).await?;
    if key.is_empty() {
        return Err(Stop::Fail(
            "no_content_key",
            "the provider settled without the content key (the job was not acknowledged in time), so it was paid only the penalty share and the adapter cannot be opened".into(),
        ));
    }
    let key = seal::open_key(&key, gw.payer.signing_key(), &record.id).map_err(|e| {
        Stop::Fail(
            "bad_content_key",
            format!("the content key on chain does not open with this gateway's voucher key: {e}"),
        )
    })?;
    let adapter = seal::open_adapter(&sealed, &key).map_err(|e| {
        Stop::Fail(
            "bad_adapter",
            format!("the adapter does not decrypt with the content key on chain: {e}"),
        )
    })?;
    if !adapter.starts_with(b"GGUF") {
        return Err(Stop::Fail(
            "bad_adapter",
            "the decrypted adapter is not a GGUF file".into(),
        ));
    }
    let name = record.model_name();
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = gw
        .fine_tuning
        .dir()?
        .join("adapters")
        .join(format!("{file}.gguf"));
    write_atomic(&path, &adapter).await?;
    let trained: u64 = info.trained_tokens.saturating_to();
    gw.update_job(&record.id, |r| {
        r.fine_tuned_model = Some(name.clone());
        r.adapter_path = Some(path.clone());
        r.fee = Some(info.fee);
        r.trained_tokens = Some(trained);
        r.note(
            "info",
            format!(
                "Settled for {} 0G: the adapter is at {}",
                format_amount(info.fee),
                path.display()
            ),
        );
        r.note(
            "info",
            format!("The job has successfully completed: {name}"),
        );
        r.finish(Status::Succeeded, None);
    })
    .await?;
    // The adapter is out; the sealed copy is only a cache of the download.
    if let Err(e) = tokio::fs::remove_file(&sealed_path(gw, &record.id)?).await {
        tracing::debug!(error = %e, "could not remove the sealed adapter");
    }
    Ok(Step::Done)
}
