//! The fine-tuning service (`[fine_tuning]`): admits jobs on a user's
//! signed order (checked here, then started on chain, which reserves the
//! maximum fee), trains them one at a time (`work`), delivers the sealed
//! adapter and settles once the user acknowledges (`settle`). Jobs live in
//! files (`record`), so a restarted broker resumes training from the last
//! checkpoint and watches deliveries it made before.

mod record;
mod settle;
mod work;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::{Notify, OnceCell};
use zg_chain::ChainClient;
use zg_core::{
    Address, B256, ErrorCode, Signature, U256,
    fine_tuning::{
        CancelJob, Count, CountRequest, JobStatus, JobView, Order, StartJob, cancel_digest,
    },
    format_amount, keccak256, now_unix,
};

use crate::{config::FineTuningConfig, error::ApiError, escrow::ChainView, store::Store};
use record::{JobDir, JobRecord};

/// Most examples one step may hold, and the largest LoRA rank: bounds on
/// the memory and time one order can ask for.
const MAX_BATCH: u32 = 64;
const MAX_RANK: u32 = 64;

/// The fine-tuning service's state, shared by the routes and the worker.
pub(crate) struct Tuner {
    config: FineTuningConfig,
    /// sha256 of the base model: what orders must name.
    digest: B256,
    /// The chain, with the escrow the chat services count on (and below,
    /// their books): a job's reservation must leave what backs the user's
    /// unsettled answers.
    escrow: Arc<ChainView>,
    store: Arc<dyn Store>,
    jobs: Mutex<BTreeMap<B256, JobRecord>>,
    /// Set for a job the user cancelled (checked between training steps).
    cancels: Mutex<HashMap<B256, Arc<AtomicBool>>>,
    /// Wakes the trainer when a job is queued.
    queued: Notify,
    base: OnceCell<Arc<zg_finetune::BaseModel>>,
}

