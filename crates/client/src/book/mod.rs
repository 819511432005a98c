//! The voucher book: per (user, provider) what the user has authorized and
//! what it owes by its own tally, and every receipt (paid or refused, as
//! evidence; for proof services with the request, response and proof that
//! `zg-serving verify` checks, and the gateway's audit of it), in a local
//! SQLite file (zg-sqlite, so the gateway's concurrent requests share
//! commits).
//!
//! Concurrent requests to one provider never sign conflicting vouchers:
//! see [`epoch`].

use crate::ClientError;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
};
use zg_core::{Address, Evidence, U256, headers::SignedReceipt};
use zg_sqlite::Writer;

pub mod epoch;
use epoch::Slot;
pub use epoch::{EPOCH_MAX, OwedBefore, Ticket};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    user TEXT NOT NULL,
    provider TEXT NOT NULL,
    authorized TEXT NOT NULL,
    owed TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user, provider)
);
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    provider TEXT NOT NULL,
    service TEXT NOT NULL,
    model TEXT NOT NULL,
    fee TEXT NOT NULL,
    owed TEXT NOT NULL,
    input_tokens TEXT NOT NULL,
    output_tokens TEXT NOT NULL,
    status TEXT NOT NULL,
    fault TEXT,
    signed TEXT NOT NULL,
    -- The account after this receipt: the trigger below keeps `accounts` in
    -- step in the same statement, one write per request.
    authorized TEXT NOT NULL,
    tally TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_by_provider ON receipts (user, provider, id);
CREATE TRIGGER IF NOT EXISTS paid_receipt_updates_account AFTER INSERT ON receipts
WHEN NEW.status = 'paid' BEGIN
    INSERT INTO accounts (user, provider, authorized, owed, updated_at)
    VALUES (NEW.user, NEW.provider, NEW.authorized, NEW.tally, NEW.created_at)
    ON CONFLICT (user, provider) DO UPDATE SET authorized = excluded.authorized,
        owed = excluded.owed, updated_at = excluded.updated_at;
END;
";

/// Version 2: the evidence of answers of proof services, by receipt row:
/// an [`Evidence`] as JSON (receipt, nonce, request, response, proof).
const EVIDENCE: &str = "
CREATE TABLE evidence (
    receipt INTEGER PRIMARY KEY,
    json TEXT NOT NULL
);
";

/// Version 3: the gateway's audits of kept evidence, by receipt row: the
/// verdict of re-running the proof, and the dispute it opened on a failure.
const AUDITS: &str = "
CREATE TABLE audits (
    receipt INTEGER PRIMARY KEY,
    result TEXT NOT NULL, -- pass | fail
    detail TEXT NOT NULL,
    dispute INTEGER, -- the contract's dispute id
    created_at INTEGER NOT NULL
);
";

/// One provider's tab in the book: what the user signed for and what it
/// owes by its own tally (the provider keeps the same tab on its side).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tab {
    pub provider: Address,
    /// The highest `cumulative` signed to this provider.
    pub authorized: U256,
    /// Sum of the fees of every receipt that passed its checks.
    pub owed: U256,
}

impl Tab {
    /// An empty page for `provider`.
    pub fn of(provider: Address) -> Self {
        Self {
            provider,
            ..Self::default()
        }
    }
}

/// A receipt as the book keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptRecord {
    pub id: i64,
    pub provider: Address,
    pub service: String,
    pub model: String,
    pub fee: U256,
    pub owed: U256,
    pub input_tokens: U256,
    pub output_tokens: U256,
    /// "paid" or "rejected".
    pub status: String,
    /// Why a rejected receipt was refused.
    pub fault: Option<String>,
    pub signed: SignedReceipt,
    pub created_at: i64,
    /// The gateway's audit of the answer, if it ran one.
    pub audit: Option<AuditRecord>,
}

/// The verdict of re-running an answer's proof with the registered weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub pass: bool,
    /// What the check found (distances, or what did not match).
    pub detail: String,
    /// The contract's dispute opened over a failed audit.
    pub dispute: Option<u64>,
}

/// How a receipt ended up in the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    Paid,
    Rejected(&'a str),
}

