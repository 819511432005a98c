//! The training loop: batches in a seeded order, loss on answer tokens,
//! AdamW on the LoRA parameters only, progress per step, cancellation
//! between steps, and checkpoints that a restarted process resumes from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::lora::{self, Adapter, LoraWeights, Rng};
use crate::model::{Llama, log_softmax};
use crate::tokens::Encoded;
use crate::{BaseModel, Dataset, FinetuneError};

/// The base learning rate; a job's `learning_rate_multiplier` scales it.
pub const BASE_LEARNING_RATE: f64 = 1e-3;

/// Hyperparameters of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub learning_rate_multiplier: f64,
    /// Examples per step.
    pub batch_size: usize,
    /// LoRA rank r.
    pub rank: usize,
    /// LoRA alpha; the update is scaled by alpha / r.
    pub alpha: f32,
    /// Seeds the adapter's initialisation and the order of examples.
    pub seed: u64,
    /// Steps between checkpoints (one is always written at the end).
    pub checkpoint_every: usize,
    /// Stops after this many steps even if the epochs are not done.
    pub max_steps: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            learning_rate_multiplier: 1.0,
            batch_size: 4,
            rank: 8,
            alpha: 16.0,
            seed: 42,
            checkpoint_every: 10,
            max_steps: None,
        }
    }
}

/// What a step reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Steps done, 1-based.
    pub step: usize,
    pub total_steps: usize,
    /// Mean loss per answer token of this step's batch.
    pub loss: f32,
    /// Since this process started (or resumed) training.
    pub elapsed: Duration,
}

/// The JSON beside a checkpoint's tensors.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    /// Steps done; with the seed it fixes the data position and AdamW's t.
    step: usize,
    config: TrainConfig,
    examples: usize,
}

const STATE_FILE: &str = "state.json";
const TENSORS_FILE: &str = "lora.safetensors";

pub(crate) fn train(
    base: &BaseModel,
    dataset: &Dataset,
    config: &TrainConfig,
    checkpoints: &Path,
    cancel: &AtomicBool,
    mut progress: impl FnMut(&Progress),
) -> Result<Adapter, FinetuneError> {
    if config.epochs == 0 || config.batch_size == 0 || config.rank == 0 {
        return Err(FinetuneError::Config(
            "epochs, batch size and rank must be at least 1".into(),
        ));
    }
    if !(config.learning_rate_multiplier > 0.0 && config.learning_rate_multiplier.is_finite()) {
        return Err(FinetuneError::Config(format!(
            "learning rate multiplier {} must be a positive number",
            config.learning_rate_multiplier
        )));
    }
    let encoded = base.encode_all(dataset)?;
    let n = encoded.len();
    let steps_per_epoch = n.div_ceil(config.batch_size);
    let total_steps = config
        .max_steps
        .map_or(steps_per_epoch * config.epochs, |max| {
            max.min(steps_per_epoch * config.epochs)
        });
    let llama = &base.llama;

    let (mut step, tensors) = match load_checkpoint(checkpoints, config, n)? {
        Some(resumed) => resumed,
        None => {
            let mut rng = Rng::new(config.seed);
            let init = lora::init(
                |t| llama.linear_dims(t),
                llama.config.layers,
                config.rank,
                &mut rng,
            )?;
            let mut tensors = BTreeMap::new();
            for (name, t) in init {
                tensors.insert(format!("m.{name}"), t.zeros_like()?);
                tensors.insert(format!("v.{name}"), t.zeros_like()?);
                tensors.insert(name, t);
            }
            (0, tensors)
        }
    };
    let mut optimizer = AdamW::new(tensors, config, step)?;
    let started = Instant::now();
    while step < total_steps {
        if cancel.load(Ordering::Relaxed) {
            save_checkpoint(checkpoints, step, config, n, &optimizer)?;
            return Err(FinetuneError::Cancelled {
                step,
                total: total_steps,
            });
        }
        let epoch = step / steps_per_epoch;
        let at = (step % steps_per_epoch) * config.batch_size;
        // The order of an epoch depends on the seed and the epoch only, so
        // a resumed run picks the same batches.
        let order = Rng::new(config.seed ^ (epoch as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407))
            .permutation(n);
        let batch: Vec<&Encoded> = order[at..(at + config.batch_size).min(n)]
            .iter()
            .map(|&i| &encoded[i])
            .collect();
        let weights = optimizer.weights(config);
        let (loss, _) = batch_loss(llama, &batch, Some(&weights))?;
        let grads = loss.backward()?;
        optimizer.step(&grads)?;
        step += 1;
        progress(&Progress {
            step,
            total_steps,
            loss: loss.to_scalar::<f32>()?,
            elapsed: started.elapsed(),
        });
        if step % config.checkpoint_every.max(1) == 0 || step == total_steps {
            save_checkpoint(checkpoints, step, config, n, &optimizer)?;
        }
    }
    Ok(optimizer.adapter(config))
}

