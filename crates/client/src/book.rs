//! The voucher book: per (user, provider) what the user has authorized and
//! what it owes by its own tally, and every receipt (paid or refused, as
//! evidence), in a local SQLite file (zg-sqlite's writer thread, so the
//! gateway's concurrent requests share commits). One async lock per provider
//! makes the sign -> send -> check sequence of one provider's requests
//! strictly ordered, so two requests can never sign conflicting vouchers.

use crate::ClientError;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
};
use tokio::sync::OwnedMutexGuard;
use zg_core::{Address, U256, headers::SignedReceipt};
use zg_sqlite::Writer;

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

/// One provider's page of the book.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Account {
    pub provider: Address,
    /// The highest `cumulative` signed to this provider.
    pub authorized: U256,
    /// Sum of the fees of every receipt that passed its checks.
    pub owed: U256,
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
}

/// How a receipt ended up in the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    Paid,
    Rejected(&'a str),
}

type Slot = Arc<tokio::sync::Mutex<Option<Account>>>;

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
    slots: Arc<Mutex<HashMap<Address, Slot>>>,
}

impl std::fmt::Debug for Book {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Book")
            .field("path", &self.path)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Exclusive access to one provider's account until dropped.
pub struct AccountGuard {
    guard: OwnedMutexGuard<Option<Account>>,
}

impl AccountGuard {
    pub fn account(&self) -> Account {
        // Loaded before the guard is handed out.
        self.guard.unwrap_or_default()
    }
    fn set(&mut self, account: Account) {
        *self.guard = Some(account);
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
            Ok(Writer::open(&file, &[SCHEMA])?)
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

    /// Runs `work` on the book's file (in the next group commit).
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, BookError> + Send + 'static,
    ) -> Result<T, ClientError> {
        self.db
            .call(work)
            .await
            .map_err(|e| ClientError::book(&self.path, e))
    }