/// What went wrong in the book's file.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Stopped(#[from] zg_sqlite::Stopped),
    #[error(transparent)]
    Open(#[from] zg_sqlite::OpenError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it holds a malformed {what}: {value:?}")]
    Corrupt { what: &'static str, value: String },
}

/// The local book of one user.
#[derive(Clone)]
pub struct Book {
    db: Arc<Writer>,
    path: PathBuf,
    user: Address,
    slots: Arc<Mutex<HashMap<Address, Arc<Slot>>>>,
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book")
            .field("path", &self.path)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Book {
    /// Opens (creating if needed) the book at `path` for `user`.
    pub async fn open(path: &Path, user: Address) -> Result<Self, ClientError> {
        let file = path.to_path_buf();
        let db = tokio::task::spawn_blocking(move || -> Result<Writer, BookError> {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Ok(Writer::open(&file, &[SCHEMA, EVIDENCE, AUDITS])?)
        })
        .await
        .map_err(|e| ClientError::book(path, std::io::Error::other(e).into()))?
        .map_err(|e| ClientError::book(path, e))?;
        Ok(Self {
            db: Arc::new(db),
            path: path.to_path_buf(),
            user,
            slots: Arc::default(),
        })
    }

    pub fn user(&self) -> Address {
        self.user
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the book's file (in the next group commit); tables
    /// kept next to the book (the gateway's API keys) go through here too.
    pub async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, BookError> + Send + 'static,
    ) -> Result<T, ClientError> {
        self.db
            .call(work)
            .await
            .map_err(|e| ClientError::book(&self.path, e))
    }

    /// `provider`'s page, read from the file the first time.
    async fn slot(&self, provider: Address) -> Result<Arc<Slot>, ClientError> {
        if let Some(slot) = self.slots().get(&provider) {
            return Ok(slot.clone());
        }
        let account = self.load(provider).await?;
        // Another request may have loaded it meanwhile: theirs counts.
        Ok(self
            .slots()
            .entry(provider)
            .or_insert_with(|| Arc::new(Slot::new(account)))
            .clone())
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `provider`'s tab as the book has it now.
    pub async fn tab(&self, provider: Address) -> Result<Tab, ClientError> {
        Ok(self.slot(provider).await?.lock().tab)
    }

    /// `provider`'s tab if no request to it is in flight (the moment to
    /// acknowledge: a higher cumulative now refuses no voucher in flight).
    pub async fn quiet_tab(&self, provider: Address) -> Result<Option<Tab>, ClientError> {
        let slot = self.slot(provider).await?;
        let page = slot.lock();
        Ok(page.quiet().then_some(page.tab))
    }

    /// Starts a request to `provider` (see [`epoch`]).
    pub async fn begin(&self, provider: Address) -> Result<Ticket, ClientError> {
        Ok(self.slot(provider).await?.begin().await)
    }

    async fn load(&self, provider: Address) -> Result<Tab, ClientError> {
        let user = self.user.to_string();
        self.call(move |db| {
            let row: Option<(String, String)> = db
                .prepare_cached(
                    "SELECT authorized, owed FROM accounts WHERE user = ?1 AND provider = ?2",
                )?
                .query_row([user, provider.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((authorized, owed)) = row else {
                return Ok(Tab::of(provider));
            };
            Ok(Tab {
                provider,
                authorized: u256(&authorized)?,
                owed: u256(&owed)?,
            })
        })
        .await
    }

    /// Notes that `cumulative` was signed to `provider` (an acknowledgement)
    /// and writes the tab.
    pub async fn authorize(&self, provider: Address, cumulative: U256) -> Result<(), ClientError> {
        self.update(provider, |a| a.authorized = a.authorized.max(cumulative))
            .await
    }

    /// Overwrites `provider`'s tab (recovery).
    pub async fn restore(&self, tab: Tab) -> Result<(), ClientError> {
        self.update(tab.provider, |a| *a = tab).await
    }

    async fn update(
        &self,
        provider: Address,
        change: impl FnOnce(&mut Tab),
    ) -> Result<(), ClientError> {
        let slot = self.slot(provider).await?;
        let saved = {
            let mut p = slot.lock();
            change(&mut p.tab);
            p.reset_epoch();
            let a = p.tab;
            let values = [
                self.user.to_string(),
                a.provider.to_string(),
                a.authorized.to_string(),
                a.owed.to_string(),
            ];
            // Queued under the page's lock: the file sees the page's changes in order.
            self.db.submit(move |db: &Connection| -> Result<(), BookError> {
                db.prepare_cached(
                    "INSERT INTO accounts (user, provider, authorized, owed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user, provider) DO UPDATE SET authorized = excluded.authorized,
                     owed = excluded.owed, updated_at = excluded.updated_at",
                )?
                .execute(params![values[0], values[1], values[2], values[3], now()])?;
                Ok(())
            })
        };
        saved.await.map_err(|e| ClientError::book(&self.path, e))
    }

    /// Stores a receipt of `ticket`'s request; a paid one adds its fee to
    /// the tally, in the same statement (the trigger). Returns the receipt's
    /// row and the tally after it.
    pub async fn record(
        &self,
        ticket: &Ticket,
        signed: &SignedReceipt,
        service: &str,
        model: &str,
        verdict: Verdict<'_>,
    ) -> Result<(i64, U256), ClientError> {
        let r = &signed.receipt;
        let (status, fault) = match verdict {
            Verdict::Paid => ("paid", None),
            Verdict::Rejected(fault) => ("rejected", Some(fault.to_owned())),
        };
        let mut values = [
            self.user.to_string(),
            ticket.provider().to_string(),
            service.to_owned(),
            model.to_owned(),
            r.fee.to_string(),
            r.owed.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            status.to_owned(),
            serde_json::to_string(signed).unwrap_or_default(),
            String::new(),
            String::new(),
        ];
        let (inserted, tally) = {
            let mut p = ticket.slot.lock();
            if verdict == Verdict::Paid {
                p.paid(r.fee, r.owed);
            }
            values[10] = p.tab.authorized.to_string();
            values[11] = p.tab.owed.to_string();
            // Queued under the page's lock: rows land in tally order.
            let inserted = self
                .db
                .submit(move |db: &Connection| -> Result<i64, BookError> {
                    db.prepare_cached(
                    "INSERT INTO receipts (user, provider, service, model, fee, owed, input_tokens,
                     output_tokens, status, signed, authorized, tally, fault, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )?
                .execute(params![
                    values[0], values[1], values[2], values[3], values[4], values[5],
                    values[6], values[7], values[8], values[9], values[10], values[11],
                    fault, now()
                ])?;
                    Ok(db.last_insert_rowid())
                });
            (inserted, p.tab.owed)
        };
        let id = inserted
            .await
            .map_err(|e| ClientError::book(&self.path, e))?;
        Ok((id, tally))
    }

    /// Keeps the evidence of the answer whose receipt is row `receipt`.
    pub async fn keep_evidence(
        &self,
        receipt: i64,
        evidence: &Evidence,
    ) -> Result<(), ClientError> {
        let json = serde_json::to_string(evidence).unwrap_or_default();
        self.call(move |db| {
            db.prepare_cached("INSERT OR REPLACE INTO evidence (receipt, json) VALUES (?1, ?2)")?
                .execute(params![receipt, json])?;
            Ok(())
        })
        .await
    }

    /// The evidence kept for receipt row `receipt` of this user, if any.
    pub async fn evidence(&self, receipt: i64) -> Result<Option<Evidence>, ClientError> {
        let user = self.user.to_string();
        self.call(move |db| {
            let json: Option<String> = db
                .prepare_cached(
                    "SELECT e.json FROM evidence e JOIN receipts r ON r.id = e.receipt \
                     WHERE e.receipt = ?1 AND r.user = ?2",
                )?
                .query_row(params![receipt, user], |r| r.get(0))
                .optional()?;
            json.map(|json| {
                Evidence::from_json(json.as_bytes()).map_err(|_| BookError::Corrupt {
                    what: "evidence",
                    value: json.chars().take(200).collect(),
                })
            })
            .transpose()
        })
        .await
    }

    /// Stores the audit of receipt row `receipt` (replacing an earlier one).
    pub async fn record_audit(
        &self,
        receipt: i64,
        pass: bool,
        detail: &str,
        dispute: Option<u64>,
    ) -> Result<(), ClientError> {
        let (result, detail) = (if pass { "pass" } else { "fail" }, detail.to_owned());
        self.call(move |db| {
            db.prepare_cached(
                "INSERT OR REPLACE INTO audits (receipt, result, detail, dispute, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![receipt, result, detail, dispute, now()])?;
            Ok(())
        })
        .await
    }

    /// Notes the dispute opened over the audit of receipt row `receipt`.
    pub async fn set_audit_dispute(&self, receipt: i64, dispute: u64) -> Result<(), ClientError> {
        self.call(move |db| {
            db.prepare_cached("UPDATE audits SET dispute = ?2 WHERE receipt = ?1")?
                .execute(params![receipt, dispute])?;
            Ok(())
        })
        .await
    }

    /// Every tab of this user in the book.
    pub async fn tabs(&self) -> Result<Vec<Tab>, ClientError> {
        let user = self.user.to_string();
        self.call(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT provider, authorized, owed FROM accounts WHERE user = ?1 ORDER BY provider",
            )?;
            let rows = stmt.query_map([user], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (provider, authorized, owed) = row?;
                Ok(Tab {
                    provider: address(&provider)?,
                    authorized: u256(&authorized)?,
                    owed: u256(&owed)?,
                })
            })
            .collect()
        })
        .await
    }

    /// The newest receipts first, each with its audit; `rejected_only` for
    /// the evidence of refused ones.
    pub async fn receipts(
        &self,
        provider: Option<Address>,
        rejected_only: bool,
        limit: u32,
    ) -> Result<Vec<ReceiptRecord>, ClientError> {
        let (user, provider) = (self.user.to_string(), provider.map(|p| p.to_string()));
        self.call(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT r.id, r.provider, r.service, r.model, r.fee, r.owed, r.input_tokens, r.output_tokens,
                 r.status, r.fault, r.signed, r.created_at, a.result, a.detail, a.dispute
                 FROM receipts r LEFT JOIN audits a ON a.receipt = r.id
                 WHERE r.user = ?1 AND (?2 IS NULL OR r.provider = ?2)
                 AND (?3 = 0 OR r.status = 'rejected') ORDER BY r.id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![user, provider, rejected_only, limit], |r| {
                Ok((
                    (r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                    (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, String>(6)?, r.get::<_, String>(7)?),
                    (r.get::<_, String>(8)?, r.get::<_, Option<String>>(9)?, r.get::<_, String>(10)?, r.get::<_, i64>(11)?),
                    (r.get::<_, Option<String>>(12)?, r.get::<_, Option<String>>(13)?, r.get::<_, Option<u64>>(14)?),
                ))
            })?;
            rows.map(|row| {
                let ((id, provider, service, model), (fee, owed, input, output), (status, fault, signed, created_at), audit) = row?;
                Ok(ReceiptRecord {
                    id,
                    provider: address(&provider)?,
                    service,
                    model,
                    fee: u256(&fee)?,
                    owed: u256(&owed)?,
                    input_tokens: u256(&input)?,
                    output_tokens: u256(&output)?,
                    status,
                    fault,
                    signed: serde_json::from_str(&signed).map_err(|_| BookError::Corrupt {
                        what: "signed receipt",
                        value: signed.chars().take(200).collect(),
                    })?,
                    created_at,
                    audit: match audit {
                        (Some(result), detail, dispute) => Some(AuditRecord {
                            pass: result == "pass",
                            detail: detail.unwrap_or_default(),
                            dispute,
                        }),
                        (None, ..) => None,
                    },
                })
            })
            .collect()
        })
        .await
    }
}

/// An amount as the book writes it (decimal neuron).
pub fn u256(text: &str) -> Result<U256, BookError> {
    U256::from_str(text).map_err(|_| BookError::Corrupt {
        what: "amount",
        value: text.into(),
    })
}

fn address(text: &str) -> Result<Address, BookError> {
    Address::from_str(text).map_err(|_| BookError::Corrupt {
        what: "address",
        value: text.into(),
    })
}

pub(crate) fn now() -> i64 {
    zg_core::now_unix() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use zg_core::{B256, Receipt};

    fn signed(fee: u64, owed: u64) -> SignedReceipt {
        let key = zg_core::SigningKey::random();
        let receipt = Receipt {
            user: Address::repeat_byte(1),
            provider: Address::repeat_byte(2),
            service: B256::ZERO,
            model_digest: B256::ZERO,
            request_digest: B256::ZERO,
            response_digest: B256::ZERO,
            input_tokens: U256::from(1u64),
            output_tokens: U256::from(1u64),
            input_price: U256::ZERO,
            output_price: U256::ZERO,
            cached_tokens: U256::ZERO,
            cached_price: U256::ZERO,
            fee: U256::from(fee),
            owed: U256::from(owed),
            proof_digest: B256::ZERO,
            issued_at: 0,
        };
        SignedReceipt::new(receipt, &key.sign_hash(&B256::ZERO))
    }

    #[tokio::test]
    async fn tallies_paid_receipts_keeps_rejected_ones_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.sqlite");
        let user = Address::repeat_byte(1);
        let provider = Address::repeat_byte(2);
        let book = Book::open(&path, user).await.unwrap();
        let ticket = book.begin(provider).await.unwrap();
        book.record(&ticket, &signed(10, 10), "chat", "m", Verdict::Paid)
            .await
            .unwrap();
        book.record(
            &ticket,
            &signed(99, 109),
            "chat",
            "m",
            Verdict::Rejected("wrong_fee"),
        )
        .await
        .unwrap();
        drop(ticket);
        book.authorize(provider, U256::from(10u64)).await.unwrap();
        assert_eq!(book.tab(provider).await.unwrap().owed, U256::from(10u64));
        drop(book);

        let book = Book::open(&path, user).await.unwrap();
        let account = book.tab(provider).await.unwrap();
        assert_eq!(
            (account.authorized, account.owed),
            (U256::from(10u64), U256::from(10u64))
        );
        let rejected = book.receipts(None, true, 10).await.unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].fault.as_deref(), Some("wrong_fee"));
        assert_eq!(
            book.receipts(Some(provider), false, 10)
                .await
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn an_audit_is_kept_next_to_its_receipt_with_its_dispute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.sqlite");
        let provider = Address::repeat_byte(2);
        let book = Book::open(&path, Address::repeat_byte(1)).await.unwrap();
        let ticket = book.begin(provider).await.unwrap();
        let mut rows = Vec::new();
        for owed in [10, 20, 30] {
            let (row, _) = book
                .record(&ticket, &signed(10, owed), "chat", "m", Verdict::Paid)
                .await
                .unwrap();
            rows.push(row);
        }
        drop(ticket);
        book.record_audit(rows[0], true, "distance 0.1", None)
            .await
            .unwrap();
        book.record_audit(rows[1], false, "distance 3.2", None)
            .await
            .unwrap();
        book.set_audit_dispute(rows[1], 7).await.unwrap();
        drop(book);

        let book = Book::open(&path, Address::repeat_byte(1)).await.unwrap();
        let audits: Vec<_> = book
            .receipts(None, false, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.audit))
            .collect();
        let audit = |pass, detail: &str, dispute| {
            Some(AuditRecord {
                pass,
                detail: detail.into(),
                dispute,
            })
        };
        assert_eq!(
            audits,
            vec![
                (rows[2], None),
                (rows[1], audit(false, "distance 3.2", Some(7))),
                (rows[0], audit(true, "distance 0.1", None)),
            ]
        );
    }

    #[tokio::test]
    async fn requests_in_flight_together_share_one_cumulative() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(&dir.path().join("b.sqlite"), Address::ZERO)
            .await
            .unwrap();
        let provider = Address::repeat_byte(2);
        let first = book.begin(provider).await.unwrap();
        assert_eq!(first.owed_before(), OwedBefore::Exact(U256::ZERO));
        let second = book.begin(provider).await.unwrap();
        assert_eq!(first.owed_before(), OwedBefore::AtLeast(U256::ZERO));
        book.record(&first, &signed(10, 10), "chat", "m", Verdict::Paid)
            .await
            .unwrap();
        drop(first);
        // The epoch goes on while `second` is in flight: same cumulative.
        let third = book.begin(provider).await.unwrap();
        assert_eq!(
            (second.cumulative(), third.cumulative()),
            (U256::ZERO, U256::ZERO)
        );
        assert_eq!(book.quiet_tab(provider).await.unwrap(), None);
        drop((second, third));
        // None in flight: a new epoch at the tally.
        assert!(book.quiet_tab(provider).await.unwrap().is_some());
        let fourth = book.begin(provider).await.unwrap();
        assert_eq!(fourth.cumulative(), U256::from(10u64));
        assert_eq!(fourth.owed_before(), OwedBefore::Exact(U256::from(10u64)));

        // A full epoch makes the next request wait until it is over.
        let mut epoch = vec![fourth];
        while epoch.len() < EPOCH_MAX as usize {
            epoch.push(book.begin(provider).await.unwrap());
        }
        let waiting = tokio::time::timeout(Duration::from_millis(50), book.begin(provider)).await;
        assert!(
            waiting.is_err(),
            "a full epoch must make the next request wait"
        );
        let book2 = book.clone();
        let next = tokio::spawn(async move { book2.begin(provider).await.map(|t| t.cumulative()) });
        drop(epoch);
        assert_eq!(next.await.unwrap().unwrap(), U256::from(10u64));

        // A closed epoch takes no one new, however few it holds.
        let open = book.begin(provider).await.unwrap();
        open.close_epoch();
        let waiting = tokio::time::timeout(Duration::from_millis(50), book.begin(provider)).await;
        assert!(
            waiting.is_err(),
            "a closed epoch must make the next request wait"
        );
        drop(open);
        assert!(book.begin(provider).await.is_ok(), "the next epoch is open");
    }
}
