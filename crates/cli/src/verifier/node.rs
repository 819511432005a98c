//! The verifier node's loop: new `DisputeOpened` events, their evidence from
//! calldata, a check with the registered weights, a signed verdict sent to
//! the contract; and its Prometheus metrics.

use anyhow::Result;
use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::watch::Receiver;
use zg_chain::{ChainClient, DisputeState, OpenedDispute};
use zg_core::{SigningKey, Verdict};
use zg_engine::verify::{Judgement, Shelf};

pub(crate) struct NodeSettings {
    pub poll: Duration,
    pub from_block: u64,
}

/// What the node did, for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    pub disputes_seen: AtomicU64,
    pub guilty: AtomicU64,
    pub not_guilty: AtomicU64,
    pub abstained: AtomicU64,
    pub errors: AtomicU64,
    pub last_block: AtomicU64,
    pub verify_micros: AtomicU64,
}

impl Metrics {
    fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "zg_verifier_disputes_seen_total",
            "counter",
            "Disputes this node looked at.",
            &[("", get(&self.disputes_seen))],
        );
        metric(
            "zg_verifier_verdicts_total",
            "counter",
            "Verdicts signed and accepted by the contract.",
            &[
                ("{verdict=\"guilty\"}", get(&self.guilty)),
                ("{verdict=\"not_guilty\"}", get(&self.not_guilty)),
            ],
        );
        metric(
            "zg_verifier_abstained_total",
            "counter",
            "Disputes left undecided: no registered weights here, or a request this version cannot check.",
            &[("", get(&self.abstained))],
        );
        metric(
            "zg_verifier_errors_total",
            "counter",
            "Chain or node failures (retried on the next poll).",
            &[("", get(&self.errors))],
        );
        metric(
            "zg_verifier_last_block",
            "gauge",
            "The last block scanned for disputes.",
            &[("", get(&self.last_block))],
        );
        metric(
            "zg_verifier_verify_seconds_total",
            "counter",
            "Time spent re-running proofs.",
            &[],
        );
        let _ = writeln!(
            out,
            "zg_verifier_verify_seconds_total {:.3}",
            get(&self.verify_micros) as f64 / 1e6
        );
        out
    }
}

/// `GET /metrics` and `GET /health` on `listener` until the task is dropped.
pub(crate) async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> Result<()> {
    use axum::{Router, routing::get};
    let app = Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route("/health", get(|| async { "ok" }));
    axum::serve(listener, app).await?;
    Ok(())
}

/// Polls for disputes and votes on each open one once, until `stop`.
pub(crate) async fn watch(
    chain: ChainClient,
    key: SigningKey,
    shelf: Arc<Shelf>,
    settings: NodeSettings,
    metrics: Arc<Metrics>,
    mut stop: Receiver<bool>,
) -> Result<()> {
    let mut from = settings.from_block;
    // Disputes seen but not yet judged (a chain error is retried next poll).
    let mut pending: Vec<OpenedDispute> = Vec::new();
    loop {
        match scan(&chain, from).await {
            Ok((latest, opened)) => {
                pending.extend(opened);
                from = latest + 1;
                metrics.last_block.store(latest, Ordering::Relaxed);
            }
            Err(e) => {
                metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("reading disputes: {e:#}");
            }
        }
        let mut left = Vec::new();
        for dispute in pending.drain(..) {
            if let Err(e) = vote(&chain, &key, &shelf, &metrics, &dispute).await {
                metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(dispute = dispute.id, "{e:#} (retrying on the next poll)");
                left.push(dispute);
            }
        }
        pending = left;
        tokio::select! {
            _ = tokio::time::sleep(settings.poll) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

async fn scan(chain: &ChainClient, from: u64) -> Result<(u64, Vec<OpenedDispute>)> {
    let latest = chain.block_number().await?;
    if latest < from {
        return Ok((from.saturating_sub(1), Vec::new()));
    }
    Ok((latest, chain.opened_disputes(from).await?))
}

/// Votes on `dispute` unless it is decided, past its deadline, or voted on.
/// An error leaves it for the next poll.
async fn vote(
    chain: &ChainClient,
    key: &SigningKey,
    shelf: &Arc<Shelf>,
    metrics: &Metrics,
    dispute: &OpenedDispute,
) -> Result<()> {
    let id = dispute.id;
    let info = chain.dispute(id).await?;
    if info.state != DisputeState::Open
        || info.deadline < zg_core::now_unix()
        || chain.has_voted(id, key.address()).await?
    {
        return Ok(());
    }
    metrics.disputes_seen.fetch_add(1, Ordering::Relaxed);
    let evidence = chain.dispute_evidence(dispute.tx_hash).await?;
    let started = Instant::now();
    let judging = shelf.clone();
    let decision = tokio::task::spawn_blocking(move || judging.judge(&evidence))
        .await
        .unwrap_or_else(|e| Judgement::Abstain(format!("the check panicked: {e}")));
    metrics.verify_micros.fetch_add(
        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    let (guilty, why) = match decision {
        Judgement::Vote { guilty, why } => (guilty, why),
        Judgement::Abstain(why) => {
            metrics.abstained.fetch_add(1, Ordering::Relaxed);
            tracing::info!(dispute = id, "abstaining: {why}");
            return Ok(());
        }
    };
    let verdict = Verdict {
        dispute: id,
        guilty,
    };
    let signature = verdict.sign(key, &chain.domain());
    match chain.submit_verdict(verdict, &signature).await {
        Ok(outcome) => {
            let counter = if guilty {
                &metrics.guilty
            } else {
                &metrics.not_guilty
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::info!(dispute = id, guilty, tx = %outcome.tx_hash, "verdict sent: {why}");
            Ok(())
        }
        // Quorum was reached by others first, or the deadline passed.
        Err(e) if e.revert().is_some() => {
            tracing::info!(dispute = id, "verdict not counted: {e}");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = Metrics::default();
        m.guilty.fetch_add(2, Ordering::Relaxed);
        m.verify_micros.fetch_add(1_500_000, Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains("zg_verifier_verdicts_total{verdict=\"guilty\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("zg_verifier_verify_seconds_total 1.500"),
            "{text}"
        );
    }
}