/// Mean loss per answer token over `dataset`, in batches of `batch_size`.
pub(crate) fn evaluate(
    base: &BaseModel,
    dataset: &Dataset,
    adapter: Option<&Adapter>,
    batch_size: usize,
) -> Result<f32, FinetuneError> {
    let encoded = base.encode_all(dataset)?;
    let weights = adapter.map(Adapter::weights);
    let (mut sum, mut count) = (0.0f64, 0usize);
    for chunk in encoded.chunks(batch_size.max(1)) {
        let batch: Vec<&Encoded> = chunk.iter().collect();
        let (loss, tokens) = batch_loss(&base.llama, &batch, weights.as_ref())?;
        sum += f64::from(loss.to_scalar::<f32>()?) * tokens as f64;
        count += tokens;
    }
    Ok((sum / count.max(1) as f64) as f32)
}

/// Mean cross-entropy of the answer tokens of `batch`, and how many there are.
fn batch_loss(
    llama: &Llama,
    batch: &[&Encoded],
    lora: Option<&LoraWeights>,
) -> Result<(Tensor, usize), FinetuneError> {
    let len = batch.iter().map(|e| e.tokens.len()).max().unwrap_or(0);
    // Padding goes on the right, where the causal mask hides it from every
    // real token; no loss is taken on it.
    let mut tokens = vec![0u32; batch.len() * len];
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for (row, example) in batch.iter().enumerate() {
        tokens[row * len..row * len + example.tokens.len()].copy_from_slice(&example.tokens);
        for p in example.answer_start.max(1)..example.tokens.len() {
            positions.push((row * len + p - 1) as u32);
            targets.push(example.tokens[p]);
        }
    }
    let count = targets.len();
    let tokens = Tensor::from_vec(tokens, (batch.len(), len), &Device::Cpu)?;
    let hidden = llama.hidden(&tokens, lora)?;
    let hidden = hidden.reshape((batch.len() * len, llama.config.hidden))?;
    // Logits only where the loss looks: the output head is the largest
    // matrix of a small model.
    let rows = hidden.index_select(&Tensor::new(positions, &Device::Cpu)?, 0)?;
    let logp = log_softmax(&llama.logits(&rows)?)?;
    let targets = Tensor::from_vec(targets, (count, 1), &Device::Cpu)?;
    let loss = logp.gather(&targets, 1)?.mean_all()?.neg()?;
    Ok((loss, count))
}

/// candle_nn's AdamW with the same update, but whose moments can be saved
/// and restored: candle_nn keeps them private, and a resumed run must
/// continue with them to end where an uninterrupted one ends.
struct AdamW {
    /// LoRA parameters by tensor name.
    params: BTreeMap<String, Var>,
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    lr: f64,
    t: usize,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;
const WEIGHT_DECAY: f64 = 0.01;

impl AdamW {
    /// From a checkpoint's tensors (parameters by name, moments as `m.` and
    /// `v.`) after `t` steps.
    fn new(
        mut tensors: BTreeMap<String, Tensor>,
        config: &TrainConfig,
        t: usize,
    ) -> Result<Self, FinetuneError> {
        let names: Vec<String> = tensors
            .keys()
            .filter(|k| !k.starts_with("m.") && !k.starts_with("v."))
            .cloned()
            .collect();
        let (mut params, mut m, mut v) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for name in names {
            let missing = |what: &str| FinetuneError::Config(format!("{what}{name} is missing"));
            let p = tensors.remove(&name).ok_or_else(|| missing(""))?;
            m.insert(
                name.clone(),
                tensors
                    .remove(&format!("m.{name}"))
                    .ok_or_else(|| missing("m."))?,
            );
            v.insert(
                name.clone(),
                tensors
                    .remove(&format!("v.{name}"))
                    .ok_or_else(|| missing("v."))?,
            );
            params.insert(name, Var::from_tensor(&p)?);
        }
        Ok(Self {
            params,
            m,
            v,
            lr: BASE_LEARNING_RATE * config.learning_rate_multiplier,
            t,
        })
    }

