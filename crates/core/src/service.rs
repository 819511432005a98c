//! A service as the registry lists it: what a provider sells, at what
//! ceiling prices, and which key signs its receipts.

use crate::Prices;
use alloy_primitives::{Address, B256, keccak256};
use serde::{Deserialize, Serialize};

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
    /// "none", "tee", ...
    pub verifiability: String,
    /// The address that signs this service's receipts.
    pub signer: Address,
    pub updated_at: u64,
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
