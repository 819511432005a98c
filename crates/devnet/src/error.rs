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

    #[error("the dev chain has no account {index}: start it with more `accounts`")]
    NoAccount { index: usize },

    #[error("could not listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },

    #[error("the broker's config does not parse: {0}")]
    Config(Box<zg_provider::ConfigError>),

    #[error("the broker did not start: {0}")]
    Broker(Box<zg_provider::StartError>),

    #[error("{action} {path}: {reason}")]
    File {
        action: &'static str,
        path: String,
        reason: String,
    },

    #[error("{step}: {reason}")]
    Step { step: String, reason: String },

    #[cfg(feature = "stack")]
    #[error(transparent)]
    Engine(Box<zg_engine::EngineError>),

    #[cfg(feature = "stack")]
    #[error(transparent)]
    Client(Box<zg_client::ClientError>),

    #[error("anvil's dev key is not a valid signing key: {0}")]
    Key(#[from] zg_core::SignatureError),
}

impl DevnetError {
    #[cfg(feature = "stack")]
    pub(crate) fn file(
        action: &'static str,
        path: &std::path::Path,
        err: impl std::fmt::Display,
    ) -> Self {
        Self::File {
            action,
            path: path.display().to_string(),
            reason: err.to_string(),
        }
    }

    /// A step of starting the local stack failed.
    #[cfg(feature = "stack")]
    pub(crate) fn step<E: std::fmt::Display>(step: impl Into<String>) -> impl FnOnce(E) -> Self {
        let step = step.into();
        move |err| Self::Step {
            step,
            reason: err.to_string(),
        }
    }

    pub(crate) fn rpc(action: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Rpc {
            action: action.into(),
            reason: err.to_string(),
        }
    }
}

/// The large errors of the parts devnet starts, boxed so that a
/// `Result<_, DevnetError>` stays small.
macro_rules! boxed_from {
    ($($(#[$cfg:meta])* $error:ty => $variant:ident),* $(,)?) => {$(
        $(#[$cfg])*
        impl From<$error> for DevnetError {
            fn from(err: $error) -> Self {
                Self::$variant(Box::new(err))
            }
        }
    )*};
}

boxed_from! {
    zg_provider::ConfigError => Config,
    zg_provider::StartError => Broker,
    #[cfg(feature = "stack")]
    zg_engine::EngineError => Engine,
    #[cfg(feature = "stack")]
    zg_client::ClientError => Client,
}