    fn weights(&self, config: &TrainConfig) -> LoraWeights {
        LoraWeights {
            tensors: self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect(),
            scale: f64::from(config.alpha) / config.rank as f64,
        }
    }

    fn adapter(&self, config: &TrainConfig) -> Adapter {
        Adapter {
            rank: config.rank,
            alpha: config.alpha,
            tensors: self
                .params
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
                .collect(),
        }
    }

    fn step(&mut self, grads: &GradStore) -> Result<(), FinetuneError> {
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let scale_m = 1.0 / (1.0 - BETA1.powi(t));
        let scale_v = 1.0 / (1.0 - BETA2.powi(t));
        for (name, theta) in &self.params {
            let Some(g) = grads.get(theta.as_tensor()) else {
                continue;
            };
            let (Some(m), Some(v)) = (self.m.get_mut(name), self.v.get_mut(name)) else {
                continue;
            };
            *m = ((&*m * BETA1)? + (g * (1.0 - BETA1))?)?;
            *v = ((&*v * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let adjusted = ((&*m * scale_m)? / ((&*v * scale_v)?.sqrt()? + EPS)?)?;
            let next =
                ((theta.as_tensor() * (1.0 - self.lr * WEIGHT_DECAY))? - (adjusted * self.lr)?)?;
            theta.set(&next)?;
        }
        Ok(())
    }
}

fn save_checkpoint(
    dir: &Path,
    step: usize,
    config: &TrainConfig,
    examples: usize,
    optimizer: &AdamW,
) -> Result<(), FinetuneError> {
    let write_err = |path: PathBuf| move |source| FinetuneError::Write { path, source };
    std::fs::create_dir_all(dir).map_err(write_err(dir.to_path_buf()))?;
    let mut tensors: std::collections::HashMap<String, Tensor> = Default::default();
    for (name, var) in &optimizer.params {
        tensors.insert(name.clone(), var.as_tensor().detach());
    }
    for (name, m) in &optimizer.m {
        tensors.insert(format!("m.{name}"), m.clone());
    }
    for (name, v) in &optimizer.v {
        tensors.insert(format!("v.{name}"), v.clone());
    }
    // Written aside and renamed into place: a crash mid-write leaves the
    // previous checkpoint whole. The tensors go first, so a state file
    // never names a step whose tensors are not there.
    let tmp = dir.join(format!("{TENSORS_FILE}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp)?;
    let tensors_path = dir.join(TENSORS_FILE);
    std::fs::rename(&tmp, &tensors_path).map_err(write_err(tensors_path.clone()))?;
    let state = State {
        step,
        config: config.clone(),
        examples,
    };
    let json = serde_json::to_vec_pretty(&state).map_err(|e| FinetuneError::Checkpoint {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&tmp, json).map_err(write_err(tmp.clone()))?;
    let state_path = dir.join(STATE_FILE);
    std::fs::rename(&tmp, &state_path).map_err(write_err(state_path.clone()))?;
    Ok(())
}

/// The step and tensors of the checkpoint in `dir`, `None` when there is
/// none; a checkpoint of another job is an error, not silently replaced.
type Resumed = (usize, BTreeMap<String, Tensor>);

fn load_checkpoint(
    dir: &Path,
    config: &TrainConfig,
    examples: usize,
) -> Result<Option<Resumed>, FinetuneError> {
    let state_path = dir.join(STATE_FILE);
    let bad = |reason: String| FinetuneError::Checkpoint {
        path: dir.to_path_buf(),
        reason,
    };
    let bytes = match std::fs::read(&state_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let state: State = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    // Steps and checkpoint interval may change between runs; what fixes
    // the trajectory may not.
    let same = |c: &TrainConfig| {
        (
            c.epochs,
            c.learning_rate_multiplier.to_bits(),
            c.batch_size,
            c.rank,
            c.alpha.to_bits(),
            c.seed,
        )
    };
    if same(&state.config) != same(config) || state.examples != examples {
        return Err(bad(format!(
            "it is of another job ({:?} on {} examples, this job is {:?} on {examples})",
            state.config, state.examples, config
        )));
    }
    let tensors = candle_core::safetensors::load(dir.join(TENSORS_FILE), &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some((state.step, tensors.into_iter().collect())))
}
