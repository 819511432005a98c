//! What can go wrong starting or driving the local chain.

#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error(
        "anvil (the local dev chain) was not found; looked at: {looked}. \
         Run `make deps` to install it from contracts/package-lock.json, or set ZG_ANVIL to its path"
    )]
    AnvilNotFound { looked: String },

    #[error("could not start anvil ({path}): {reason}")]
    AnvilStart { path: String, reason: String },

    #[error("{action}: anvil did not answer as expected: {reason}")]
    Rpc { action: String, reason: String },

    #[error(transparent)]
    Chain(#[from] zg_chain::ChainError),

    #[error("anvil's dev key is not a valid signing key: {0}")]
    Key(#[from] zg_core::SignatureError),
}

impl DevnetError {
    pub(crate) fn rpc(action: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Rpc {
            action: action.into(),
            reason: err.to_string(),
        }
    }
}
