//! The user's key: a hex private key from an environment variable, or the
//! standard encrypted Ethereum JSON keystore (scrypt), made by `new-key`.

use anyhow::{Context, bail};
use std::path::Path;
use zg_core::SigningKey;

/// Where the key comes from, shared by `user` and `gateway`.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct KeyArgs {
    /// Encrypted JSON keystore (from `zg-serving user new-key`).
    #[arg(long, env = "ZG_KEYSTORE", global = true)]
    pub keystore: Option<std::path::PathBuf>,
    /// Environment variable holding the keystore password.
    #[arg(long, default_value = "ZG_KEYSTORE_PASSWORD", global = true)]
    pub password_env: String,
    /// Environment variable holding a hex private key (used instead of a keystore when set).
    #[arg(long, default_value = "ZG_PRIVATE_KEY", global = true)]
    pub key_env: String,
}

impl KeyArgs {
    pub(crate) fn load(&self) -> anyhow::Result<SigningKey> {
        if let Ok(hex) = std::env::var(&self.key_env) {
            return hex.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{} does not hold a private key (64 hex digits): {e}",
                    self.key_env
                )
            });
        }
        let Some(path) = &self.keystore else {
            bail!(
                "no key: set {} to a hex private key, or pass --keystore FILE (make one with `zg-serving user new-key --out FILE`)",
                self.key_env
            );
        };
        let password = self.password()?;
        zg_chain::read_keystore(path, &password)
            .map_err(|e| anyhow::anyhow!("{e} (the password comes from {})", self.password_env))
    }

    pub(crate) fn password(&self) -> anyhow::Result<String> {
        if let Ok(p) = std::env::var(&self.password_env) {
            return Ok(p);
        }
        rpassword::prompt_password("keystore password: ").with_context(|| {
            format!(
                "no password: set {} or run in a terminal",
                self.password_env
            )
        })
    }
}

/// Writes a new random key to `out` as an encrypted keystore (0600); returns it.
pub(crate) fn new_keystore(out: &Path, password: &str) -> anyhow::Result<SigningKey> {
    let key = SigningKey::random();
    zg_chain::write_keystore(out, &key, password)?;
    Ok(key)
}
