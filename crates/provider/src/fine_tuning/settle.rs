//! Settling delivered jobs: the watcher reads each delivered job's state
//! on chain; once the user acknowledged, it settles with the content key
//! sealed to the order's signer (the whole fee); once the acknowledgement
//! is overdue, it settles without the key (the penalty share).

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use zg_chain::{JobInfo, JobState};
use zg_core::{B256, fine_tuning::JobStatus, now_unix, seal};

use super::{Tuner, record::JobDir};

/// How often delivered jobs are looked up on chain.
const POLL: Duration = Duration::from_secs(1);

impl Tuner {
    pub(super) async fn settle_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let delivered: Vec<B256> = self
                .jobs()
                .values()
                .filter(|r| r.status() == JobStatus::Delivered)
                .map(|r| r.id())
                .collect();
            for id in delivered {
                if let Err(e) = self.settle_one(&id).await {
                    tracing::warn!(job = %id, error = %e, "could not settle the job yet; trying again");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    async fn settle_one(&self, id: &B256) -> Result<(), String> {
        let info = self.chain().job(*id).await.map_err(|e| e.to_string())?;
        match info.state {
            JobState::Acknowledged => self.settle_acknowledged(id).await,
            JobState::Delivered => self.settle_overdue(id, &info).await,
            JobState::Settled => {
                // Settled by an earlier run whose record update was lost.
                self.finish(id, JobStatus::Succeeded, None);
                Ok(())
            }
            other => {
                self.finish(
                    id,
                    JobStatus::Cancelled,
                    Some(format!("the job is {other:?} on chain")),
                );
                Ok(())
            }
        }
    }

    async fn settle_acknowledged(&self, id: &B256) -> Result<(), String> {
        let signature = self
            .jobs()
            .get(id)
            .map(|r| r.signature)
            .ok_or("the job's record is gone")?;
        let key = JobDir::new(&self.config.work_dir, id)
            .load_key()
            .map_err(|e| format!("reading the content key: {e}"))?;
        let sealed = seal::seal_key(&key, &signature, id).map_err(|e| e.to_string())?;
        self.chain()
            .settle_job(*id, &sealed)
            .await
            .map_err(|e| e.to_string())?;
        self.finish(id, JobStatus::Succeeded, None);
        tracing::info!(job = %id, "fine-tuning job settled: the fee is paid and the content key published");
        Ok(())
    }

    async fn settle_overdue(&self, id: &B256, info: &JobInfo) -> Result<(), String> {
        let rules = self
            .chain()
            .fine_tuning_rules()
            .await
            .map_err(|e| e.to_string())?;
        if now_unix() < info.delivered_at.saturating_add(rules.ack_timeout) {
            return Ok(());
        }
        self.chain()
            .settle_job(*id, &[])
            .await
            .map_err(|e| e.to_string())?;
        self.finish(
            id,
            JobStatus::Failed,
            Some(format!(
                "not acknowledged within {} s of delivery: settled for the penalty share ({} bps of the fee), the adapter stays with the provider",
                rules.ack_timeout, rules.penalty_bps
            )),
        );
        Ok(())
    }
}
