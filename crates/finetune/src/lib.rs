//! zg-finetune: LoRA fine-tuning of the built-in GGUF chat model on CPU.
//!
//! A training file in OpenAI's fine-tuning JSONL ([`Dataset`]) is rendered
//! with the model's chat template exactly as zg-engine renders prompts; the
//! llama forward pass runs in candle on the GGUF's dequantized weights with
//! LoRA on every projection of every block; the result is a llama.cpp GGUF
//! LoRA ([`Adapter::save_gguf`]) that `zg-serving engine --lora` serves.
//!
//! ```no_run
//! # fn run() -> Result<(), zg_finetune::FinetuneError> {
//! use std::sync::atomic::AtomicBool;
//! let base = zg_finetune::BaseModel::load("models/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref())?;
//! let data = zg_finetune::Dataset::parse(&std::fs::read("train.jsonl").unwrap_or_default())?;
//! let config = zg_finetune::TrainConfig::default();
//! let adapter = base.train(&data, &config, "ckpt".as_ref(), &AtomicBool::new(false), |p| {
//!     println!("step {}/{} loss {:.3}", p.step, p.total_steps, p.loss)
//! })?;
//! adapter.save_gguf("adapter.gguf".as_ref())?;
//! # Ok(()) }
//! ```

mod dataset;
mod error;
mod format;
mod lora;
mod model;
mod tokens;
mod train;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};

pub use dataset::{Dataset, DatasetError, Example, Message, Role};
pub use error::FinetuneError;
pub use format::follows_format;
pub use lora::Adapter;
pub use train::{BASE_LEARNING_RATE, Progress, TrainConfig};

/// Tokens of a training file as the trainer sees them (template included),
/// reading only the model's vocabulary: a job's trained tokens, what it is
/// priced by, are this times its epochs.
pub fn count_tokens(gguf: &Path, jsonl: &[u8]) -> Result<u64, FinetuneError> {
    count_dataset_tokens(gguf, &Dataset::parse(jsonl)?)
}

/// [`count_tokens`] of a file already parsed.
pub fn count_dataset_tokens(gguf: &Path, dataset: &Dataset) -> Result<u64, FinetuneError> {
    tokens::ChatTokenizer::load(gguf)?.count(dataset)
}

/// The frozen base model: its weights in candle and its tokenizer.
pub struct BaseModel {
    llama: model::Llama,
    tokenizer: tokens::ChatTokenizer,
}

impl BaseModel {
    /// Loads a llama GGUF, dequantizing every weight to f32 (about 4 bytes
    /// a parameter).
    pub fn load(gguf: &Path) -> Result<Self, FinetuneError> {
        let tokenizer = tokens::ChatTokenizer::load(gguf)?;
        let llama = model::Llama::load(gguf)?;
        Ok(Self { llama, tokenizer })
    }

    /// Trains an adapter on `dataset`, resuming from the checkpoint in
    /// `checkpoints` when one of the same job is there, reporting every
    /// step to `progress` and stopping (with a checkpoint) when `cancel` is
    /// set. Deterministic given `config.seed`.
    pub fn train(
        &self,
        dataset: &Dataset,
        config: &TrainConfig,
        checkpoints: &Path,
        cancel: &AtomicBool,
        progress: impl FnMut(&Progress),
    ) -> Result<Adapter, FinetuneError> {
        train::train(self, dataset, config, checkpoints, cancel, progress)
    }

    /// Mean loss per answer token over `dataset`: of the base model, or
    /// with `adapter` applied (held-out loss).
    pub fn evaluate(
        &self,
        dataset: &Dataset,
        adapter: Option<&Adapter>,
    ) -> Result<f32, FinetuneError> {
        train::evaluate(self, dataset, adapter, 8)
    }

    /// The prompt tokens of a chat, ending with the opening of the
    /// assistant's turn, as zg-engine feeds them to llama.cpp.
    pub fn prompt_tokens(&self, messages: &[Message]) -> Result<Vec<u32>, FinetuneError> {
        self.tokenizer.prompt(messages)
    }

    /// The logits of the token after `tokens` (this forward pass, checked
    /// against llama.cpp's in the tests).
    pub fn next_token_logits(
        &self,
        tokens: &[u32],
        adapter: Option<&Adapter>,
    ) -> Result<Vec<f32>, FinetuneError> {
        let Some(last) = tokens.len().checked_sub(1) else {
            return Err(FinetuneError::Config("no tokens to continue".into()));
        };
        if let Some(&bad) = tokens
            .iter()
            .find(|&&t| t as usize >= self.tokenizer.n_vocab())
        {
            return Err(FinetuneError::Config(format!(
                "token {bad} is outside the vocabulary of {}",
                self.tokenizer.n_vocab()
            )));
        }
        let weights = adapter.map(Adapter::weights);
        let input = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let hidden = self.llama.hidden(&input, weights.as_ref())?;
        let row = hidden.squeeze(0)?.narrow(0, last, 1)?;
        Ok(self.llama.logits(&row)?.squeeze(0)?.to_vec1::<f32>()?)
    }

    fn encode_all(&self, dataset: &Dataset) -> Result<Vec<tokens::Encoded>, FinetuneError> {
        let context = self.llama.config.context;
        let mut encoded = Vec::with_capacity(dataset.examples.len());
        for (i, example) in dataset.examples.iter().enumerate() {
            let e = self.tokenizer.encode(example)?;
            if e.tokens.len() > context {
                return Err(FinetuneError::Config(format!(
                    "example {} is {} tokens long, the model's context is {context}: shorten it",
                    i + 1,
                    e.tokens.len()
                )));
            }
            encoded.push(e);
        }
        Ok(encoded)
    }
}
