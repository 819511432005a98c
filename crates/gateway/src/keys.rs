//! Local API keys, so several applications share one wallet, each with its
//! own spend limit. Kept in the book's SQLite file (only a hash of each key).
//! A request holds its worst case against the key before it is sent, and
//! the hold closes at the receipt's fee after, so concurrent requests can't
//! overspend.
//! Until the first key is made the gateway is open (it listens on
//! loopback); from then on every request needs an active key, so revoking
//! every key closes /v1 instead of opening it.
//! Each answer's verdict is noted with the key that asked and the broker's
//! request id, so the web page can show spending per key and find the
//! receipt of a request it just streamed.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};
use zg_client::{Book, ClientError, book::u256};
use zg_core::{U256, keccak256, now_unix};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS gateway_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    spend_limit TEXT,
    spent TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_answers (
    id INTEGER PRIMARY KEY,
    request_id TEXT,
    receipt INTEGER,
    key_id TEXT,
    verdict TEXT NOT NULL,
    fee TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_answers_request ON gateway_answers (request_id);
CREATE INDEX IF NOT EXISTS gateway_answers_receipt ON gateway_answers (receipt);";

/// Keys are re-read this often, so `keys add|revoke` reach a running gateway.
const RELOAD: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub name: String,
    /// None: no limit.
    pub spend_limit: Option<U256>,
    pub spent: U256,
    pub revoked: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
struct Live {
    info: KeyInfo,
    reserved: U256,
}

/// Why a key may not spend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyRefusal {
    #[error(
        "this gateway needs a local API key (Authorization: Bearer zgk-...): make one with `zg-serving gateway keys add <name>`"
    )]
    Missing,
    #[error("unknown or revoked API key: list keys with `zg-serving gateway keys list`")]
    Unknown,
    #[error(
        "API key {id} has spent {spent} of its {limit} 0G limit and this request may cost up to {needed} 0G: raise it with `zg-serving gateway keys add` (a new key) or send a smaller max_tokens"
    )]
    Limit {
        id: String,
        spent: String,
        limit: String,
        needed: String,
    },
}

/// One delivered answer as the gateway noted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answered {
    /// The broker's id of the request (`X-ZG-Request-Id`), if it sent one.
    pub request_id: Option<String>,
    /// The receipt's row in the book, when it was paid.
    pub receipt: Option<i64>,
    /// The API key that asked (None: the gateway was open).
    pub key_id: Option<String>,
    /// "paid", or why the receipt was not paid.
    pub verdict: String,
    pub fee: U256,
}

/// A reservation against a key, closed with [`Keys::close`].
#[derive(Debug)]
pub(crate) struct Hold {
    pub key_id: Option<String>,
    pub amount: U256,
}

pub struct Keys {
    book: Book,
    state: Mutex<State>,
}

struct State {
    by_hash: HashMap<String, Live>,
    loaded: Option<Instant>,
}

fn hash(key: &str) -> String {
    keccak256(key.trim().as_bytes()).to_string()
}

impl Keys {
    pub async fn open(book: Book) -> Result<Self, ClientError> {
        book.call(|db| Ok(db.execute_batch(SCHEMA)?)).await?;
        Ok(Self {
            book,
            state: Mutex::new(State {
                by_hash: HashMap::new(),
                loaded: None,
            }),
        })
    }

    /// Makes a key; the secret is shown once and only its hash is kept.
    pub async fn add(
        &self,
        name: &str,
        spend_limit: Option<U256>,
    ) -> Result<(KeyInfo, String), ClientError> {
        let secret = format!("zgk-{}", hex::encode(rand::random::<[u8; 24]>()));
        let id = secret[4..12].to_owned();
        let values = (
            id.clone(),
            name.to_owned(),
            hash(&secret),
            spend_limit.map(|l| l.to_string()),
        );
        self.book
            .call(move |db| {
                db.execute(
                    "INSERT INTO gateway_keys (id, name, hash, spend_limit, spent, created_at) VALUES (?1, ?2, ?3, ?4, '0', ?5)",
                    params![values.0, values.1, values.2, values.3, now_unix() as i64],
                )?;
                Ok(())
            })
            .await?;
        self.state().loaded = None;
        let info = KeyInfo {
            id,
            name: name.to_owned(),
            spend_limit,
            spent: U256::ZERO,
            revoked: false,
            created_at: now_unix() as i64,
        };
        Ok((info, secret))
    }

    pub async fn list(&self) -> Result<Vec<KeyInfo>, ClientError> {
        Ok(self.read().await?.into_iter().map(|(_, k)| k).collect())
    }

