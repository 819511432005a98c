//! The decode thread. It owns the one llama context, which has a KV
//! sequence per slot. Each step puts one token of every generating slot and
//! prompt chunks of slots still reading into a single `llama_decode`
//! (continuous batching), then samples every slot that has logits. A slot
//! whose client went away (its receiver dropped) is freed before the next
//! step.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use super::output::TextOutput;
use super::sampler::Sampling;
use crate::EngineError;
use crate::api::chat::FinishReason;
use crate::api::generation::TokenLogprob;
use crate::proof::{ProofStore, Recorder};

/// Prompt tokens one step reads at most, over all slots: bounds how long a
/// long prompt stalls the slots that are generating.
const STEP_TOKENS: usize = 512;

/// One generation request.
pub(crate) struct Job {
    pub prompt: Vec<LlamaToken>,
    pub max_tokens: u32,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    /// Alternatives to report per token; `None`: no log-probabilities.
    pub top_logprobs: Option<usize>,
    pub events: UnboundedSender<Event>,
    /// The answer's id: its proof is stored under it.
    pub id: String,
}

/// What the decode thread tells the request.
#[derive(Debug)]
pub(crate) enum Event {
    /// Text now safe to send, and the log-probability of the token just
    /// generated when the job asked for them.
    Text {
        text: String,
        logprob: Option<TokenLogprob>,
    },
    Done {
        finish: FinishReason,
        completion_tokens: u32,
    },
    Failed(String),
}

pub(super) struct Settings {
    pub slots: u32,
    pub threads: u32,
    pub ctx: u32,
    /// Where proofs of answers go; `None` records none.
    pub proofs: Option<Arc<ProofStore>>,
}

/// Where requests go, and how many tokens (prompt and answer) a slot holds.
pub(super) struct Started {
    pub jobs: Sender<Job>,
    pub ctx_per_slot: u32,
    pub load: Arc<Load>,
}

/// How busy the decode thread is, for `/health`.
#[derive(Debug, Default)]
pub(crate) struct Load {
    pub busy_slots: AtomicUsize,
    pub waiting: AtomicUsize,
}

/// Creates the context and starts the decode thread; it ends when every
/// `Sender<Job>` is gone and the running slots have finished.
pub(super) fn start(
    backend: &'static LlamaBackend,
    model: Arc<LlamaModel>,
    settings: Settings,
) -> Result<Started, EngineError> {
    let threads = i32::try_from(settings.threads)
        .map_err(|_| EngineError::Config(format!("threads {} is too many", settings.threads)))?;
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(settings.ctx))
        .with_n_batch(STEP_TOKENS as u32)
        .with_n_ubatch(STEP_TOKENS as u32)
        .with_n_seq_max(settings.slots)
        // A KV stream per sequence: one request's attention never sees (or
        // depends on the layout of) another's cells, so greedy answers do not
        // change with what else runs.
        .with_kv_unified(false)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let slots = settings.slots as usize;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
    let load = Arc::new(Load::default());
    let thread_load = load.clone();
    std::thread::Builder::new()
        .name("zg-engine-decode".into())
        .spawn(move || {
            let mut ctx = match model.new_context(backend, params) {
                Ok(ctx) => ctx,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let per_slot = ctx.n_ctx() / slots as u32;
            let _ = ready_tx.send(Ok(per_slot));
            Decoder::new(&mut ctx, &model, slots, per_slot, settings.proofs)
                .run(jobs_rx, &thread_load);
        })?;
    match ready_rx.recv() {
        Ok(Ok(ctx_per_slot)) => Ok(Started {
            jobs: jobs_tx,
            ctx_per_slot,
            load,
        }),
        Ok(Err(e)) => Err(EngineError::Llama(format!(
            "could not create the context: {e}"
        ))),
        Err(_) => Err(EngineError::Llama(
            "the decode thread died while starting".into(),
        )),
    }
}

struct Slot {
    seq: i32,
    job: Job,
    sampler: LlamaSampler,
    output: TextOutput,
    /// Prompt tokens already decoded.
    read: usize,
    /// Tokens of this sequence in the KV cache.
    pos: i32,
    /// The sampled token that goes into the next step.
    next: Option<LlamaToken>,
    /// Index of this slot's logits in the current batch.
    logits_at: Option<i32>,
    completion_tokens: u32,
    proof: Option<Recorder>,
}

struct Decoder<'c, 'm> {
    ctx: &'c mut LlamaContext<'m>,
    model: &'m LlamaModel,
    slots: Vec<Option<Slot>>,
    waiting: VecDeque<Job>,
    batch: LlamaBatch<'static>,
    ctx_per_slot: i32,
    proofs: Option<Arc<ProofStore>>,
}

impl<'c, 'm> Decoder<'c, 'm> {
    fn new(
        ctx: &'c mut LlamaContext<'m>,
        model: &'m LlamaModel,
        slots: usize,
        ctx_per_slot: u32,
        proofs: Option<Arc<ProofStore>>,
    ) -> Self {
        Self {
            ctx,
            model,
            slots: (0..slots).map(|_| None).collect(),
            waiting: VecDeque::new(),
            batch: LlamaBatch::new(STEP_TOKENS.max(slots), 1),
            ctx_per_slot: i32::try_from(ctx_per_slot).unwrap_or(i32::MAX),
            proofs,
        }
    }

