//! The verifier: loads the registered GGUF (refusing any other file),
//! re-runs prompt plus answer as one teacher-forced prefill, recomputes
//! every token's marks and compares them with the proof's. `evidence`
//! does the same from an answer's evidence (receipt, request, response,
//! proof), as `zg-serving verify` and audits need it.

mod evidence;
mod shelf;
pub use shelf::{Judgement, Shelf, judge};

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::EngineError;
use crate::chat::{TextOutput, backend, template, tokenize};
use crate::proof::{Proof, ProofError, distance, marks, tokens_digest};

/// Tokens one prefill step reads. Any size verifies: ggml's results move
/// with the batch size by far less than [`THRESHOLD`].
const PREFILL_BATCH: usize = 512;

/// The largest mean distance, in logits, between a proof's marks and the
/// recomputed ones (the mean over tokens of the largest of a token's three
/// differences) that an honest answer may show. ggml computes a decode step
/// of a few rows and a prefill of many with different kernels; measured
/// honest noise and cheaters' distances: docs/verification.md.
pub const THRESHOLD: f32 = 0.6;
/// The largest distance of any single token an honest answer may show: above
/// the rare honest outlier (3.7 logits in 1,000 answers) and well under what
/// an edited token shows (9 logits or more).
pub const TOKEN_THRESHOLD: f32 = 6.0;

/// Why an answer could not be verified (as opposed to failing).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "{path} is not the registered model: its sha256 is {actual}, the registered digest is {expected}; pass the GGUF whose sha256 is {expected}"
    )]
    WrongModel {
        path: PathBuf,
        actual: String,
        expected: String,
    },
    #[error(transparent)]
    Model(#[from] EngineError),
    #[error("unreadable proof: {0}")]
    Proof(#[from] ProofError),
    #[error(
        "token id {token} is outside the model's vocabulary of {vocab}: the {place} is garbage"
    )]
    Token {
        token: u32,
        vocab: u32,
        place: &'static str,
    },
    #[error("the chat messages cannot be rendered: {0}")]
    Messages(String),
    #[error("llama.cpp failed while verifying: {0}")]
    Llama(String),
    #[error("the evidence does not hold together: {0}")]
    Evidence(#[from] zg_core::EvidenceError),
    #[error("the evidence's {part} cannot be read: {why}")]
    Exchange { part: &'static str, why: String },
}

/// What an answer claims: the prompt as the model read it, the text sent
/// and the stop sequences of the request.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub prompt: &'a [u32],
    pub answer: &'a str,
    pub stop: &'a [String],
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub pass: bool,
    /// The mean over the answer's tokens of each token's largest mark
    /// difference, in logits; infinite when the proof does not match the
    /// claim before any model run (see `mismatch`).
    pub distance: f32,
    pub threshold: f32,
    /// The largest single token's mark difference, in logits.
    pub worst_token: f32,
    pub token_threshold: f32,
    /// Tokens the proof covers.
    pub tokens: usize,
    /// Why the proof does not belong to the claim, when it does not.
    pub mismatch: Option<String>,
}

impl Verdict {
    fn mismatch(tokens: usize, why: String) -> Self {
        Self {
            pass: false,
            distance: f32::INFINITY,
            threshold: THRESHOLD,
            worst_token: f32::INFINITY,
            token_threshold: TOKEN_THRESHOLD,
            tokens,
            mismatch: Some(why),
        }
    }
}

/// The hex sha256 of a model file: the `modelDigest` a service registers.
pub fn model_digest(gguf: &Path) -> Result<String, VerifyError> {
    Ok(crate::digest::verified_sha256(gguf)?)
}

/// The registered weights read back in F32 for the prefill: llama.cpp
/// multiplies F32 matrices with a tiled GEMM, about 1.6 times faster on x86
/// than the per-row dot products it uses for Q4_1, and the weights are the
/// same (each Q4_1 weight, `d * q + m`, rounded once to F32; see
/// docs/verification.md). Falls back to the file as it is when the copy
/// cannot be made (a full disk): slower, within the same threshold.
fn expanded(gguf: &Path, threads: u32) -> Result<LlamaModel, VerifyError> {
    let load = |path: &Path| {
        LlamaModel::load_from_file(backend()?, path, &LlamaModelParams::default()).map_err(|e| {
            EngineError::ModelLoad {
                path: gguf.to_path_buf(),
                reason: e.to_string(),
            }
        })
    };
    // Initialized first, so that the quantizer's log goes to tracing.
    backend()?;
    // A folder only this user can write to: no one swaps the copy between
    // writing and loading. Loaded (mapped), the copy needs no name; the
    // folder goes when this function returns.
    let copied = tempfile::Builder::new()
        .prefix("zg-verify-")
        .tempdir()
        .map_err(|e| e.to_string())
        .and_then(|dir| {
            let copy = dir.path().join("f32.gguf");
            crate::quantize::requantize(
                gguf,
                &copy,
                llama_cpp_sys_2::LLAMA_FTYPE_ALL_F32,
                threads,
            )?;
            load(&copy).map_err(|e| e.to_string())
        });
    match copied {
        Ok(model) => Ok(model),
        Err(why) => {
            tracing::warn!(%why, "verifying with the registered file as it is: its F32 copy failed");
            Ok(load(gguf)?)
        }
    }
}

