//! The proofs of recent answers, by answer id, until the broker fetches
//! them: bounded in count and bytes, the oldest evicted first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Proofs kept at most; at about 8 bytes per token this is well under the
/// byte bound for ordinary answers.
const MAX_PROOFS: usize = 100_000;
const MAX_BYTES: usize = 64 << 20;

#[derive(Default)]
pub(crate) struct ProofStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<[u8]>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl ProofStore {
    pub(crate) fn insert(&self, id: String, proof: Vec<u8>) {
        let mut inner = self.lock();
        inner.bytes += proof.len();
        if let Some(old) = inner.by_id.insert(id.clone(), proof.into()) {
            inner.bytes -= old.len();
        } else {
            inner.order.push_back(id);
        }
        while inner.order.len() > MAX_PROOFS || inner.bytes > MAX_BYTES {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.by_id.remove(&oldest) {
                inner.bytes -= old.len();
            }
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<[u8]>> {
        self.lock().by_id.get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest_over_the_byte_bound() {
        let store = ProofStore::default();
        let half = MAX_BYTES / 2;
        store.insert("a".into(), vec![0; half]);
        store.insert("b".into(), vec![1; half]);
        assert!(store.get("a").is_some());
        store.insert("c".into(), vec![2; 10]);
        assert!(store.get("a").is_none());
        assert_eq!(store.get("b").map(|p| p.len()), Some(half));
        assert_eq!(store.get("c").map(|p| p.len()), Some(10));
    }
}