    /// Revokes by id or name; false when none matched.
    pub async fn revoke(&self, id_or_name: &str) -> Result<bool, ClientError> {
        let which = id_or_name.to_owned();
        let done = self
            .book
            .call(move |db| {
                Ok(db.execute(
                    "UPDATE gateway_keys SET revoked = 1 WHERE id = ?1 OR name = ?1",
                    [which],
                )?)
            })
            .await?;
        self.state().loaded = None;
        Ok(done > 0)
    }

    async fn read(&self) -> Result<Vec<(String, KeyInfo)>, ClientError> {
        self.book
            .call(|db| {
                let mut stmt = db.prepare_cached(
                    "SELECT id, name, hash, spend_limit, spent, revoked, created_at FROM gateway_keys ORDER BY created_at, id",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                })?;
                rows.map(|row| {
                    let (id, name, hash, limit, spent, revoked, created_at) = row?;
                    Ok((
                        hash,
                        KeyInfo {
                            id,
                            name,
                            spend_limit: limit.as_deref().map(u256).transpose()?,
                            spent: u256(&spent)?,
                            revoked: revoked != 0,
                            created_at,
                        },
                    ))
                })
                .collect()
            })
            .await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn refresh(&self) -> Result<(), ClientError> {
        if self.state().loaded.is_some_and(|t| t.elapsed() < RELOAD) {
            return Ok(());
        }
        let rows = self.read().await?;
        let mut state = self.state();
        let mut fresh = HashMap::new();
        for (h, info) in rows {
            // What this process spent or holds is newer than the file.
            let (reserved, spent) = state
                .by_hash
                .get(&h)
                .map(|l| (l.reserved, l.info.spent.max(info.spent)))
                .unwrap_or((U256::ZERO, info.spent));
            fresh.insert(
                h,
                Live {
                    info: KeyInfo { spent, ..info },
                    reserved,
                },
            );
        }
        state.by_hash = fresh;
        state.loaded = Some(Instant::now());
        Ok(())
    }

    /// Checks the bearer key and reserves `worst_case` against its limit.
    pub(crate) async fn hold(
        &self,
        bearer: Option<&str>,
        worst_case: U256,
    ) -> Result<Result<Hold, KeyRefusal>, ClientError> {
        self.refresh().await?;
        let mut state = self.state();
        if state.by_hash.is_empty() {
            return Ok(Ok(Hold {
                key_id: None,
                amount: U256::ZERO,
            }));
        }
        let Some(bearer) = bearer else {
            return Ok(Err(KeyRefusal::Missing));
        };
        let Some(live) = state
            .by_hash
            .get_mut(&hash(bearer))
            .filter(|l| !l.info.revoked)
        else {
            return Ok(Err(KeyRefusal::Unknown));
        };
        if let Some(limit) = live.info.spend_limit {
            let after = live
                .info
                .spent
                .saturating_add(live.reserved)
                .saturating_add(worst_case);
            if after > limit {
                return Ok(Err(KeyRefusal::Limit {
                    id: live.info.id.clone(),
                    spent: zg_core::format_amount(live.info.spent.saturating_add(live.reserved)),
                    limit: zg_core::format_amount(limit),
                    needed: zg_core::format_amount(worst_case),
                }));
            }
        }
        live.reserved = live.reserved.saturating_add(worst_case);
        Ok(Ok(Hold {
            key_id: Some(live.info.id.clone()),
            amount: worst_case,
        }))
    }

    /// Releases a hold and charges what the request really cost.
    pub(crate) async fn close(&self, hold: Hold, fee: U256) -> Result<(), ClientError> {
        let Some(id) = hold.key_id else { return Ok(()) };
        self.charge(id, hold.amount, |spent| spent.saturating_add(fee))
            .await
    }

    /// Gives key `id` back `amount` it was charged for work that cost less
    /// (a fine-tuning job is charged its maxFee when it starts).
    pub(crate) async fn credit(&self, id: String, amount: U256) -> Result<(), ClientError> {
        self.charge(id, U256::ZERO, |spent| spent.saturating_sub(amount))
            .await
    }

    /// Releases `release` of key `id`'s reservations and changes what it
    /// spent, in memory and in the book.
    async fn charge(
        &self,
        id: String,
        release: U256,
        change: impl FnOnce(U256) -> U256,
    ) -> Result<(), ClientError> {
        let spent = {
            let mut state = self.state();
            let Some(live) = state.by_hash.values_mut().find(|l| l.info.id == id) else {
                return Ok(());
            };
            live.reserved = live.reserved.saturating_sub(release);
            let before = live.info.spent;
            live.info.spent = change(before);
            if live.info.spent == before {
                return Ok(());
            }
            live.info.spent
        };
        self.book
            .call(move |db| {
                db.prepare_cached("UPDATE gateway_keys SET spent = ?1 WHERE id = ?2")?
                    .execute([spent.to_string(), id])?;
                Ok(())
            })
            .await
    }

