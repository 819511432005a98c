//! The decode thread. It owns the one llama context, which has a KV
//! sequence per slot. Each step puts one token of every generating slot and
//! prompt chunks of slots still reading into a single `llama_decode`
//! (continuous batching), then samples every slot that has logits. A slot
//! whose client went away (its receiver dropped) is freed before the next
//! step. A sequence keeps its KV after its job ends, and a new job whose
//! prompt starts with the tokens a free sequence holds reads only the rest
//! (the prompt cache, as llama-server's `cache_prompt`).

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use llama_cpp_2::LlamaLoraAdapterInitError;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
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

/// Tokens llama.cpp computes at once (a step is split into ubatches of this
/// many). Below ggml's flash-attention tile (`GGML_FA_TILE_Q`, 64), every
/// token's attention takes the kernel a one-token decode takes, so a
/// token's logits do not depend on how its prompt was split: a greedy
/// answer is the same whether the prompt was read whole, in chunks beside
/// other requests, or mostly from the prompt cache (whose answer tokens
/// were decoded one at a time). The price: long prompts read about a tenth
/// slower than in 512-token ubatches.
const UBATCH_TOKENS: u32 = 63;

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
    /// Whether the job may start from the KV a free sequence holds for a
    /// prefix of its prompt; `false` reads the whole prompt (benchmarks).
    pub cache_prompt: bool,
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
        /// Prompt tokens whose KV came from an earlier job.
        cached_tokens: u32,
    },
    Failed(String),
}

pub(super) struct Settings {
    pub slots: u32,
    pub threads: u32,
    pub ctx: u32,
    /// Where proofs of answers go; `None` records none.
    pub proofs: Option<Arc<ProofStore>>,
    /// Applied to the context at full strength; from [`load_lora`].
    pub lora: Option<LlamaLoraAdapter>,
}

/// Reads a LoRA adapter for `model`. It needs the model mutably (llama.cpp
/// registers the adapter with it), so it runs before the model is shared.
pub(super) fn load_lora(
    model: &mut LlamaModel,
    path: &Path,
) -> Result<LlamaLoraAdapter, EngineError> {
    // llama-cpp-2 only debug-asserts that the file exists: check it here so
    // a wrong path is an error, not a panic.
    if !path.is_file() {
        return Err(EngineError::Config(format!(
            "LoRA adapter {} does not exist: pass the GGUF adapter file to --lora",
            path.display()
        )));
    }
    model.lora_adapter_init(path).map_err(|e| {
        // llama.cpp returns no reason, it logs one (see the log above).
        let reason = match e {
            LlamaLoraAdapterInitError::NullResult => "llama.cpp refused it".to_string(),
            other => other.to_string(),
        };
        EngineError::Config(format!(
            "could not load LoRA adapter {}: {reason}; expected a llama.cpp GGUF LoRA adapter \
             (general.type \"adapter\") trained for this model, as zg-finetune exports",
            path.display()
        ))
    })
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
        .with_n_ubatch(UBATCH_TOKENS)
        .with_n_seq_max(settings.slots)
        // A KV stream per sequence: one request's attention never sees (or
        // depends on the layout of) another's cells, so greedy answers do not
        // change with what else runs.
        .with_kv_unified(false)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let slots = settings.slots as usize;
    let mut lora = settings.lora;
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
                    let _ = ready_tx.send(Err(format!("could not create the context: {e}")));
                    return;
                }
            };
            if let Some(adapter) = lora.as_mut()
                && let Err(e) = ctx.lora_adapter_set(adapter, 1.0)
            {
                let _ = ready_tx.send(Err(format!("could not apply the LoRA adapter: {e}")));
                return;
            }
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
        Ok(Err(e)) => Err(EngineError::Llama(e)),
        Err(_) => Err(EngineError::Llama(
            "the decode thread died while starting".into(),
        )),
    }
}

/// A running job in the slot of the same index as its KV sequence.
struct Slot {
    seq: i32,
    job: Job,
    sampler: LlamaSampler,
    output: TextOutput,
    /// Prompt tokens already in the KV cache, the reused prefix included.
    read: usize,
    /// Prompt tokens taken from the KV an earlier job left.
    cached: u32,
    /// The sampled token that goes into the next step.
    next: Option<LlamaToken>,
    /// Index of this slot's logits in the current batch.
    logits_at: Option<i32>,
    completion_tokens: u32,
    proof: Option<Recorder>,
}

/// What one KV sequence holds, kept while its slot is free so the next
/// job can reuse a common prefix. Position `p` of the sequence holds
/// `tokens[p]`: a token is pushed exactly when it goes into a batch, and the
/// sequence is cleared whenever a decode fails.
#[derive(Default)]
struct Sequence {
    tokens: Vec<LlamaToken>,
    /// When its last job ended (a counter): with no prefix to reuse, the
    /// least recently used sequence is overwritten first.
    used: u64,
}

impl Sequence {
    fn pos(&self) -> i32 {
        // A sequence never holds more than `ctx_per_slot` (an i32) tokens.
        self.tokens.len() as i32
    }
}

