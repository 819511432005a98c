//! Model file identity: the sha256 the marketplace registers on chain, and
//! the check of the files `make model` fetches against their known digests.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::EngineError;

/// Files fetched by `make model` (scripts/fetch-models.sh) and their sha256:
/// a file with one of these names and another digest is damaged.
const KNOWN: &[(&str, &str)] = &[
    (
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    (
        "all-MiniLM-L6-v2/config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
    (
        "all-MiniLM-L6-v2/model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "all-MiniLM-L6-v2/tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
];

/// Fails with [`EngineError::ModelMissing`] when `path` is not a file.
pub(crate) fn require_file(path: &Path) -> Result<(), EngineError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(EngineError::ModelMissing {
            path: path.to_path_buf(),
        })
    }
}

/// The hex sha256 of the file at `path`, checked against [`KNOWN`] when its
/// name is one of the fetched models.
pub(crate) fn verified_sha256(path: &Path) -> Result<String, EngineError> {
    require_file(path)?;
    let actual = sha256_file(path)?;
    if let Some(expected) = expected_sha256(path)
        && expected != actual
    {
        return Err(EngineError::ModelCorrupt {
            path: path.to_path_buf(),
            actual,
            expected: expected.to_string(),
        });
    }
    Ok(actual)
}

fn expected_sha256(path: &Path) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(name, _)| path.ends_with(name))
        .map(|(_, sum)| *sum)
}

fn sha256_file(path: &Path) -> Result<String, EngineError> {
    let read_err = |source| EngineError::ModelRead {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
