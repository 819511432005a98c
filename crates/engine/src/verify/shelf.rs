//! A shelf of registered models: the GGUF files of a folder by sha256,
//! loaded on first use, and the judgement of a disputed or audited answer
//! (guilty, not guilty, or no judgement) that the verifier node and the
//! gateway's audits share.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use zg_core::Evidence;

use super::{Verdict, Verifier, VerifyError, model_digest};

/// What a check of one answer concludes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Vote {
        guilty: bool,
        why: String,
    },
    /// No judgement: the fault is the checker's (no weights) or the
    /// user's request is one this version cannot check.
    Abstain(String),
}

/// Guilty when the registered model does not reproduce the proof, or the
/// provider's own part (its proof, its response) is unreadable; abstain
/// when the fault is the checker's or the user's request is unsupported.
pub fn judge(result: Result<Verdict, VerifyError>) -> Judgement {
    match result {
        Ok(v) => Judgement::Vote {
            guilty: !v.pass,
            why: match v.mismatch {
                Some(why) => why,
                None => format!(
                    "distance {:.3} (threshold {}), worst token {:.3} (threshold {})",
                    v.distance, v.threshold, v.worst_token, v.token_threshold
                ),
            },
        },
        Err(e @ (VerifyError::Proof(_) | VerifyError::Token { .. })) => Judgement::Vote {
            guilty: true,
            why: format!("the provider signed an unreadable proof: {e}"),
        },
        Err(
            e @ VerifyError::Exchange {
                part: "response", ..
            },
        ) => Judgement::Vote {
            guilty: true,
            why: format!("the provider signed an unreadable answer: {e}"),
        },
        Err(e) => Judgement::Abstain(e.to_string()),
    }
}

/// The GGUF files of a folder by sha256, and those loaded.
pub struct Shelf {
    dir: PathBuf,
    threads: u32,
    paths: Mutex<HashMap<String, PathBuf>>,
    loaded: Mutex<HashMap<String, Arc<Verifier>>>,
}

impl Shelf {
    pub fn new(dir: &Path, threads: u32) -> Self {
        Self {
            dir: dir.to_path_buf(),
            threads,
            paths: Mutex::default(),
            loaded: Mutex::default(),
        }
    }

    /// The verifier of the model whose sha256 is `digest` (hex), if the
    /// folder holds it. Blocking: hashes and loads files.
    pub fn verifier(&self, digest: &str) -> Result<Option<Arc<Verifier>>, VerifyError> {
        if let Some(v) = lock(&self.loaded).get(digest) {
            return Ok(Some(v.clone()));
        }
        let Some(path) = self.path_of(digest) else {
            return Ok(None);
        };
        let verifier = Arc::new(Verifier::open(&path, digest, self.threads)?);
        lock(&self.loaded).insert(digest.to_owned(), verifier.clone());
        Ok(Some(verifier))
    }

    /// The file in the folder whose sha256 is `digest` (hex), if any.
    /// Blocking: hashes the files not seen before.
    pub fn path_of(&self, digest: &str) -> Option<PathBuf> {
        if let Some(path) = lock(&self.paths).get(digest) {
            return Some(path.clone());
        }
        self.rescan();
        lock(&self.paths).get(digest).cloned()
    }

    fn rescan(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let seen: HashSet<PathBuf> = lock(&self.paths).values().cloned().collect();
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_some_and(|e| e == "gguf")
                && !seen.contains(&path)
                && let Ok(digest) = model_digest(&path)
            {
                lock(&self.paths).insert(digest, path);
            }
        }
    }

    /// Checks `evidence` with the registered weights (blocking).
    pub fn judge(&self, evidence: &Evidence) -> Judgement {
        let digest = hex::encode(evidence.receipt.receipt.model_digest);
        match self.verifier(&digest) {
            Ok(Some(verifier)) => judge(verifier.verify_evidence(evidence)),
            Ok(None) => Judgement::Abstain(format!(
                "no GGUF in {} has sha256 {digest}, the registered modelDigest",
                self.dir.display()
            )),
            Err(e) => Judgement::Abstain(format!("the registered model won't load: {e}")),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_providers_unreadable_parts_are_guilty_the_users_are_not() {
        let response = VerifyError::Exchange {
            part: "response",
            why: "not JSON".into(),
        };
        assert!(matches!(
            judge(Err(response)),
            Judgement::Vote { guilty: true, .. }
        ));
        let request = VerifyError::Exchange {
            part: "request",
            why: "tools".into(),
        };
        assert!(matches!(judge(Err(request)), Judgement::Abstain(_)));
        let token = VerifyError::Token {
            token: 1 << 20,
            vocab: 49152,
            place: "proof",
        };
        assert!(matches!(
            judge(Err(token)),
            Judgement::Vote { guilty: true, .. }
        ));
    }

    #[test]
    fn a_folder_without_the_model_abstains() {
        let dir = std::env::temp_dir().join(format!("zg-shelf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shelf = Shelf::new(&dir, 1);
        assert!(shelf.verifier(&"ab".repeat(32)).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