/// A loaded registered model, ready to check proofs.
pub struct Verifier {
    /// The file and its sha256 (hex), the `modelDigest` it verifies.
    path: PathBuf,
    digest: String,
    model: LlamaModel,
    template: LlamaChatTemplate,
    threads: i32,
}

impl Verifier {
    /// Loads `gguf` after checking that its sha256 is `expected_sha256`
    /// (hex, with or without `0x`).
    pub fn open(gguf: &Path, expected_sha256: &str, threads: u32) -> Result<Self, VerifyError> {
        let expected = expected_sha256
            .trim_start_matches("0x")
            .to_ascii_lowercase();
        let actual = model_digest(gguf)?;
        if actual != expected {
            return Err(VerifyError::WrongModel {
                path: gguf.to_path_buf(),
                actual,
                expected,
            });
        }
        let model = expanded(gguf, threads)?;
        let template = template::model_template(&model);
        Ok(Self {
            path: gguf.to_path_buf(),
            digest: actual,
            model,
            template,
            threads: i32::try_from(threads.max(1)).unwrap_or(1),
        })
    }

    /// The prompt tokens of chat `messages` (role, content), rendered and
    /// tokenized exactly as the engine does.
    pub fn prompt_tokens(&self, messages: Vec<(String, String)>) -> Result<Vec<u32>, VerifyError> {
        let text = template::render(&self.model, &self.template, messages)
            .map_err(|e| VerifyError::Messages(e.message))?;
        Ok(tokenize(&self.model, &text)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect())
    }

    /// Checks `proof` against `claim`: the prompt digest, the text its tokens
    /// spell, then the marks of every token against a fresh prefill.
    pub fn verify(&self, claim: &Claim<'_>, proof: &[u8]) -> Result<Verdict, VerifyError> {
        self.sized(0).verify(claim, proof)
    }

    /// A verifier that keeps its llama.cpp context between checks and reads
    /// again only what differs from the previous check's tokens: answers to
    /// the same system prompt share its prefill. One session per thread.
    pub fn session(&self) -> Session<'_> {
        self.sized(SESSION_CTX)
    }

    /// A session whose context, made at the first check, holds at least
    /// `min_ctx` tokens (a one-off check makes it just the size it needs).
    fn sized(&self, min_ctx: u32) -> Session<'_> {
        Session {
            verifier: self,
            ctx: None,
            min_ctx,
            held: Vec::new(),
        }
    }

    fn context(&self, n_ctx: u32) -> Result<LlamaContext<'_>, VerifyError> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(PREFILL_BATCH as u32)
            .with_n_ubatch(PREFILL_BATCH as u32)
            .with_n_seq_max(1)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        self.model
            .new_context(backend()?, params)
            .map_err(|e| VerifyError::Llama(e.to_string()))
    }

    /// What can be told without the model: the proof's prompt digest and
    /// the text its tokens spell. None when the claim holds together.
    fn precheck(&self, claim: &Claim<'_>, proof: &Proof) -> Result<Option<Verdict>, VerifyError> {
        let n = proof.tokens.len();
        self.check_ids(claim.prompt, "prompt")?;
        self.check_ids(&proof.tokens, "proof")?;
        if claim.prompt.is_empty() {
            return Ok(Some(Verdict::mismatch(
                n,
                "the claimed prompt is empty".into(),
            )));
        }
        if tokens_digest(claim.prompt.iter().copied()) != proof.prompt_digest {
            return Ok(Some(Verdict::mismatch(
                n,
                "the proof was made for another prompt (prompt digest differs)".into(),
            )));
        }
        Ok(self
            .spelling_mismatch(&proof.tokens, claim)
            .map(|why| Verdict::mismatch(n, why)))
    }

    fn check_ids(&self, tokens: &[u32], place: &'static str) -> Result<(), VerifyError> {
        let vocab = u32::try_from(self.model.n_vocab()).unwrap_or(0);
        match tokens.iter().find(|&&t| t >= vocab) {
            Some(&token) => Err(VerifyError::Token {
                token,
                vocab,
                place,
            }),
            None => Ok(()),
        }
    }

    /// The text the engine sends for generated `tokens` under the `stop`
    /// sequences, and how many tokens follow the end of the answer (an
    /// end-of-generation token or a completed stop sequence).
    pub fn spell(&self, tokens: &[u32], stop: &[String]) -> (String, usize) {
        let vocab = self.model.vocab();
        let mut output = TextOutput::new(stop);
        let mut text = String::new();
        let mut after_end = 0;
        for (i, &id) in tokens.iter().enumerate() {
            let token = LlamaToken(id as i32);
            let ended = vocab.is_eog(token) || {
                let step = output.push(&vocab.token_to_piece(token, false, None));
                text.push_str(&step.text);
                step.stopped
            };
            if ended {
                after_end = tokens.len() - i - 1;
                break;
            }
        }
        text.push_str(&output.finish());
        (text, after_end)
    }

    /// The proof's tokens must spell the claimed answer and end where
    /// generation ended.
    fn spelling_mismatch(&self, tokens: &[u32], claim: &Claim<'_>) -> Option<String> {
        let (text, after_end) = self.spell(tokens, claim.stop);
        if after_end > 0 {
            return Some(format!(
                "the proof has {after_end} tokens after the end of the answer"
            ));
        }
        (text != claim.answer).then(|| {
            format!(
                "the proof's tokens spell {} bytes that differ from the {}-byte answer",
                text.len(),
                claim.answer.len()
            )
        })
    }
}

