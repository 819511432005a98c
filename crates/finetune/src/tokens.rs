//! Examples as token sequences, rendered by llama.cpp with the model's own
//! chat template exactly as zg-engine renders prompts, with the span of
//! the answer that the loss counts.

use std::path::Path;

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use crate::FinetuneError;
use crate::dataset::{Dataset, Example, Message};

/// An example as tokens: `tokens[answer_start..]` is the final assistant
/// answer through its end-of-turn token, the only tokens the loss counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub tokens: Vec<u32>,
    pub answer_start: usize,
}

/// The model's vocabulary and chat template (llama.cpp, vocabulary only).
pub(crate) struct ChatTokenizer {
    model: LlamaModel,
    template: LlamaChatTemplate,
}

impl ChatTokenizer {
    pub(crate) fn load(gguf: &Path) -> Result<Self, FinetuneError> {
        if !gguf.is_file() {
            return Err(FinetuneError::ModelMissing(gguf.to_path_buf()));
        }
        // The engine's backend: llama.cpp may be initialised once per
        // process, and tests run an engine beside the trainer.
        let backend =
            zg_engine::llama_backend().map_err(|e| FinetuneError::Tokenizer(e.to_string()))?;
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(backend, gguf, &params).map_err(|e| {
            FinetuneError::ModelLoad {
                path: gguf.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        // As zg-engine: the GGUF's template, ChatML when it has none.
        let template = match model.chat_template(None) {
            Ok(template) => template,
            Err(_) => LlamaChatTemplate::new("chatml")
                .map_err(|e| FinetuneError::Tokenizer(e.to_string()))?,
        };
        Ok(Self { model, template })
    }

    /// The prompt tokens of `messages`, ending with the opening of the
    /// assistant's turn: what the engine feeds the model for a chat.
    pub(crate) fn prompt(&self, messages: &[Message]) -> Result<Vec<u32>, FinetuneError> {
        let text = self.render(messages, true)?;
        Ok(self.tokenize(&text))
    }

    /// The whole example as tokens. The loss learns the last assistant
    /// message only; earlier ones are context, as in a served chat.
    pub(crate) fn encode(&self, example: &Example) -> Result<Encoded, FinetuneError> {
        let (answer, context) = example
            .messages
            .split_last()
            .ok_or_else(|| FinetuneError::Tokenizer("an example has no messages".into()))?;
        let prompt = self.prompt(context)?;
        let full = self.tokenize(&self.render(&example.messages, false)?);
        if !full.starts_with(&prompt) {
            return Err(FinetuneError::Tokenizer(format!(
                "the chat template renders the answer {:?} so that the prompt's tokens change: \
                 the answer cannot be trained apart from its prompt",
                answer.content
            )));
        }
        // The template may write more after the end-of-turn token (ChatML
        // writes "\n"); the model stops at the end-of-turn token, so that is
        // where the answer ends.
        let vocab = self.model.vocab();
        let end = full[prompt.len()..]
            .iter()
            .position(|&t| vocab.is_eog(llama_cpp_2::token::LlamaToken(t as i32)))
            .map_or(full.len(), |i| prompt.len() + i + 1);
        if end <= prompt.len() {
            return Err(FinetuneError::Tokenizer(format!(
                "the answer {:?} renders to no tokens: nothing to learn",
                answer.content
            )));
        }
        let mut tokens = full;
        tokens.truncate(end);
        Ok(Encoded {
            tokens,
            answer_start: prompt.len(),
        })
    }

    /// Tokens of every example of a training file, as the trainer sees them:
    /// trained tokens (what a job is priced by) are this times the epochs.
    pub(crate) fn count(&self, dataset: &Dataset) -> Result<u64, FinetuneError> {
        let mut total = 0u64;
        for example in &dataset.examples {
            total += self.encode(example)?.tokens.len() as u64;
        }
        Ok(total)
    }

    pub(crate) fn n_vocab(&self) -> usize {
        usize::try_from(self.model.n_vocab()).unwrap_or(0)
    }

    fn render(&self, messages: &[Message], open_answer: bool) -> Result<String, FinetuneError> {
        let mut chat = Vec::with_capacity(messages.len());
        for message in messages {
            chat.push(
                LlamaChatMessage::new(message.role.as_str().into(), message.content.clone())
                    .map_err(|_| {
                        FinetuneError::Tokenizer("message content contains a NUL character".into())
                    })?,
            );
        }
        self.model
            .apply_chat_template(&self.template, &chat, open_answer)
            .map_err(|e| FinetuneError::Tokenizer(format!("the chat template failed: {e}")))
    }

    /// As zg-engine reads a rendered prompt: special tokens as themselves.
    fn tokenize(&self, text: &str) -> Vec<u32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), true, true)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    }
}