impl Tuner {
    /// Reads the base model's digest and the jobs a previous run left.
    pub(crate) async fn open(
        config: FineTuningConfig,
        escrow: Arc<ChainView>,
        store: Arc<dyn Store>,
    ) -> Result<Arc<Self>, String> {
        let path = config.base_model.clone();
        // The sha256 the engine registers for the same file.
        let digest = tokio::task::spawn_blocking(move || zg_engine::verify::model_digest(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
            .and_then(|hex| {
                format!("0x{hex}")
                    .parse::<B256>()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| {
                format!(
                    "fine_tuning.base_model {}: {e}",
                    config.base_model.display()
                )
            })?;
        let records = record::load_all(&config.work_dir)
            .map_err(|e| format!("fine_tuning.work_dir {}: {e}", config.work_dir.display()))?;
        let mut jobs = BTreeMap::new();
        for mut r in records {
            // A job a crash stopped mid-training resumes from its checkpoint.
            if r.status() == JobStatus::Running {
                r.view.status = JobStatus::Queued;
            }
            jobs.insert(r.id(), r);
        }
        Ok(Arc::new(Self {
            config,
            digest,
            escrow,
            store,
            jobs: Mutex::new(jobs),
            cancels: Mutex::default(),
            queued: Notify::new(),
            base: OnceCell::new(),
        }))
    }

    pub(crate) fn config(&self) -> &FineTuningConfig {
        &self.config
    }

    fn chain(&self) -> &ChainClient {
        self.escrow.chain()
    }

    pub(crate) fn digest(&self) -> B256 {
        self.digest
    }

    /// The trainer and the settlement watcher, until `stop` turns true.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.clone().train_loop(stop.clone())),
            tokio::spawn(self.clone().settle_loop(stop)),
        ]
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<B256, JobRecord>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes job `id`'s record with `change` and saves it.
    fn update(&self, id: &B256, change: impl FnOnce(&mut JobRecord)) {
        let mut jobs = self.jobs();
        if let Some(record) = jobs.get_mut(id) {
            change(record);
            if let Err(e) = JobDir::new(&self.config.work_dir, id).save(record) {
                tracing::error!(job = %id, error = %e, "could not save the job record");
            }
        }
    }

    /// Ends job `id` in `status`, saying why when it did not succeed.
    fn finish(&self, id: &B256, status: JobStatus, why: Option<String>) {
        self.update(id, |r| {
            r.view.status = status;
            r.view.finished_at = Some(now_unix());
            r.view.error = why;
        });
    }

    /// Every job, newest first (for the provider page).
    pub(crate) fn views(&self) -> Vec<JobView> {
        let mut views: Vec<JobView> = self.jobs().values().map(|r| r.view.clone()).collect();
        views.sort_by_key(|v| std::cmp::Reverse(v.created_at));
        views
    }

    pub(crate) fn view(&self, id: &B256) -> Option<JobView> {
        self.jobs().get(id).map(|r| r.view.clone())
    }

    /// The sealed adapter's path, once delivered.
    pub(crate) fn sealed_adapter(&self, id: &B256) -> Option<std::path::PathBuf> {
        let jobs = self.jobs();
        let record = jobs.get(id)?;
        record
            .view
            .deliverable
            .map(|_| JobDir::new(&self.config.work_dir, id).sealed())
    }

    /// Validates a training file and counts its tokens.
    pub(crate) async fn count(&self, request: CountRequest) -> Result<Count, ApiError> {
        self.check_service(&request.service)?;
        let (examples, tokens) = self.count_file(request.training.into_bytes()).await?;
        Ok(Count {
            examples,
            tokens,
            price_per_token: self.config.price_per_token,
        })
    }

    async fn count_file(&self, bytes: Vec<u8>) -> Result<(u64, u64), ApiError> {
        if bytes.len() as u64 > self.config.max_file_bytes {
            return Err(ApiError::new(
                ErrorCode::RequestTooLarge,
                format!(
                    "the training file is {} bytes, this service takes at most {}",
                    bytes.len(),
                    self.config.max_file_bytes
                ),
            ));
        }
        let gguf = self.config.base_model.clone();
        tokio::task::spawn_blocking(move || {
            let dataset = zg_finetune::Dataset::parse(&bytes)
                .map_err(|e| ApiError::invalid(format!("training file: {e}")))?;
            let tokens = zg_finetune::count_dataset_tokens(&gguf, &dataset)
                .map_err(|e| ApiError::invalid(format!("training file: {e}")))?;
            Ok((dataset.examples.len() as u64, tokens))
        })
        .await
        .map_err(ApiError::internal)?
    }

    fn check_service(&self, service: &str) -> Result<(), ApiError> {
        if service != self.config.name {
            return Err(ApiError::new(
                ErrorCode::UnknownModel,
                format!(
                    "this provider's fine-tuning service is {:?}, not {service:?}",
                    self.config.name
                ),
            ));
        }
        Ok(())
    }

    /// Checks a signed order against this service and its files, starts
    /// it on chain (reserving the maximum fee) and queues it.
    pub(crate) async fn start(&self, start: StartJob) -> Result<JobView, ApiError> {
        let order = &start.order;
        self.check_service(&order.service)?;
        if order.provider != self.chain().wallet() {
            return Err(ApiError::invalid(format!(
                "the order names provider {}, this is {}",
                order.provider,
                self.chain().wallet()
            )));
        }
        // The chain refuses it too, but only after a transaction's gas.
        if order.start_by <= now_unix() {
            return Err(ApiError::invalid(format!(
                "the order could be started until unix time {}: it expired, sign a new one",
                order.start_by
            )));
        }
        if order.base_model != self.digest {
            return Err(ApiError::invalid(format!(
                "the order's base model {} is not {} ({}), the only one this service trains",
                order.base_model, self.config.model, self.digest
            )));
        }
        let h = order.hyperparameters;
        if h.epochs == 0 || h.epochs > self.config.max_epochs {
            return Err(ApiError::invalid(format!(
                "epochs must be 1..={}, the order asks {}",
                self.config.max_epochs, h.epochs
            )));
        }
        if !(1..=MAX_BATCH).contains(&h.batch_size) || !(1..=MAX_RANK).contains(&h.rank) {
            return Err(ApiError::invalid(format!(
                "batch size must be 1..={MAX_BATCH} and LoRA rank 1..={MAX_RANK}, the order asks {} and {}",
                h.batch_size, h.rank
            )));
        }
        if keccak256(start.training.as_bytes()) != order.training_file {
            return Err(ApiError::invalid(
                "the training file's keccak256 is not the order's trainingFile",
            ));
        }
        let validation_hash = start.validation.as_ref().map(|v| keccak256(v.as_bytes()));
        if validation_hash != order.validation_file {
            return Err(ApiError::invalid(
                "the validation file does not match the order's validationFile (its keccak256, or none for none)",
            ));
        }
        if let Some(validation) = &start.validation {
            zg_finetune::Dataset::parse(validation.as_bytes())
                .map_err(|e| ApiError::invalid(format!("validation file: {e}")))?;
        }
        let (_, tokens) = self.count_file(start.training.clone().into_bytes()).await?;
        let trained = u64::from(h.epochs).saturating_mul(tokens);
        let fee = U256::from(trained) * self.config.price_per_token;
        if fee > order.max_fee {
            return Err(ApiError::invalid(format!(
                "the job trains {trained} tokens at {} 0G each, {} 0G, above the order's maxFee of {} 0G",
                format_amount(self.config.price_per_token),
                format_amount(fee),
                format_amount(order.max_fee)
            )));
        }
        let id = order.digest(self.chain().chain_id(), self.chain().fine_tuning_address());
        if self.jobs().contains_key(&id) {
            return Err(ApiError::invalid(format!(
                "job {id} exists: an order starts one job"
            )));
        }
        let dir = JobDir::new(&self.config.work_dir, &id);
        let written = dir
            .create()
            .and_then(|()| std::fs::write(dir.training(), &start.training))
            .and_then(|()| match &start.validation {
                Some(v) => std::fs::write(dir.validation(), v),
                None => Ok(()),
            });
        written.map_err(ApiError::internal)?;
        self.reserve(order, &start.signature).await?;
        let record = JobRecord {
            view: JobView {
                id,
                status: JobStatus::Queued,
                order: order.clone(),
                created_at: now_unix(),
                finished_at: None,
                trained_tokens: trained,
                fee,
                events: Vec::new(),
                checkpoints: Vec::new(),
                deliverable: None,
                adapter_bytes: None,
                error: None,
            },
            signature: start.signature,
        };
        dir.save(&record).map_err(ApiError::internal)?;
        let view = record.view.clone();
        self.jobs().insert(id, record);
        self.queued.notify_one();
        tracing::info!(job = %id, user = %order.user, trained, fee = %fee, "fine-tuning job started");
        Ok(view)
    }

    /// Starts the job on chain, which moves the order's maxFee out of the
    /// user's escrow here: refused when what stays would not cover the
    /// user's chat answers not yet settled and in flight. Chat admission
    /// counts the reservation from the check on (`ChainView::hold`), so no
    /// answer admitted meanwhile is left unbacked.
    async fn reserve(&self, order: &Order, signature: &Signature) -> Result<(), ApiError> {
        let user = order.user;
        let _hold = self.escrow.hold(user, order.max_fee);
        let unreadable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, %user, "reading the user's escrow or books failed");
            ApiError::internal("could not read the user's escrow or books")
        };
        let cap = self
            .escrow
            .cap(user, true)
            .await
            .map_err(|e| unreadable(&e))?;
        let tab = self.store.tab(user).await.map_err(|e| unreadable(&e))?;
        let committed = tab
            .as_ref()
            .map_or(U256::ZERO, |t| t.owed.saturating_add(t.reserved));
        // `cap` already leaves the order's maxFee out.
        if committed > cap {
            let unsettled = tab
                .as_ref()
                .map_or(U256::ZERO, |t| committed.saturating_sub(t.settled));
            return Err(ApiError::new(
                ErrorCode::InsufficientEscrow,
                format!(
                    "the job reserves up to {} 0G of {user}'s escrow at this provider, and {} 0G of chat answers not yet settled (or still running) need it too: fund more with `zg-serving user fund`",
                    format_amount(order.max_fee),
                    format_amount(unsettled)
                ),
            ));
        }
        let started = self.chain().start_job(order, signature).await;
        // Read the escrow the reservation left before the hold goes.
        if let Err(e) = self.escrow.refresh(user).await {
            tracing::warn!(error = %e, %user, "reading the escrow after a job start failed");
            self.escrow.forget(user);
        }
        started.map(drop).map_err(|e| refused_on_chain(&e, user))
    }

