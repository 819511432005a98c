//! Keys at rest: the standard encrypted Ethereum JSON keystore (scrypt +
//! AES-128-CTR, what geth and MetaMask export), written owner-only (0600)
//! with the geth `address` field so a key can be listed without its password.

use std::{
    io::Write,
    path::{Path, PathBuf},
};
use zg_core::{Address, B256, SigningKey};

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error(
        "could not open keystore {path}: {reason}; is the password right, and is it an Ethereum JSON keystore (made by `zg-serving keys new`)?"
    )]
    Open { path: PathBuf, reason: String },
    #[error("{path} exists already: choose another file, the key in it would be lost")]
    Exists { path: PathBuf },
    #[error("writing keystore {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("no keystore password: {0}")]
    Password(String),
}

/// Where a keystore's password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    /// A file whose first line is the password (as geth's `--password`).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl Password {
    pub fn read(&self) -> Result<String, KeystoreError> {
        match self {
            Password::File(path) => std::fs::read_to_string(path)
                .map(|text| text.lines().next().unwrap_or_default().to_string())
                .map_err(|e| {
                    KeystoreError::Password(format!(
                        "cannot read the password file {}: {e}",
                        path.display()
                    ))
                }),
            Password::Env(var) => std::env::var(var).map_err(|_| {
                KeystoreError::Password(format!(
                    "the environment variable {var} is not set (or not UTF-8): set it to the keystore's password"
                ))
            }),
        }
    }
}

/// Decrypts the key in the keystore at `path`.
pub fn read_keystore(path: &Path, password: &str) -> Result<SigningKey, KeystoreError> {
    let open = |reason: String| KeystoreError::Open {
        path: path.to_path_buf(),
        reason,
    };
    let secret =
        eth_keystore::decrypt_key(path, password.as_bytes()).map_err(|e| open(e.to_string()))?;
    let bytes: [u8; 32] = secret
        .as_slice()
        .try_into()
        .map_err(|_| open(format!("it holds {} bytes, a key is 32", secret.len())))?;
    SigningKey::from_bytes(&B256::from(bytes)).map_err(|e| open(e.to_string()))
}

/// Writes `key` to a new keystore at `path`, readable by its owner only.
/// Refuses to replace an existing file.
pub fn write_keystore(path: &Path, key: &SigningKey, password: &str) -> Result<(), KeystoreError> {
    let write = |reason: String| KeystoreError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| write("expected a path that ends in a UTF-8 file name".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| write(format!("creating {}: {e}", dir.display())))?;
    // Made first, empty and 0600: eth-keystore truncates it in place, so the
    // secret never sits in a file others can read, and a race can't clobber a key.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeystoreError::Exists {
            path: path.to_path_buf(),
        },
        _ => write(e.to_string()),
    })?;
    let written = eth_keystore::encrypt_key(
        dir,
        &mut rand08::thread_rng(),
        key.to_bytes().0,
        password.as_bytes(),
        Some(name),
    )
    .map_err(|e| write(e.to_string()))
    .and_then(|_| add_address(path, key.address()).map_err(write));
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// geth's keystores carry the address (hex, no 0x); eth-keystore's don't.
fn add_address(path: &Path, address: Address) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let object = json
        .as_object_mut()
        .ok_or("eth-keystore wrote something that is not a JSON object")?;
    object.insert("address".into(), hex::encode(address.as_slice()).into());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    file.write_all(json.to_string().as_bytes())
        .map_err(|e| e.to_string())
}

/// The address a keystore names in its `address` field, without decrypting
/// it; None when the file has none (then only the password tells).
pub fn keystore_address(path: &Path) -> Result<Option<Address>, KeystoreError> {
    let open = |reason: String| KeystoreError::Open {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| open(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| open(format!("not JSON: {e}")))?;
    if json.get("crypto").or_else(|| json.get("Crypto")).is_none() {
        return Err(open("it has no `crypto` section".into()));
    }
    json.get("address")
        .and_then(|a| a.as_str())
        .map(|a| {
            let hex = a.strip_prefix("0x").unwrap_or(a);
            format!("0x{hex}")
                .parse()
                .map_err(|_| open(format!("its address field {a:?} is not 20 hex bytes")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystore_round_trip_is_owner_only_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("zg-keystore-{}", std::process::id()));
        let path = dir.join("a.json");
        let _ = std::fs::remove_dir_all(&dir);
        let key = SigningKey::random();
        write_keystore(&path, &key, "pw").unwrap();

        assert_eq!(read_keystore(&path, "pw").unwrap().address(), key.address());
        assert_eq!(keystore_address(&path).unwrap(), Some(key.address()));
        let wrong = read_keystore(&path, "not it").unwrap_err().to_string();
        assert!(wrong.contains("password"), "{wrong}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        let again = write_keystore(&path, &SigningKey::random(), "pw").unwrap_err();
        assert!(matches!(again, KeystoreError::Exists { .. }), "{again}");
        assert_eq!(read_keystore(&path, "pw").unwrap().address(), key.address());

        std::fs::write(dir.join("pw.txt"), "secret\nignored\n").unwrap();
        assert_eq!(Password::File(dir.join("pw.txt")).read().unwrap(), "secret");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
