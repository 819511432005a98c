//! Chat completions on a GGUF model: loading it through llama.cpp, turning
//! messages into prompt tokens, and handing generation jobs to the decode
//! thread ([`scheduler`]).

pub(crate) mod grammar;
mod logprobs;
mod output;
mod sampler;
mod scheduler;
pub(crate) mod template;
pub(crate) mod tools;

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::api::ApiError;
use crate::proof::ProofStore;
use crate::{EngineConfig, EngineError};
pub(crate) use output::TextOutput;
pub(crate) use sampler::{Grammar, Penalties, Sampling, random_seed};
pub(crate) use scheduler::{Event, Job, Load};

/// llama.cpp's process-wide state; it may be initialised once per process,
/// so every engine in the process shares it, and so does any other crate
/// that runs llama.cpp beside an engine (zg-finetune's tokenizer).
pub fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    let backend = LlamaBackend::init().map_err(|e| EngineError::Llama(e.to_string()))?;
    Ok(BACKEND.get_or_init(|| backend))
}

/// `model`'s tokens for a rendered prompt (special tokens read as themselves).
pub(crate) fn tokenize(model: &LlamaModel, text: &str) -> Vec<LlamaToken> {
    model.vocab().tokenize(text.as_bytes(), true, true)
}

/// A loaded chat model with its running decode thread.
pub(crate) struct ChatModel {
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    jobs: std::sync::mpsc::Sender<Job>,
    ctx_per_slot: u32,
    slots: u32,
    load: Arc<Load>,
}

impl ChatModel {
    /// Loads the model and starts the decode thread, which records a proof
    /// of every answer into `proofs` when given one.
    pub(crate) fn load(
        config: &EngineConfig,
        proofs: Option<Arc<ProofStore>>,
    ) -> Result<Self, EngineError> {
        if config.parallel == 0 || config.threads == 0 {
            return Err(EngineError::Config(
                "--parallel and --threads must be at least 1".into(),
            ));
        }
        if config.ctx < 16 * config.parallel {
            return Err(EngineError::Config(format!(
                "--ctx {} is too small for {} slots: give each slot at least 16 tokens",
                config.ctx, config.parallel
            )));
        }
        let path: &Path = &config.model;
        crate::digest::require_file(path)?;
        let backend = backend()?;
        let mut model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| EngineError::ModelLoad {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let lora = match &config.lora {
            Some(lora) => Some(scheduler::load_lora(&mut model, lora)?),
            None => None,
        };
        let model = Arc::new(model);
        let template = template::model_template(&model);
        let started = scheduler::start(
            backend,
            model.clone(),
            scheduler::Settings {
                slots: config.parallel,
                threads: config.threads,
                ctx: config.ctx,
                proofs,
                lora,
            },
        )?;
        tracing::info!(
            model = %path.display(),
            slots = config.parallel,
            ctx_per_slot = started.ctx_per_slot,
            threads = config.threads,
            "chat model loaded"
        );
        Ok(Self {
            model,
            template,
            jobs: started.jobs,
            ctx_per_slot: started.ctx_per_slot,
            slots: config.parallel,
            load: started.load,
        })
    }

    /// Tokens one request may hold in all: prompt plus answer.
    pub(crate) fn ctx_per_slot(&self) -> u32 {
        self.ctx_per_slot
    }

    /// Slots in all, slots generating, and requests waiting for a slot.
    pub(crate) fn occupancy(&self) -> (u32, usize, usize) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.slots,
            self.load.busy_slots.load(Relaxed),
            self.load.waiting.load(Relaxed),
        )
    }

    /// The prompt text of a chat, through the model's template.
    pub(crate) fn render(&self, messages: Vec<(String, String)>) -> Result<String, ApiError> {
        template::render(&self.model, &self.template, messages)
    }

    /// The model's tokens for `text`, reading special tokens such as
    /// `<|im_start|>` as themselves (that is how a rendered prompt is read).
    pub(crate) fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        tokenize(&self.model, text)
    }

    /// Checks that the decode thread can build the sampler of `sampling`
    /// (a grammar llama.cpp cannot parse is the request's fault).
    pub(crate) fn check_sampling(&self, sampling: &Sampling) -> Result<(), ApiError> {
        if sampling.grammar.is_none() {
            return Ok(());
        }
        sampling
            .sampler(&self.model)
            .map(drop)
            .map_err(|e| ApiError::invalid(e, None))
    }

    /// Queues a job for the decode thread.
    pub(crate) fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.jobs
            .send(job)
            .map_err(|_| ApiError::unavailable("the decode thread has stopped"))
    }
}
