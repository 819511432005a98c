//! llama.cpp alone on this machine: how fast it prefills a check's worth
//! of tokens (the registered Q4_1 file and its F32 copy) and decodes one
//! token at a time, and the floor these speeds put under
//! `verify_time_ratio` (docs/verification.md).

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

/// The check the bench's answers need: a user turn, then the answer.
const TURN: usize = 15;
const ANSWER: usize = 40;
const ROUNDS: usize = 10;

/// Prefill and decode speeds of one weight file, in tokens per second.
struct Speeds {
    prefill: f64,
    decode: f64,
}

/// Prints, per thread count, the speeds and the floor of the ratio.
pub(crate) fn report(model: &Path, work: &Path) -> Result<()> {
    let dir = work.join("verify-speeds");
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    let copy = dir.join("registered-f32.gguf");
    if !copy.is_file() {
        zg_engine::quantize::requantize(model, &copy, llama_cpp_sys_2::LLAMA_FTYPE_ALL_F32, 2)
            .map_err(|e| anyhow!(e))?;
    }
    for threads in [1, 2] {
        let q4 = measure(model, threads)?;
        let f32 = measure(&copy, threads)?;
        let check = (TURN + ANSWER) as f64 / f32.prefill;
        let generation = ANSWER as f64 / q4.decode + TURN as f64 / q4.prefill;
        eprintln!(
            "llama.cpp alone, {threads} thread(s): decode {:.1} tokens/s; {}-token prefill {:.1} tokens/s (Q4_1), {:.1} (F32): a {ANSWER}-token answer after a {TURN}-token turn cannot be checked in less than {:.3} of its generation time",
            q4.decode,
            TURN + ANSWER,
            q4.prefill,
            f32.prefill,
            check / generation
        );
    }
    Ok(())
}

fn measure(path: &Path, threads: i32) -> Result<Speeds> {
    let backend = zg_engine::llama_backend()?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(backend, params)?;
    let mut batch = LlamaBatch::new(512, 1);
    let token =
        |round: usize, pos: usize| LlamaToken(((pos * 37 + round * 101) % 40_000 + 100) as i32);
    // A check: the turn and the answer in one step, logits for the answer.
    let mut prefill = 0.0;
    for round in 0..=ROUNDS {
        ctx.clear_kv_cache();
        batch.clear();
        for pos in 0..TURN + ANSWER {
            batch.add(token(round, pos), pos as i32, &[0], pos >= TURN)?;
        }
        let started = Instant::now();
        ctx.decode(&mut batch)?;
        // The first round warms the caches up.
        if round > 0 {
            prefill += started.elapsed().as_secs_f64();
        }
    }
    // A generation: the answer's tokens one step each.
    let mut decode = 0.0;
    for round in 0..ROUNDS {
        ctx.clear_kv_cache();
        batch.clear();
        for pos in 0..TURN {
            batch.add(token(round, pos), pos as i32, &[0], pos + 1 == TURN)?;
        }
        ctx.decode(&mut batch)?;
        let started = Instant::now();
        for pos in TURN..TURN + ANSWER {
            batch.clear();
            batch.add(token(round, pos), pos as i32, &[0], true)?;
            ctx.decode(&mut batch)?;
        }
        decode += started.elapsed().as_secs_f64();
    }
    let tokens = (ROUNDS * (TURN + ANSWER)) as f64;
    Ok(Speeds {
        prefill: tokens / prefill,
        decode: (ROUNDS * ANSWER) as f64 / decode,
    })
}