    /// Room left under the key's limit, for capping `max_tokens`.
    pub(crate) async fn remaining(
        &self,
        bearer: Option<&str>,
    ) -> Result<Option<U256>, ClientError> {
        self.refresh().await?;
        let state = self.state();
        let Some(live) = bearer.and_then(|b| state.by_hash.get(&hash(b))) else {
            return Ok(None);
        };
        Ok(live
            .info
            .spend_limit
            .map(|l| l.saturating_sub(live.info.spent.saturating_add(live.reserved))))
    }

    /// Notes a delivered answer: which key asked, and its receipt's verdict.
    pub(crate) async fn note(&self, answer: Answered) -> Result<(), ClientError> {
        self.book
            .call(move |db| {
                db.prepare_cached(
                    "INSERT INTO gateway_answers (request_id, receipt, key_id, verdict, fee, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    answer.request_id,
                    answer.receipt,
                    answer.key_id,
                    answer.verdict,
                    answer.fee.to_string(),
                    now_unix() as i64
                ])?;
                Ok(())
            })
            .await
    }

    /// The key that asked for each paid receipt (by the receipt's row).
    pub(crate) async fn receipt_keys(&self) -> Result<HashMap<i64, String>, ClientError> {
        self.book
            .call(|db| {
                let mut stmt = db.prepare_cached(
                    "SELECT receipt, key_id FROM gateway_answers WHERE receipt IS NOT NULL AND key_id IS NOT NULL",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    /// The answer to the broker's request `request_id`, if it was noted.
    pub(crate) async fn answered(&self, request_id: &str) -> Result<Option<Answered>, ClientError> {
        let request_id = request_id.to_owned();
        self.book
            .call(move |db| {
                let row = db
                    .prepare_cached(
                        "SELECT request_id, receipt, key_id, verdict, fee FROM gateway_answers WHERE request_id = ?1 ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row([request_id], |r| {
                        Ok((
                            r.get::<_, Option<String>>(0)?,
                            r.get::<_, Option<i64>>(1)?,
                            r.get::<_, Option<String>>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    })
                    .optional()?;
                row.map(|(request_id, receipt, key_id, verdict, fee)| {
                    Ok(Answered {
                        request_id,
                        receipt,
                        key_id,
                        verdict,
                        fee: u256(&fee)?,
                    })
                })
                .transpose()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zg_core::Address;

    #[tokio::test]
    async fn holds_never_overspend_and_revoked_keys_stop() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(&dir.path().join("k.sqlite"), Address::ZERO)
            .await
            .unwrap();
        let keys = Keys::open(book).await.unwrap();
        assert!(
            keys.hold(None, U256::from(5u64)).await.unwrap().is_ok(),
            "open without keys"
        );
        let (info, secret) = keys.add("app", Some(U256::from(100u64))).await.unwrap();
        assert_eq!(
            keys.hold(None, U256::ZERO).await.unwrap().unwrap_err(),
            KeyRefusal::Missing
        );
        let a = keys
            .hold(Some(&secret), U256::from(60u64))
            .await
            .unwrap()
            .unwrap();
        let refused = keys.hold(Some(&secret), U256::from(60u64)).await.unwrap();
        assert!(
            matches!(refused, Err(KeyRefusal::Limit { .. })),
            "two holds of 60 exceed 100"
        );
        keys.close(a, U256::from(30u64)).await.unwrap();
        let b = keys
            .hold(Some(&secret), U256::from(60u64))
            .await
            .unwrap()
            .unwrap();
        keys.close(b, U256::from(60u64)).await.unwrap();
        assert_eq!(keys.list().await.unwrap()[0].spent, U256::from(90u64));
        let (_, other) = keys.add("other", None).await.unwrap();
        assert!(keys.revoke(&info.id).await.unwrap());
        assert_eq!(
            keys.hold(Some(&secret), U256::ZERO)
                .await
                .unwrap()
                .unwrap_err(),
            KeyRefusal::Unknown
        );
        assert!(
            keys.hold(Some(&other), U256::from(10u64).pow(U256::from(30u64)))
                .await
                .unwrap()
                .is_ok(),
            "no limit"
        );
        // Every key revoked: closed, not open again.
        assert!(keys.revoke("other").await.unwrap());
        assert_eq!(
            keys.hold(None, U256::ZERO).await.unwrap().unwrap_err(),
            KeyRefusal::Missing
        );
    }
}
