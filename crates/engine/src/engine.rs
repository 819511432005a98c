//! The engine as a whole: loading the models named in the config and their
//! identities for `/v1/models`.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::api::unix_now;
use crate::chat::ChatModel;
use crate::embed::Embedder;
use crate::proof::{PROOF_METHOD, ProofStore};
use crate::{EngineConfig, EngineError};

/// A served model as `/v1/models` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCard {
    /// The file name without extension (the GGUF) or the directory name
    /// (the embedding model).
    pub id: String,
    /// `chat` or `embeddings`.
    pub kind: &'static str,
    /// sha256 of the weights file, hex.
    pub sha256: String,
    pub created: u64,
    /// The proof method of its answers ([`crate::proof::PROOF_METHOD`]), if any.
    pub proof_method: Option<&'static str>,
    /// What it serves beyond a plain answer, as `zg_core::capability`
    /// names: the chat model all of them, the embedding model none.
    pub capabilities: &'static [&'static str],
}

/// The loaded models and the decode thread.
pub struct Engine {
    chat: ChatModel,
    embedder: Option<Embedder>,
    cards: Vec<ModelCard>,
    proofs: Option<Arc<ProofStore>>,
}

impl Engine {
    /// Loads every model of `config` and starts the decode thread. Blocks
    /// for a few seconds (reading and hashing the files).
    pub fn load(config: &EngineConfig) -> Result<Self, EngineError> {
        let created = unix_now();
        let chat_sha = crate::digest::verified_sha256(&config.model)?;
        let proofs = config.proofs.then(|| Arc::new(ProofStore::default()));
        let mut cards = vec![ModelCard {
            id: file_id(&config.model),
            kind: "chat",
            sha256: chat_sha,
            created,
            proof_method: proofs.as_ref().map(|_| PROOF_METHOD),
            capabilities: zg_core::capability::ALL,
        }];
        let embedder = match &config.embedding_model {
            Some(dir) => {
                let embedder = Embedder::load(dir)?;
                let sha256 = crate::digest::verified_sha256(&embedder.weights)?;
                for extra in ["config.json", "tokenizer.json"] {
                    if let Some(parent) = embedder.weights.parent() {
                        crate::digest::verified_sha256(&parent.join(extra))?;
                    }
                }
                let id = embedder
                    .weights
                    .parent()
                    .map_or_else(|| file_id(dir), file_id);
                cards.push(ModelCard {
                    id,
                    kind: "embeddings",
                    sha256,
                    created,
                    proof_method: None,
                    capabilities: &[],
                });
                Some(embedder)
            }
            None => None,
        };
        let chat = ChatModel::load(config, proofs.clone())?;
        Ok(Self {
            chat,
            embedder,
            cards,
            proofs,
        })
    }

    pub fn models(&self) -> &[ModelCard] {
        &self.cards
    }

    /// How many tokens the chat model's tokenizer makes of `text` (special
    /// tokens such as `<|im_start|>` count as one).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.chat.tokenize(text).len()
    }

    /// Tokens one chat request may hold (prompt plus answer).
    pub fn ctx_per_request(&self) -> u32 {
        self.chat.ctx_per_slot()
    }

    pub(crate) fn chat(&self) -> &ChatModel {
        &self.chat
    }

    pub(crate) fn chat_model_id(&self) -> &str {
        &self.cards[0].id
    }

    /// The stored proofs of recent answers; `None` when proofs are off.
    pub(crate) fn proofs(&self) -> Option<&ProofStore> {
        self.proofs.as_deref()
    }

    pub(crate) fn embedder(&self) -> Option<&Embedder> {
        self.embedder.as_ref()
    }

    pub(crate) fn embedding_model_id(&self) -> Option<&str> {
        self.cards
            .iter()
            .find(|c| c.kind == "embeddings")
            .map(|c| c.id.as_str())
    }
}

fn file_id(path: &Path) -> String {
    let name = if path.extension().is_some_and(|e| e == "gguf") {
        path.file_stem()
    } else {
        path.file_name()
    };
    name.map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