struct Decoder<'c, 'm> {
    ctx: &'c mut LlamaContext<'m>,
    model: &'m LlamaModel,
    slots: Vec<Option<Slot>>,
    sequences: Vec<Sequence>,
    /// Jobs ended so far: the clock of [`Sequence::used`].
    ended: u64,
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
            sequences: (0..slots).map(|_| Sequence::default()).collect(),
            ended: 0,
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

    /// Gives waiting jobs the free slots, each the one whose sequence holds
    /// the longest prefix of its prompt.
    fn admit(&mut self) {
        while let Some(free) = self.free_slot() {
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
            let (i, common) = self.pick(&job).unwrap_or((free, 0));
            // The last prompt token is read again, for the logits to sample.
            let read = self.keep(i, common.min(job.prompt.len().saturating_sub(1)));
            let proof = self
                .proofs
                .as_ref()
                .map(|_| Recorder::new(job.prompt.iter().map(|t| t.0 as u32)));
            self.slots[i] = Some(Slot {
                seq: i as i32,
                proof,
                sampler,
                output: TextOutput::new(&job.stop),
                job,
                read,
                cached: read as u32,
                next: None,
                logits_at: None,
                completion_tokens: 0,
            });
        }
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    /// The free slot for `job` and how many of its prompt's first tokens
    /// that slot's sequence holds: the longest such prefix wins, then the
    /// least recently used sequence (an empty one first).
    fn pick(&self, job: &Job) -> Option<(usize, usize)> {
        self.slots
            .iter()
            .zip(&self.sequences)
            .enumerate()
            .filter(|(_, (slot, _))| slot.is_none())
            .map(|(i, (_, seq))| {
                let common = if job.cache_prompt {
                    common_prefix(&seq.tokens, &job.prompt)
                } else {
                    0
                };
                (i, common, seq.used)
            })
            .max_by_key(|&(_, common, used)| (common, Reverse(used)))
            .map(|(i, common, _)| (i, common))
    }

    /// Cuts sequence `i` to its first `keep` tokens and returns how many it
    /// kept: 0 when llama.cpp cannot cut this sequence there (a recurrent
    /// model's state), which then clears it.
    fn keep(&mut self, i: usize, keep: usize) -> usize {
        let seq = &mut self.sequences[i];
        if seq.tokens.len() == keep {
            return keep;
        }
        let id = u32::try_from(i).ok();
        let cut = match u32::try_from(keep) {
            Ok(p0) if keep > 0 => self.ctx.clear_kv_cache_seq(id, Some(p0), None),
            _ => Ok(false),
        };
        if matches!(cut, Ok(true)) {
            seq.tokens.truncate(keep);
            return keep;
        }
        seq.tokens.clear();
        if let Err(e) = self.ctx.clear_kv_cache_seq(id, None, None) {
            tracing::error!(error = %e, slot = i, "could not clear the KV cache of a slot");
        }
        0
    }

    /// Puts this step's tokens into the batch; returns how many.
    fn fill_batch(&mut self) -> usize {
        self.batch.clear();
        let mut room = STEP_TOKENS.max(self.slots.len());
        // Generating slots first: one token each.
        for (slot, seq) in self.slots.iter_mut().zip(&mut self.sequences) {
            let Some(slot) = slot else { continue };
            slot.logits_at = None;
            if let Some(token) = slot.next.take() {
                if self.batch.add(token, seq.pos(), &[slot.seq], true).is_err() {
                    break;
                }
                slot.logits_at = Some(self.batch.n_tokens() - 1);
                seq.tokens.push(token);
                room -= 1;
            }
        }
        // Then prompts, in slot order, as far as the step has room.
        for (slot, seq) in self.slots.iter_mut().zip(&mut self.sequences) {
            let Some(slot) = slot else { continue };
            let prompt = &slot.job.prompt;
            if slot.logits_at.is_some() || slot.read >= prompt.len() || room == 0 {
                continue;
            }
            let take = (prompt.len() - slot.read).min(room);
            for &token in &prompt[slot.read..slot.read + take] {
                let last = slot.read + 1 == prompt.len();
                if self.batch.add(token, seq.pos(), &[slot.seq], last).is_err() {
                    break;
                }
                slot.read += 1;
                if last {
                    slot.logits_at = Some(self.batch.n_tokens() - 1);
                }
                seq.tokens.push(token);
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
                    || self.sequences[i].pos() >= self.ctx_per_slot
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
                    cached_tokens: slot.cached,
                });
                self.release(i);
            }
        }
    }

    /// Fails every running job after a failed decode. What the KV holds
    /// is unknown then, so every sequence is cleared.
    fn fail_all(&mut self, message: &str) {
        for i in 0..self.slots.len() {
            if let Some(slot) = &self.slots[i] {
                let _ = slot.job.events.send(Event::Failed(message.to_string()));
                self.release(i);
            }
        }
        self.ctx.clear_kv_cache();
        for seq in &mut self.sequences {
            seq.tokens.clear();
        }
    }

    /// Frees slot `i`; its sequence keeps its KV for a later job to reuse.
    fn release(&mut self, i: usize) {
        if self.slots[i].take().is_some() {
            self.ended += 1;
            self.sequences[i].used = self.ended;
        }
    }
}

/// How many first tokens `a` and `b` share.
fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
