//! Audits: for services with a proof method, the gateway re-runs the proof
//! of a sample of the answers (each provider's first ones, then a random
//! share, and any a request asks for with `X-ZG-Audit: always`) in the
//! background, one at a time on a blocking thread, never on an answer's
//! path. The verdict goes into the book next to the receipt; a failure bans
//! the provider at once and, as the [`AuditPolicy`] says, opens a dispute
//! on chain with the user's wallet.

use crate::Gateway;
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::mpsc;
use tracing::Instrument;
use zg_client::{ClientError, PaidReceipt};
use zg_core::{Address, B256, Evidence, U256, format_amount};

/// The request header that asks for the answer's audit whatever the sample.
pub(crate) const HEADER: &str = "x-zg-audit";

/// Judges an answer's proof of model.
pub trait Checker: Send + Sync + 'static {
    /// Re-runs an answer's proof with the registered weights. Blocking (seconds of CPU).
    /// None when this machine cannot judge it (no GGUF with the receipt's modelDigest, or a request this version cannot verify).
    fn check(&self, evidence: &Evidence) -> Option<AuditResult>;
}

/// A checker's verdict on one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditResult {
    pub pass: bool,
    /// What the check found, for the book and the log.
    pub detail: String,
}

/// Which answers are audited, and what a failed audit does.
#[derive(Debug, Clone)]
pub struct AuditPolicy {
    /// Audit every answer of a provider's service for its first `first` answers.
    pub first: u32,
    /// Then this fraction of its answers, at random.
    pub fraction: f64,
    /// Open a dispute on a failed audit.
    pub dispute: bool,
    /// Never post a bond above this (neuron); above it: log and don't dispute.
    pub max_bond: U256,
    /// Audits waiting at most; when full, an audit is skipped and counted.
    pub queue: usize,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        Self {
            first: 10,
            fraction: 0.05,
            dispute: true,
            // 0.1 0G.
            max_bond: U256::from(100_000_000_000_000_000u64),
            queue: 64,
        }
    }
}

/// What the auditor did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditCounts {
    pub passed: u64,
    pub failed: u64,
    pub disputes: u64,
    /// Sampled but not judged: the queue was full, or this machine could
    /// not judge the answer (no weights with its modelDigest).
    pub skipped: u64,
}

/// Whether a request asked for its answer's audit (`X-ZG-Audit: always`).
pub(crate) fn asked(value: Option<&str>) -> Result<bool, ClientError> {
    match value.map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("always") => Ok(true),
        Some(v) => Err(ClientError::InvalidRequest(format!(
            "X-ZG-Audit: {v:?} is not understood; send \"always\" to have this answer audited whatever the sample, or no header"
        ))),
    }
}

/// The gateway's auditor: off until [`Gateway::start_audits`].
#[derive(Default)]
pub(crate) struct Audits {
    queue: OnceLock<Queue>,
    passed: AtomicU64,
    failed: AtomicU64,
    disputes: AtomicU64,
    skipped: AtomicU64,
}

struct Queue {
    jobs: mpsc::Sender<Job>,
    first: u32,
    fraction: f64,
    /// Paid answers of proof services seen, per (provider, service id).
    seen: Mutex<HashMap<(Address, B256), u32>>,
}

impl Queue {
    /// Counts an answer of `provider`'s `service`; whether it is in the sample.
    fn sample(&self, provider: Address, service: B256) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let n = seen.entry((provider, service)).or_default();
        *n = n.saturating_add(1);
        *n <= self.first || rand::random::<f64>() < self.fraction
    }
}

/// One answer to audit: its receipt's row in the book.
struct Job {
    receipt: i64,
    provider: Address,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Audits {
    /// Queues a paid answer for audit when it is in the sample or `always`
    /// asked; never waits (a full queue skips it).
    pub(crate) fn offer(&self, paid: &PaidReceipt, always: bool) {
        let Some(queue) = self.queue.get() else {
            return;
        };
        let receipt = &paid.signed.receipt;
        // Only an answer of a proof service binds a proof.
        if receipt.proof_digest.is_zero() {
            return;
        }
        let sampled = queue.sample(paid.provider, receipt.service);
        if !(sampled || always) {
            return;
        }
        let job = Job {
            receipt: paid.id,
            provider: paid.provider,
        };
        match queue.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                add(&self.skipped);
                tracing::info!(provider = %job.provider, receipt = job.receipt, "the audit queue is full: this answer is not audited");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn counts(&self) -> AuditCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AuditCounts {
            passed: get(&self.passed),
            failed: get(&self.failed),
            disputes: get(&self.disputes),
            skipped: get(&self.skipped),
        }
    }
}

impl Gateway {
    /// Starts the background audit worker (one check at a time, on a
    /// blocking thread). Call it once, within the gateway's runtime; a
    /// second call is ignored.
    pub fn start_audits(self: &Arc<Self>, checker: Arc<dyn Checker>, policy: AuditPolicy) {
        let (jobs, waiting) = mpsc::channel(policy.queue.max(1));
        let queue = Queue {
            jobs,
            first: policy.first,
            fraction: policy.fraction,
            seen: Mutex::default(),
        };
        if self.audits.queue.set(queue).is_err() {
            tracing::warn!("audits are already running: the second start is ignored");
            return;
        }
        tokio::spawn(work(Arc::downgrade(self), waiting, checker, policy));
    }