    /// Waits for exclusive use of `provider`'s account and loads it.
    pub async fn lock(&self, provider: Address) -> Result<AccountGuard, ClientError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(provider).or_default().clone()
        };
        let mut guard = slot.lock_owned().await;
        if guard.is_none() {
            *guard = Some(self.load(provider).await?);
        }
        Ok(AccountGuard { guard })
    }

    async fn load(&self, provider: Address) -> Result<Account, ClientError> {
        let user = self.user.to_string();
        self.call(move |db| {
            let row: Option<(String, String)> = db
                .prepare_cached(
                    "SELECT authorized, owed FROM accounts WHERE user = ?1 AND provider = ?2",
                )?
                .query_row([user, provider.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((authorized, owed)) = row else {
                return Ok(Account {
                    provider,
                    ..Account::default()
                });
            };
            Ok(Account {
                provider,
                authorized: u256(&authorized)?,
                owed: u256(&owed)?,
            })
        })
        .await
    }

    /// Every account of this user in the book.
    pub async fn accounts(&self) -> Result<Vec<Account>, ClientError> {
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
                Ok(Account {
                    provider: address(&provider)?,
                    authorized: u256(&authorized)?,
                    owed: u256(&owed)?,
                })
            })
            .collect()
        })
        .await
    }

    /// Notes that `cumulative` was signed to the guarded provider. It is
    /// written with the receipt that follows (`record`), or by `persist`:
    /// a lost value is restored from the provider's statement, which holds
    /// the newest voucher.
    pub fn authorize(&self, guard: &mut AccountGuard, cumulative: U256) {
        let mut account = guard.account();
        if cumulative > account.authorized {
            account.authorized = cumulative;
            guard.set(account);
        }
    }

    /// Writes the guarded account as it is in memory.
    pub async fn persist(&self, guard: &AccountGuard) -> Result<(), ClientError> {
        self.save(&guard.account()).await
    }

    /// Overwrites the guarded account (recovery).
    pub async fn restore(
        &self,
        guard: &mut AccountGuard,
        account: Account,
    ) -> Result<(), ClientError> {
        self.save(&account).await?;
        guard.set(account);
        Ok(())
    }

    async fn save(&self, account: &Account) -> Result<(), ClientError> {
        let values = [
            self.user.to_string(),
            account.provider.to_string(),
            account.authorized.to_string(),
            account.owed.to_string(),
        ];
        self.call(move |db| {
            db.prepare_cached(
                "INSERT INTO accounts (user, provider, authorized, owed, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user, provider) DO UPDATE SET authorized = excluded.authorized,
                 owed = excluded.owed, updated_at = excluded.updated_at",
            )?
            .execute(params![values[0], values[1], values[2], values[3], now()])?;
            Ok(())
        })
        .await
    }

    /// Stores a receipt; a paid one adds its fee to the guarded account's
    /// tally, in the same statement (the trigger).
    pub async fn record(
        &self,
        guard: &mut AccountGuard,
        signed: &SignedReceipt,
        service: &str,
        model: &str,
        verdict: Verdict<'_>,
    ) -> Result<i64, ClientError> {
        let mut account = guard.account();
        let r = &signed.receipt;
        let (status, fault) = match verdict {
            Verdict::Paid => {
                account.owed = account.owed.saturating_add(r.fee);
                ("paid", None)
            }
            Verdict::Rejected(fault) => ("rejected", Some(fault.to_owned())),
        };
        let values = [
            self.user.to_string(),
            account.provider.to_string(),
            service.to_owned(),
            model.to_owned(),
            r.fee.to_string(),
            r.owed.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            status.to_owned(),
            serde_json::to_string(signed).unwrap_or_default(),
            account.authorized.to_string(),
            account.owed.to_string(),
        ];
        let id = self
            .call(move |db| {
                db.prepare_cached(
                    "INSERT INTO receipts (user, provider, service, model, fee, owed, input_tokens,
                     output_tokens, status, signed, authorized, tally, fault, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )?
                .execute(params![
                    values[0],
                    values[1],
                    values[2],
                    values[3],
                    values[4],
                    values[5],
                    values[6],
                    values[7],
                    values[8],
                    values[9],
                    values[10],
                    values[11],
                    fault,
                    now()
                ])?;
                Ok(db.last_insert_rowid())
            })
            .await?;
        guard.set(account);
        Ok(id)
    }

    /// The newest receipts first; `rejected_only` for the evidence of refused ones.
    pub async fn receipts(
        &self,
        provider: Option<Address>,
        rejected_only: bool,
        limit: u32,
    ) -> Result<Vec<ReceiptRecord>, ClientError> {
        let (user, provider) = (self.user.to_string(), provider.map(|p| p.to_string()));
        self.call(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT id, provider, service, model, fee, owed, input_tokens, output_tokens, status, fault,
                 signed, created_at FROM receipts WHERE user = ?1 AND (?2 IS NULL OR provider = ?2)
                 AND (?3 = 0 OR status = 'rejected') ORDER BY id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![user, provider, rejected_only, limit], |r| {
                Ok((
                    (r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?),
                    (r.get::<_, String>(4)?, r.get::<_, String>(5)?, r.get::<_, String>(6)?, r.get::<_, String>(7)?),
                    (r.get::<_, String>(8)?, r.get::<_, Option<String>>(9)?, r.get::<_, String>(10)?, r.get::<_, i64>(11)?),
                ))
            })?;
            rows.map(|row| {
                let ((id, provider, service, model), (fee, owed, input, output), (status, fault, signed, created_at)) = row?;
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
                })
            })
            .collect()
        })
        .await
    }
}

pub(crate) fn u256(text: &str) -> Result<U256, BookError> {
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
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
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
            fee: U256::from(fee),
            owed: U256::from(owed),
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
        let mut guard = book.lock(provider).await.unwrap();
        book.record(&mut guard, &signed(10, 10), "chat", "m", Verdict::Paid)
            .await
            .unwrap();
        book.record(
            &mut guard,
            &signed(99, 109),
            "chat",
            "m",
            Verdict::Rejected("wrong_fee"),
        )
        .await
        .unwrap();
        book.authorize(&mut guard, U256::from(10u64));
        book.persist(&guard).await.unwrap();
        assert_eq!(guard.account().owed, U256::from(10u64));
        drop(guard);
        drop(book);

        let book = Book::open(&path, user).await.unwrap();
        let account = book.lock(provider).await.unwrap().account();
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
    async fn one_provider_is_locked_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(&dir.path().join("b.sqlite"), Address::ZERO)
            .await
            .unwrap();
        let provider = Address::repeat_byte(2);
        let guard = book.lock(provider).await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(50), book.lock(provider)).await;
        assert!(
            second.is_err(),
            "a second lock on the same provider must wait"
        );
        let other = tokio::time::timeout(
            Duration::from_millis(50),
            book.lock(Address::repeat_byte(3)),
        )
        .await;
        assert!(other.is_ok(), "another provider is independent");
        drop(guard);
        assert!(book.lock(provider).await.is_ok());
    }
}
