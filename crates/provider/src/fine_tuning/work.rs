//! The trainer: one job at a time, oldest first. Trains the LoRA adapter
//! (resuming from the job's last checkpoint), evaluates the validation
//! file, seals the adapter under a fresh content key and delivers the
//! sealed adapter's hash and the fee on chain.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::watch;
use zg_chain::JobState;
use zg_core::{
    B256, U256,
    fine_tuning::{Checkpoint, JobStatus, StepEvent},
    keccak256, now_unix,
    seal::{self, ContentKey},
};
use zg_finetune::{BaseModel, Dataset, FinetuneError, TrainConfig};

use super::{Tuner, record::JobDir, seed_of};

/// How a training run ended short of an adapter.
enum Stopped {
    /// The user cancelled, or the broker is stopping (the job then resumes
    /// from its last checkpoint at the next start).
    Cancelled,
    Failed(String),
}

impl Tuner {
    pub(super) async fn train_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            match self.next_queued() {
                Some(id) => self.run(id, stop.clone()).await,
                None => {
                    tokio::select! {
                        _ = self.queued.notified() => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }

    fn next_queued(&self) -> Option<B256> {
        let jobs = self.jobs();
        jobs.values()
            .filter(|r| r.status() == super::JobStatus::Queued)
            .min_by_key(|r| r.view.created_at)
            .map(|r| r.id())
    }

    async fn base(&self) -> Result<Arc<BaseModel>, String> {
        let path = self.config.base_model.clone();
        self.base
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || BaseModel::load(&path))
                    .await
                    .map_err(|e| e.to_string())?
                    .map(Arc::new)
                    .map_err(|e| format!("loading the base model: {e}"))
            })
            .await
            .cloned()
    }

    /// Trains, seals and delivers job `id`, recording how it ended.
    async fn run(self: &Arc<Self>, id: B256, mut stop: watch::Receiver<bool>) {
        // The user may have abandoned it on chain while it waited.
        match self.chain().job(id).await {
            Ok(info) if info.state != JobState::Training => {
                self.finish(
                    &id,
                    JobStatus::Cancelled,
                    Some(format!("the job is {:?} on chain", info.state)),
                );
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "could not read the job on chain; trying again soon");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                return;
            }
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let user_cancel = Arc::new(AtomicBool::new(false));
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, user_cancel.clone());
        self.update(&id, |r| r.view.status = JobStatus::Running);

        // Either flag stops the trainer between steps; which one says why.
        let watcher = {
            let (cancel, user_cancel) = (cancel.clone(), user_cancel.clone());
            tokio::spawn(async move {
                loop {
                    if user_cancel.load(Ordering::Relaxed) || *stop.borrow() {
                        cancel.store(true, Ordering::Relaxed);
                        return;
                    }
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    }
                }
            })
        };
        let trained = self.train(&id, cancel).await;
        watcher.abort();
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);

        let outcome = match trained {
            Ok(()) => self.deliver(&id).await,
            Err(stopped) => Err(stopped),
        };
        match outcome {
            Ok(()) => {}
            Err(Stopped::Cancelled) if user_cancel.load(Ordering::Relaxed) => {
                if let Err(e) = self.cancel_on_chain(&id, "cancelled by the user").await {
                    tracing::error!(job = %id, error = %e, "could not release a cancelled job on chain");
                }
            }
            Err(Stopped::Cancelled) => {
                self.update(&id, |r| r.view.status = JobStatus::Queued);
                tracing::info!(job = %id, "training paused: the broker is stopping; it resumes from the last checkpoint");
            }
            Err(Stopped::Failed(why)) => {
                tracing::error!(job = %id, why, "fine-tuning job failed: releasing its reservation");
                if let Err(e) = self.chain().cancel_job(id).await {
                    tracing::error!(job = %id, error = %e, "could not release a failed job on chain");
                }
                self.finish(&id, JobStatus::Failed, Some(why));
            }
        }
    }

    /// Trains job `id` into its adapter file (and evaluates the
    /// validation file), in a blocking thread.
    async fn train(self: &Arc<Self>, id: &B256, cancel: Arc<AtomicBool>) -> Result<(), Stopped> {
        let base = self.base().await.map_err(Stopped::Failed)?;
        let dir = JobDir::new(&self.config.work_dir, id);
        let Some(view) = self.view(id) else {
            return Err(Stopped::Failed("the job's record is gone".into()));
        };
        let h = view.order.hyperparameters;
        let config = TrainConfig {
            epochs: h.epochs as usize,
            learning_rate_multiplier: h.learning_rate_multiplier(),
            batch_size: h.batch_size as usize,
            rank: h.rank as usize,
            alpha: 2.0 * h.rank as f32,
            seed: seed_of(&view.order.nonce),
            checkpoint_every: self.config.checkpoint_every,
            max_steps: None,
        };
        let tuner = self.clone();
        let job = *id;
        let every = self.config.checkpoint_every as u64;
        tokio::task::spawn_blocking(move || {
            let read = |path: &std::path::Path| -> Result<Dataset, Stopped> {
                let bytes = std::fs::read(path)
                    .map_err(|e| Stopped::Failed(format!("reading {}: {e}", path.display())))?;
                Dataset::parse(&bytes).map_err(|e| Stopped::Failed(e.to_string()))
            };
            let training = read(&dir.training())?;
            let validation = if dir.validation().exists() {
                Some(read(&dir.validation())?)
            } else {
                None
            };
            let adapter = base
                .train(&training, &config, &dir.checkpoints(), &cancel, |p| {
                    let event = StepEvent {
                        step: p.step as u64,
                        total_steps: p.total_steps as u64,
                        train_loss: f64::from(p.loss),
                        at: now_unix(),
                    };
                    tuner.update(&job, |r| {
                        r.view.events.retain(|e| e.step < event.step);
                        r.view.events.push(event);
                        let saved =
                            event.step.is_multiple_of(every) || event.step == event.total_steps;
                        if saved {
                            r.view.checkpoints.retain(|c| c.step < event.step);
                            r.view.checkpoints.push(Checkpoint {
                                step: event.step,
                                train_loss: event.train_loss,
                                valid_loss: None,
                                at: event.at,
                            });
                        }
                    });
                })
                .map_err(|e| match e {
                    FinetuneError::Cancelled { .. } => Stopped::Cancelled,
                    other => Stopped::Failed(other.to_string()),
                })?;
            if let Some(validation) = validation {
                let loss = base
                    .evaluate(&validation, Some(&adapter))
                    .map_err(|e| Stopped::Failed(format!("validation: {e}")))?;
                tuner.update(&job, |r| {
                    if let Some(last) = r.view.checkpoints.last_mut() {
                        last.valid_loss = Some(f64::from(loss));
                    }
                });
            }
            adapter
                .save_gguf(&dir.adapter())
                .map_err(|e| Stopped::Failed(format!("writing the adapter: {e}")))
        })
        .await
        .map_err(|e| Stopped::Failed(format!("the trainer stopped: {e}")))?
    }

    /// Seals the adapter (reusing the sealed file and key a crash left
    /// between sealing and delivering) and delivers it on chain.
    async fn deliver(&self, id: &B256) -> Result<(), Stopped> {
        let dir = JobDir::new(&self.config.work_dir, id);
        let sealed = match (std::fs::read(dir.sealed()), dir.load_key()) {
            (Ok(sealed), Ok(_)) => sealed,
            _ => {
                let adapter = std::fs::read(dir.adapter())
                    .map_err(|e| Stopped::Failed(format!("reading the adapter: {e}")))?;
                let key = ContentKey::random();
                let sealed = seal::seal_adapter(&adapter, &key);
                dir.save_key(&key)
                    .and_then(|()| std::fs::write(dir.sealed(), &sealed))
                    .map_err(|e| Stopped::Failed(format!("writing the sealed adapter: {e}")))?;
                sealed
            }
        };
        let deliverable = keccak256(&sealed);
        let Some(view) = self.view(id) else {
            return Err(Stopped::Failed("the job's record is gone".into()));
        };
        let trained = U256::from(view.trained_tokens);
        let on_chain = self
            .chain()
            .job(*id)
            .await
            .map(|j| (j.state, j.deliverable));
        let already =
            matches!(on_chain, Ok((state, d)) if state != JobState::Training && d == deliverable);
        if !already {
            self.chain()
                .deliver_job(*id, deliverable, trained, view.fee)
                .await
                .map_err(|e| Stopped::Failed(format!("delivering on chain: {e}")))?;
        }
        self.update(id, |r| {
            r.view.status = JobStatus::Delivered;
            r.view.deliverable = Some(deliverable);
            r.view.adapter_bytes = Some(sealed.len() as u64);
        });
        tracing::info!(job = %id, %deliverable, fee = %view.fee, "fine-tuning job delivered: waiting for the user's acknowledgement");
        Ok(())
    }
}