    /// (audits passed, audits failed, disputes opened) so far, for the dev demo's last line.
    pub fn audit_counts(&self) -> AuditCounts {
        self.audits.counts()
    }
}

/// The worker: audits queued answers in order until the gateway is gone.
async fn work(
    gw: Weak<Gateway>,
    mut waiting: mpsc::Receiver<Job>,
    checker: Arc<dyn Checker>,
    policy: AuditPolicy,
) {
    while let Some(job) = waiting.recv().await {
        let Some(gw) = gw.upgrade() else { break };
        let span = tracing::info_span!("audit", user = %gw.payer.user(), provider = %job.provider, receipt = job.receipt);
        audit(&gw, &checker, &policy, job).instrument(span).await;
    }
}

/// Judges one answer and acts on the verdict; problems are logged.
async fn audit(gw: &Gateway, checker: &Arc<dyn Checker>, policy: &AuditPolicy, job: Job) {
    let book = gw.payer.book();
    let evidence = match book.evidence(job.receipt).await {
        Ok(Some(evidence)) => evidence,
        // Not the answer of a proof service: nothing to judge.
        Ok(None) => return,
        Err(e) => {
            add(&gw.audits.skipped);
            tracing::warn!(error = %e, "could not read the answer's evidence: not audited");
            return;
        }
    };
    let checker = checker.clone();
    let checked = tokio::task::spawn_blocking(move || (checker.check(&evidence), evidence)).await;
    let (result, evidence) = match checked {
        Ok((Some(result), evidence)) => (result, evidence),
        Ok((None, _)) => {
            add(&gw.audits.skipped);
            tracing::debug!(
                "this machine cannot judge the answer (no weights with its modelDigest): not audited"
            );
            return;
        }
        Err(e) => {
            add(&gw.audits.skipped);
            tracing::error!(error = %e, "the audit's check stopped: not audited");
            return;
        }
    };
    if !result.pass {
        gw.ranking.ban(
            job.provider,
            format!(
                "failed the audit of receipt #{}: {}",
                job.receipt, result.detail
            ),
        );
        tracing::warn!(detail = %result.detail, "audit failed: the provider gets no more requests");
    }
    if let Err(e) = book
        .record_audit(job.receipt, result.pass, &result.detail, None)
        .await
    {
        tracing::warn!(error = %e, "could not store the audit's verdict");
    }
    if result.pass {
        gw.ranking.audit_passed(job.provider);
        add(&gw.audits.passed);
        return;
    }
    add(&gw.audits.failed);
    if policy.dispute {
        dispute(gw, policy, job.receipt, &evidence).await;
    }
}

/// Opens a dispute over the failed audit of receipt row `receipt`, posting
/// the contract's bond if the policy allows that much.
async fn dispute(gw: &Gateway, policy: &AuditPolicy, receipt: i64, evidence: &Evidence) {
    let bond = match gw.chain.dispute_rules().await {
        Ok(rules) => rules.bond,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the dispute rules: no dispute opened");
            return;
        }
    };
    if bond > policy.max_bond {
        tracing::warn!(
            bond = %format_amount(bond),
            max_bond = %format_amount(policy.max_bond),
            "no dispute opened: the contract's bond (0G) is above the audit policy's max bond; raise --audit-max-bond to dispute"
        );
        return;
    }
    match gw.chain.open_dispute(evidence, bond).await {
        Ok((id, _)) => {
            tracing::warn!(dispute = id, bond = %format_amount(bond), "opened a dispute over the failed audit");
            if let Err(e) = gw.payer.book().set_audit_dispute(receipt, id).await {
                tracing::warn!(dispute = id, error = %e, "could not note the dispute in the book");
            }
            add(&gw.audits.disputes);
        }
        Err(e) => tracing::warn!(error = %e, "could not open a dispute over the failed audit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_says_always_or_nothing() {
        assert!(!asked(None).unwrap());
        assert!(asked(Some("always")).unwrap());
        assert!(asked(Some(" Always ")).unwrap());
        for bad in ["", "never", "yes", "always,now"] {
            assert!(
                matches!(asked(Some(bad)), Err(ClientError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn every_first_answer_per_service_then_the_fraction() {
        let (jobs, _waiting) = mpsc::channel(1);
        let queue = Queue {
            jobs,
            first: 3,
            fraction: 0.0,
            seen: Mutex::default(),
        };
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let s = B256::repeat_byte(9);
        let picks: Vec<bool> = (0..5).map(|_| queue.sample(a, s)).collect();
        assert_eq!(picks, [true, true, true, false, false]);
        // Another provider's service, or another service, starts its own count.
        assert!(queue.sample(b, s));
        assert!(queue.sample(a, B256::ZERO));
        let all = Queue {
            fraction: 1.0,
            ..queue
        };
        assert!((0..20).all(|_| all.sample(a, s)));
    }
}
