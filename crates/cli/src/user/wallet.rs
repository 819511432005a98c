//! The user's key: a hex private key from an environment variable, or the
//! standard encrypted Ethereum JSON keystore (scrypt), made by `new-key`.

use anyhow::{Context, bail};
use std::path::Path;
use zg_core::{B256, SigningKey};

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
        let secret = eth_keystore::decrypt_key(path, password.as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "could not open keystore {}: {e} (wrong password in {}?)",
                path.display(),
                self.password_env
            )
        })?;
        let bytes: [u8; 32] = secret
            .as_slice()
            .try_into()
            .context("the keystore does not hold a 32-byte key")?;
        Ok(SigningKey::from_bytes(&B256::from(bytes))?)
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

/// Writes a new random key to `out` as an encrypted keystore; returns it.
pub(crate) fn new_keystore(out: &Path, password: &str) -> anyhow::Result<SigningKey> {
    if out.exists() {
        bail!(
            "{} exists already: choose another --out, the old key would be lost",
            out.display()
        );
    }
    let key = SigningKey::random();
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .context("--out needs a file name")?;
    eth_keystore::encrypt_key(
        dir,
        &mut rand08::thread_rng(),
        key.to_bytes().0,
        password.as_bytes(),
        Some(name),
    )
    .map_err(|e| anyhow::anyhow!("writing keystore {}: {e}", out.display()))?;
    Ok(key)
}