    /// The user (or the key that signed the order) stops a job before its
    /// delivery; the reservation goes back in full.
    pub(crate) async fn cancel(&self, id: B256, cancel: CancelJob) -> Result<JobView, ApiError> {
        let (view, order_signer) = {
            let jobs = self.jobs();
            let record = jobs.get(&id).ok_or_else(|| unknown_job(&id))?;
            (record.view.clone(), record.signature.recover(&id).ok())
        };
        let who = cancel.signature.recover(&cancel_digest(&id)).map_err(|e| {
            ApiError::new(ErrorCode::Unauthorized, format!("cancel signature: {e}"))
        })?;
        if who != view.order.user && Some(who) != order_signer {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!(
                    "the cancel request is signed by {who}, neither the job's user {} nor its order's signer",
                    view.order.user
                ),
            ));
        }
        match view.status {
            JobStatus::Queued => {
                self.cancel_on_chain(&id, "cancelled by the user").await?;
            }
            JobStatus::Running => {
                if let Some(flag) = self.cancel_flag(&id) {
                    flag.store(true, Ordering::Relaxed);
                }
            }
            JobStatus::Cancelled => {}
            other => {
                return Err(ApiError::invalid(format!(
                    "job {id} is {other:?}: only a queued or running job can be cancelled (a delivered one is acknowledged, or left to its timeout)"
                )));
            }
        }
        self.view(&id).ok_or_else(|| unknown_job(&id))
    }

    fn cancel_flag(&self, id: &B256) -> Option<Arc<AtomicBool>> {
        self.cancels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Releases job `id`'s reservation on chain and marks it cancelled.
    async fn cancel_on_chain(&self, id: &B256, why: &str) -> Result<(), ApiError> {
        self.chain()
            .cancel_job(*id)
            .await
            .map_err(|e| refused_on_chain(&e, Address::ZERO))?;
        self.finish(id, JobStatus::Cancelled, Some(why.to_owned()));
        tracing::info!(job = %id, why, "fine-tuning job cancelled: its reservation went back");
        Ok(())
    }
}

pub(crate) fn unknown_job(id: &B256) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no fine-tuning job {id} at this provider"),
    )
}

/// A chain refusal as the client sees it: an escrow too small is the
/// user's to fix, the rest is the order's.
fn refused_on_chain(e: &zg_chain::ChainError, user: Address) -> ApiError {
    use zg_chain::bindings::ZgServing::ZgServingErrors as E;
    match e.revert() {
        Some(E::InsufficientEscrow(x)) => ApiError::new(
            ErrorCode::InsufficientEscrow,
            format!(
                "escrow for {user} at this provider is {} 0G, the job reserves up to {} 0G: fund more with `zg-serving user fund`",
                format_amount(x.escrow),
                format_amount(x.requested)
            ),
        ),
        _ if e.job_revert().is_some() => ApiError::invalid(e.to_string()),
        _ => ApiError::new(ErrorCode::UpstreamFailed, e.to_string()),
    }
}

/// The order's nonce seeds the trainer: the same order trains the same way.
fn seed_of(nonce: &zg_core::B128) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&nonce.0[..8]);
    u64::from_be_bytes(bytes)
}

impl std::fmt::Debug for Tuner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tuner")
            .field("service", &self.config.name)
            .field("digest", &self.digest)
            .finish()
    }
}