/// Tokens a session's context holds before it must grow (a longer answer
/// gets a context of its size).
const SESSION_CTX: u32 = 2048;

/// A [`Verifier`] with its llama.cpp context kept between checks.
pub struct Session<'a> {
    verifier: &'a Verifier,
    /// The context and the tokens it has room for.
    ctx: Option<(LlamaContext<'a>, u32)>,
    min_ctx: u32,
    /// The tokens whose keys and values the context holds, in order.
    held: Vec<u32>,
}

impl Session<'_> {
    /// [`Verifier::verify`], reusing what the last check read.
    pub fn verify(&mut self, claim: &Claim<'_>, proof: &[u8]) -> Result<Verdict, VerifyError> {
        let proof = Proof::decode(proof)?;
        if let Some(mismatch) = self.verifier.precheck(claim, &proof)? {
            return Ok(mismatch);
        }
        let (distance, worst_token) = self.measure(claim.prompt, &proof)?;
        Ok(Verdict {
            pass: distance <= THRESHOLD && worst_token <= TOKEN_THRESHOLD,
            distance,
            threshold: THRESHOLD,
            worst_token,
            token_threshold: TOKEN_THRESHOLD,
            tokens: proof.tokens.len(),
            mismatch: None,
        })
    }

    /// The teacher-forced prefill: the mean and the largest mark difference
    /// over the answer's tokens.
    fn measure(&mut self, prompt: &[u32], proof: &Proof) -> Result<(f32, f32), VerifyError> {
        let llama = |e: &dyn std::fmt::Display| VerifyError::Llama(e.to_string());
        // Every answer token but the last is read back; the logits of the
        // last prompt token and of those pick the answer's tokens.
        let input: Vec<u32> = prompt
            .iter()
            .chain(&proof.tokens[..proof.tokens.len() - 1])
            .copied()
            .collect();
        let first_output = prompt.len() - 1;
        let needed = u32::try_from(input.len())
            .map_err(|_| VerifyError::Llama("the answer is too long".into()))?;
        let ctx = match &mut self.ctx {
            Some((ctx, room)) if *room >= needed => ctx,
            slot => {
                self.held.clear();
                let room = needed.next_multiple_of(256).max(self.min_ctx);
                &mut slot.insert((self.verifier.context(room)?, room)).0
            }
        };
        // The keys and values of a shared prefix are kept; every position
        // whose logits are needed is read again.
        let common = self
            .held
            .iter()
            .zip(&input)
            .take_while(|(a, b)| a == b)
            .count()
            .min(first_output);
        let start = match u32::try_from(common) {
            Ok(p0) if common > 0 => match ctx.clear_kv_cache_seq(Some(0), Some(p0), None) {
                Ok(true) => common,
                _ => 0,
            },
            _ => 0,
        };
        if start == 0 {
            ctx.clear_kv_cache();
        }
        self.held.truncate(start);
        let mut batch = LlamaBatch::new(PREFILL_BATCH, 1);
        let (mut sum, mut worst) = (0.0f32, 0.0f32);
        for (chunk_index, chunk) in input[start..].chunks(PREFILL_BATCH).enumerate() {
            batch.clear();
            let first = start + chunk_index * PREFILL_BATCH;
            for (offset, &token) in chunk.iter().enumerate() {
                let pos = first + offset;
                batch
                    .add(
                        LlamaToken(token as i32),
                        pos as i32,
                        &[0],
                        pos >= first_output,
                    )
                    .map_err(|e| llama(&e))?;
            }
            if let Err(e) = ctx.decode(&mut batch) {
                // What the context holds is unknown now: start clean next time.
                self.held.clear();
                ctx.clear_kv_cache();
                return Err(llama(&e));
            }
            self.held.extend_from_slice(chunk);
            for (offset, pos) in (first..first + chunk.len()).enumerate() {
                let Some(k) = pos.checked_sub(first_output) else {
                    continue;
                };
                let logits = ctx.get_logits_ith(offset as i32);
                let recomputed = marks(logits, proof.tokens[k]);
                let d = distance(&recomputed, &proof.marks[k]);
                sum += d;
                worst = worst.max(d);
            }
        }
        Ok((sum / proof.tokens.len() as f32, worst))
    }
}
