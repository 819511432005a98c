//! The `[keys]` section: the wallet and the receipt signer, each from an
//! encrypted keystore (the password from a file or an environment variable),
//! or as plaintext hex, which only a local dev chain's throwaway keys may
//! use (`dev = true`, as `zg-serving dev` and the tests write it).

use serde::Deserialize;
use std::path::PathBuf;
use zg_chain::{Password, read_keystore};
use zg_core::SigningKey;

/// Where the password comes from when the section names none.
pub(crate) const DEFAULT_PASSWORD_ENV: &str = "ZG_KEYSTORE_PASSWORD";

/// The keys, decrypted.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "KeysFile")]
pub struct KeysConfig {
    /// The provider's wallet: settles, registers services, receives earnings.
    pub provider: SigningKey,
    /// Signs receipts; the provider key when absent.
    pub signer: Option<SigningKey>,
    /// Some key was written in plaintext outside a dev chain (`dev = true`):
    /// `Config::load` refuses it.
    pub plaintext: bool,
}

/// `[keys]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    /// Plaintext hex wallet key (dev and tests only).
    provider: Option<String>,
    /// Plaintext hex receipt-signer key (dev and tests only).
    signer: Option<String>,
    provider_keystore: Option<PathBuf>,
    signer_keystore: Option<PathBuf>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    /// The keys are a local dev chain's throwaway accounts: plaintext is fine.
    #[serde(default)]
    dev: bool,
}

impl TryFrom<KeysFile> for KeysConfig {
    type Error = String;

    fn try_from(file: KeysFile) -> Result<Self, String> {
        let password = match (&file.password_file, &file.password_env) {
            (Some(_), Some(_)) => {
                return Err("expected one of password_file and password_env, got both".into());
            }
            (Some(path), None) => Password::File(path.clone()),
            (None, Some(var)) => Password::Env(var.clone()),
            (None, None) => Password::Env(DEFAULT_PASSWORD_ENV.into()),
        };
        let plaintext = !file.dev && (file.provider.is_some() || file.signer.is_some());
        let provider = one_key("provider", file.provider, file.provider_keystore, &password)?
            .ok_or_else(|| {
                format!(
                    "expected provider_keystore (the wallet's encrypted keystore): make one with `zg-serving keys new {}`",
                    suggested_path("provider")
                )
            })?;
        let signer = one_key("signer", file.signer, file.signer_keystore, &password)?;
        Ok(KeysConfig {
            plaintext,
            provider,
            signer,
        })
    }
}

fn suggested_path(role: &str) -> String {
    format!("keys/{role}.json")
}

fn one_key(
    role: &str,
    plaintext: Option<String>,
    keystore: Option<PathBuf>,
    password: &Password,
) -> Result<Option<SigningKey>, String> {
    match (plaintext, keystore) {
        (Some(_), Some(_)) => Err(format!(
            "expected one of {role} and {role}_keystore, got both"
        )),
        (Some(hex), None) => hex.parse().map(Some).map_err(|_| {
            format!("{role}: expected a 32-byte hex private key (0x + 64 hex digits)")
        }),
        (None, Some(path)) => {
            let password = password.read().map_err(|e| e.to_string())?;
            read_keystore(&path, &password)
                .map(Some)
                .map_err(|e| format!("{role}_keystore: {e}"))
        }
        (None, None) => Ok(None),
    }
}

/// Why a plaintext key is refused, and how to make the keystore instead.
pub(crate) fn plaintext_refused() -> String {
    let (p, s) = (suggested_path("provider"), suggested_path("signer"));
    format!(
        "a plaintext private key is refused outside a local dev chain (`dev = true` in [keys]): move it into an encrypted keystore with \
         `zg-serving keys import {p}` (or make a new key with `zg-serving keys new {p}`, and `zg-serving keys new {s}` \
         for the receipt signer), then set provider_keystore = \"{p}\", signer_keystore = \"{s}\" and \
         password_file (or password_env) in [keys]"
    )
}
