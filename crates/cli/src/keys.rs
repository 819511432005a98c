//! `zg-serving keys`: encrypted JSON keystores (the Ethereum format) for
//! users, providers, receipt signers and deployers: new, import, list, address.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::{Path, PathBuf};
use zg_chain::{Password, keystore::keystore_address, read_keystore, write_keystore};
use zg_core::SigningKey;

#[derive(Args)]
pub(crate) struct KeysArgs {
    #[command(flatten)]
    password: PasswordArgs,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a new random key in a new keystore file (written 0600).
    New { file: PathBuf },
    /// Put an existing hex private key (from --key-env or a prompt) into a new keystore.
    Import {
        file: PathBuf,
        /// Environment variable holding the hex private key; prompted for when unset.
        #[arg(long, default_value = "ZG_PRIVATE_KEY")]
        key_env: String,
    },
    /// The keystores in a folder and their addresses.
    List {
        #[arg(default_value = "keys")]
        dir: PathBuf,
    },
    /// The address of a keystore's key.
    Address { file: PathBuf },
}

/// Where a keystore's password comes from, shared with `chain deploy`.
#[derive(Args, Clone, Debug)]
pub(crate) struct PasswordArgs {
    /// File whose first line is the keystore password.
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the keystore password (used when set).
    #[arg(long, default_value = "ZG_KEYSTORE_PASSWORD", global = true)]
    pub password_env: String,
}

impl PasswordArgs {
    /// The password from the file, else the variable, else a prompt
    /// (asked twice when it protects a new keystore).
    pub(crate) fn read(&self, new: bool) -> anyhow::Result<String> {
        if let Some(file) = &self.password_file {
            return Ok(Password::File(file.clone()).read()?);
        }
        if std::env::var_os(&self.password_env).is_some() {
            return Ok(Password::Env(self.password_env.clone()).read()?);
        }
        let no_terminal = || {
            format!(
                "no password: pass --password-file FILE, set {}, or run in a terminal",
                self.password_env
            )
        };
        let password =
            rpassword::prompt_password("keystore password: ").with_context(no_terminal)?;
        if new {
            let again = rpassword::prompt_password("again: ").with_context(no_terminal)?;
            anyhow::ensure!(
                password == again,
                "the two passwords differ: nothing written"
            );
        }
        Ok(password)
    }

    /// Decrypts the keystore at `file`.
    pub(crate) fn unlock(&self, file: &Path) -> anyhow::Result<SigningKey> {
        Ok(read_keystore(file, &self.read(false)?)?)
    }
}

pub(crate) fn run(args: KeysArgs) -> anyhow::Result<()> {
    let print = |value: serde_json::Value, text: String| {
        if args.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    };
    match &args.command {
        KeysCommand::New { file } => {
            let key = SigningKey::random();
            write_keystore(file, &key, &args.password.read(true)?)?;
            print(
                json!({ "address": key.address(), "keystore": file }),
                format!("new key {} in {}", key.address(), file.display()),
            );
        }
        KeysCommand::Import { file, key_env } => {
            let hex = match std::env::var(key_env) {
                Ok(hex) => hex,
                Err(_) => rpassword::prompt_password("private key (hex): ").with_context(|| {
                    format!("no key: set {key_env} to the hex private key, or run in a terminal")
                })?,
            };
            let key: SigningKey = hex.parse().map_err(|_| {
                anyhow::anyhow!(
                    "expected a 32-byte hex private key (0x + 64 hex digits) in {key_env}"
                )
            })?;
            write_keystore(file, &key, &args.password.read(true)?)?;
            print(
                json!({ "address": key.address(), "keystore": file }),
                format!("imported {} into {}", key.address(), file.display()),
            );
        }
        KeysCommand::List { dir } => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| {
                    format!(
                        "reading {}: make a key there with `zg-serving keys new {}/NAME.json`",
                        dir.display(),
                        dir.display()
                    )
                })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect();
            files.sort();
            let rows: Vec<_> = files
                .iter()
                .map(|f| (f, keystore_address(f).map_err(|e| e.to_string())))
                .collect();
            print(
                json!(
                    rows.iter()
                        .map(|(f, a)| match a {
                            Ok(a) => json!({ "keystore": f, "address": a }),
                            Err(e) => json!({ "keystore": f, "error": e }),
                        })
                        .collect::<Vec<_>>()
                ),
                rows.iter()
                    .map(|(f, a)| match a {
                        Ok(Some(a)) => format!("{a}  {}", f.display()),
                        Ok(None) => format!(
                            "(no address field: `zg-serving keys address {}`)  {}",
                            f.display(),
                            f.display()
                        ),
                        Err(e) => format!("(not a keystore: {e})  {}", f.display()),
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        KeysCommand::Address { file } => {
            let address = match keystore_address(file)? {
                Some(a) => a,
                None => args.password.unlock(file)?.address(),
            };
            print(json!({ "address": address }), address.to_string());
        }
    }
    Ok(())
}