    fn run(mut self, jobs: Receiver<Job>, load: &Load) {
        loop {
            let busy = self.slots.iter().filter(|s| s.is_some()).count();
            load.busy_slots.store(busy, Ordering::Relaxed);
            load.waiting.store(self.waiting.len(), Ordering::Relaxed);
            if busy == 0 && self.waiting.is_empty() {
                match jobs.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
            }
            self.waiting.extend(jobs.try_iter());
            self.drop_abandoned();
            self.admit();
            if self.fill_batch() == 0 {
                continue;
            }
            if let Err(e) = self.ctx.decode(&mut self.batch) {
                tracing::error!(error = %e, "llama_decode failed");
                self.fail_all(&format!("llama_decode failed: {e}"));
                continue;
            }
            self.sample_all();
        }
    }

    fn drop_abandoned(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i]
                .as_ref()
                .is_some_and(|slot| slot.job.events.is_closed())
            {
                tracing::debug!(slot = i, "client went away; slot freed");
                self.release(i);
            }
        }
        self.waiting.retain(|job| !job.events.is_closed());
    }

    fn admit(&mut self) {
        for (i, entry) in self.slots.iter_mut().enumerate() {
            if entry.is_some() {
                continue;
            }
            let Some(job) = self.waiting.pop_front() else {
                return;
            };
            let sampler = match job.sampling.sampler(self.model) {
                Ok(sampler) => sampler,
                Err(e) => {
                    let _ = job.events.send(Event::Failed(e));
                    continue;
                }
            };
            let proof = self
                .proofs
                .as_ref()
                .map(|_| Recorder::new(job.prompt.iter().map(|t| t.0 as u32)));
            *entry = Some(Slot {
                seq: i as i32,
                proof,
                sampler,
                output: TextOutput::new(&job.stop),
                job,
                read: 0,
                pos: 0,
                next: None,
                logits_at: None,
                completion_tokens: 0,
            });
        }
    }

    /// Puts this step's tokens into the batch; returns how many.
    fn fill_batch(&mut self) -> usize {
        self.batch.clear();
        let mut room = STEP_TOKENS.max(self.slots.len());
        // Generating slots first: one token each.
        for slot in self.slots.iter_mut().flatten() {
            slot.logits_at = None;
            if let Some(token) = slot.next.take() {
                if self.batch.add(token, slot.pos, &[slot.seq], true).is_err() {
                    break;
                }
                slot.logits_at = Some(self.batch.n_tokens() - 1);
                slot.pos += 1;
                room -= 1;
            }
        }
        // Then prompts, in slot order, as far as the step has room.
        for slot in self.slots.iter_mut().flatten() {
            let prompt = &slot.job.prompt;
            if slot.logits_at.is_some() || slot.read >= prompt.len() || room == 0 {
                continue;
            }
            let take = (prompt.len() - slot.read).min(room);
            for &token in &prompt[slot.read..slot.read + take] {
                let last = slot.read + 1 == prompt.len();
                if self.batch.add(token, slot.pos, &[slot.seq], last).is_err() {
                    break;
                }
                slot.read += 1;
                if last {
                    slot.logits_at = Some(self.batch.n_tokens() - 1);
                }
                slot.pos += 1;
            }
            room -= take;
        }
        usize::try_from(self.batch.n_tokens()).unwrap_or(0)
    }

    fn sample_all(&mut self) {
        let vocab = self.model.vocab();
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots[i].as_mut() else {
                continue;
            };
            let Some(at) = slot.logits_at.take() else {
                continue;
            };
            let token = slot.sampler.sample(self.ctx, at);
            if let Some(proof) = &mut slot.proof {
                proof.record(self.ctx.get_logits_ith(at), token.0 as u32);
            }
            slot.completion_tokens += 1;
            let finish = if vocab.is_eog(token) {
                Some(FinishReason::Stop)
            } else {
                let piece = vocab.token_to_piece(token, false, None);
                let step = slot.output.push(&piece);
                let logprob = slot.job.top_logprobs.map(|top| {
                    super::logprobs::entry(self.model, self.ctx.get_logits_ith(at), token, top)
                });
                if !step.text.is_empty() || logprob.is_some() {
                    let _ = slot.job.events.send(Event::Text {
                        text: step.text,
                        logprob,
                    });
                }
                if step.stopped {
                    Some(FinishReason::Stop)
                } else if slot.completion_tokens >= slot.job.max_tokens
                    || slot.pos >= self.ctx_per_slot
                {
                    Some(FinishReason::Length)
                } else {
                    slot.next = Some(token);
                    None
                }
            };
            if let Some(finish) = finish {
                let rest = slot.output.finish();
                if !rest.is_empty() {
                    let _ = slot.job.events.send(Event::Text {
                        text: rest,
                        logprob: None,
                    });
                }
                // Stored before Done: a client that sees the end can fetch it.
                if let (Some(store), Some(proof)) = (&self.proofs, &slot.proof) {
                    store.insert(slot.job.id.clone(), proof.encode());
                }
                let _ = slot.job.events.send(Event::Done {
                    finish,
                    completion_tokens: slot.completion_tokens,
                });
                self.release(i);
            }
        }
    }

    fn fail_all(&mut self, message: &str) {
        for i in 0..self.slots.len() {
            if let Some(slot) = &self.slots[i] {
                let _ = slot.job.events.send(Event::Failed(message.to_string()));
                self.release(i);
            }
        }
    }

    /// Frees slot `i` and forgets its sequence's KV cells.
    fn release(&mut self, i: usize) {
        if let Some(slot) = self.slots[i].take() {
            let seq = u32::try_from(slot.seq).ok();
            if let Err(e) = self.ctx.clear_kv_cache_seq(seq, None, None) {
                tracing::error!(error = %e, slot = i, "could not clear the KV cache of a slot");
            }
        }
    }
}
