//! Checkpoints: a run cancelled, then crashed, then resumed ends with the
//! very adapter an uninterrupted run ends with.

#![allow(clippy::unwrap_used)]

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use zg_finetune::{BaseModel, Dataset, FinetuneError, TrainConfig};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zg-finetune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let base =
        BaseModel::load(&crate_dir().join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let text = std::fs::read_to_string(crate_dir().join("data/train.jsonl")).unwrap();
    // A few examples keep the steps short; the order still depends on the seed.
    let lines: Vec<&str> = text.lines().take(6).collect();
    let data = Dataset::parse(lines.join("\n").as_bytes()).unwrap();
    let config = TrainConfig {
        epochs: 2,
        learning_rate_multiplier: 2.0,
        batch_size: 2,
        rank: 4,
        alpha: 8.0,
        seed: 11,
        checkpoint_every: 2,
        max_steps: Some(5),
    };
    let never = AtomicBool::new(false);

    let whole_dir = temp_dir("whole");
    let mut whole_losses = Vec::new();
    let whole = base
        .train(&data, &config, &whole_dir, &never, |p| {
            whole_losses.push(p.loss)
        })
        .unwrap();
    assert_eq!(whole_losses.len(), 5);

    let dir = temp_dir("resumed");
    // Cancelled after step 1: a checkpoint of step 1 is written.
    let cancel = AtomicBool::new(false);
    let e = base
        .train(&data, &config, &dir, &cancel, |_| {
            cancel.store(true, Ordering::Relaxed)
        })
        .unwrap_err();
    assert!(
        matches!(e, FinetuneError::Cancelled { step: 1, total: 5 }),
        "{e}"
    );
    // Resumed, then the process "dies" after step 3, before the checkpoint
    // that step 4 would write: step 3's work is lost.
    let mut steps = Vec::new();
    // The crash is expected: keep its message and backtrace out of the log.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let crashed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        base.train(&data, &config, &dir, &never, |p| {
            steps.push(p.step);
            assert!(p.step < 3, "crash");
        })
    }));
    std::panic::set_hook(hook);
    assert!(crashed.is_err());
    assert_eq!(steps, [2, 3]);
    // A new run picks up at the last checkpoint (step 2) and finishes.
    let mut losses = Vec::new();
    let resumed = base
        .train(&data, &config, &dir, &never, |p| {
            losses.push((p.step, p.loss))
        })
        .unwrap();
    assert_eq!(losses.iter().map(|l| l.0).collect::<Vec<_>>(), [3, 4, 5]);
    assert_eq!(losses[2].1, whole_losses[4]);
    assert_eq!(resumed.values().unwrap(), whole.values().unwrap());

    // A checkpoint of another job is refused rather than mixed in.
    let other = TrainConfig {
        seed: 12,
        ..config.clone()
    };
    let e = base.train(&data, &other, &dir, &never, |_| {}).unwrap_err();
    assert!(matches!(e, FinetuneError::Checkpoint { .. }), "{e}");

    std::fs::remove_dir_all(&whole_dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
