//! A service as the registry lists it: what a provider sells, at what
//! ceiling prices, and which key signs its receipts.

use crate::Prices;
use alloy_primitives::{Address, B256, keccak256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub provider: Address,
    pub name: String,
    /// "chat", "embeddings", ...
    pub kind: String,
    pub url: String,
    pub model: String,
    /// sha256 of the weights file.
    pub model_digest: B256,
    /// "cpu", "H100", ...
    pub hardware: String,
    /// Ceilings per token, in neuron.
    pub prices: Prices,
    /// How answers can be checked: "none" or a proof method
    /// ([`crate::verifiability`]).
    pub verifiability: String,
    /// The address that signs this service's receipts.
    pub signer: Address,
    pub updated_at: u64,
    /// When a dispute found the service guilty (0: never); discovery skips
    /// a failed service until its provider lists it again with fresh stake.
    #[serde(default)]
    pub failed_at: u64,
}

impl Service {
    pub fn id(&self) -> B256 {
        service_id(&self.name)
    }
}

/// A receipt's `service` field: keccak256 of the service name.
pub fn service_id(name: &str) -> B256 {
    keccak256(name.as_bytes())
}

/// What a service does, as the registry's `kind` text names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/embeddings`.
    Embeddings,
    /// `/v1/fine_tuning/jobs`: LoRA training priced per trained token.
    FineTuning,
    /// A kind this build does not serve (listed by a newer provider).
    Other(String),
}

impl ServiceKind {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Chat => "chat",
            Self::Embeddings => "embeddings",
            Self::FineTuning => "fine-tuning",
            Self::Other(text) => text,
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "chat" => Self::Chat,
            "embeddings" => Self::Embeddings,
            "fine-tuning" => Self::FineTuning,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ServiceKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ServiceKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}
