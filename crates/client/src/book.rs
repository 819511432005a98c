//! The voucher book: per (user, provider) what the user has authorized and
//! what it owes by its own tally, and every receipt (paid or refused, as
//! evidence), in a local SQLite file. One async lock per provider makes the
//! sign -> send -> check sequence of one provider's requests strictly ordered,
//! so two requests can never sign conflicting vouchers.

use crate::ClientError;
use serde::Serialize;
use sqlx::{
    Row, SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::OwnedMutexGuard;
use zg_core::{Address, U256, headers::SignedReceipt};

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

/// The local book of one user.
#[derive(Debug, Clone)]
pub struct Book {
    pool: SqlitePool,
    path: PathBuf,
    user: Address,
    slots: Arc<Mutex<HashMap<Address, Slot>>>,
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ClientError::book(path, sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A lost last write after a power cut is recoverable from the
            // broker's statement; an fsync per request is not affordable.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| ClientError::book(path, e))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|e| ClientError::book(path, e))?;
        Ok(Self {
            pool,
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

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn err(&self, e: sqlx::Error) -> ClientError {
        ClientError::book(&self.path, e)
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
        let row =
            sqlx::query("SELECT authorized, owed FROM accounts WHERE user = ? AND provider = ?")
                .bind(self.user.to_string())
                .bind(provider.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        let Some(row) = row else {
            return Ok(Account {
                provider,
                ..Account::default()
            });
        };
        Ok(Account {
            provider,
            authorized: self.u256(row.get("authorized"))?,
            owed: self.u256(row.get("owed"))?,
        })
    }

    /// Every account of this user in the book.
    pub async fn accounts(&self) -> Result<Vec<Account>, ClientError> {
        let rows = sqlx::query(
            "SELECT provider, authorized, owed FROM accounts WHERE user = ? ORDER BY provider",
        )
        .bind(self.user.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| {
                Ok(Account {
                    provider: self.address(row.get("provider"))?,
                    authorized: self.u256(row.get("authorized"))?,
                    owed: self.u256(row.get("owed"))?,
                })
            })
            .collect()
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
        sqlx::query(
            "INSERT INTO accounts (user, provider, authorized, owed, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (user, provider) DO UPDATE SET authorized = excluded.authorized,
             owed = excluded.owed, updated_at = excluded.updated_at",
        )
        .bind(self.user.to_string())
        .bind(account.provider.to_string())
        .bind(account.authorized.to_string())
        .bind(account.owed.to_string())
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
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
            Verdict::Rejected(fault) => ("rejected", Some(fault)),
        };
        let json = serde_json::to_string(signed).unwrap_or_default();
        let id = sqlx::query(
            "INSERT INTO receipts (user, provider, service, model, fee, owed, input_tokens,
             output_tokens, status, fault, signed, authorized, tally, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(self.user.to_string())
        .bind(account.provider.to_string())
        .bind(service)
        .bind(model)
        .bind(r.fee.to_string())
        .bind(r.owed.to_string())
        .bind(r.input_tokens.to_string())
        .bind(r.output_tokens.to_string())
        .bind(status)
        .bind(fault)
        .bind(json)
        .bind(account.authorized.to_string())
        .bind(account.owed.to_string())
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?
        .last_insert_rowid();
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
        let rows = sqlx::query(
            "SELECT id, provider, service, model, fee, owed, input_tokens, output_tokens, status, fault,
             signed, created_at FROM receipts WHERE user = ? AND (? IS NULL OR provider = ?)
             AND (? = 0 OR status = 'rejected') ORDER BY id DESC LIMIT ?",
        )
        .bind(self.user.to_string())
        .bind(provider.map(|p| p.to_string()))
        .bind(provider.map(|p| p.to_string()))
        .bind(rejected_only)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| {
                let signed: String = row.get("signed");
                Ok(ReceiptRecord {
                    id: row.get("id"),
                    provider: self.address(row.get("provider"))?,
                    service: row.get("service"),
                    model: row.get("model"),
                    fee: self.u256(row.get("fee"))?,
                    owed: self.u256(row.get("owed"))?,
                    input_tokens: self.u256(row.get("input_tokens"))?,
                    output_tokens: self.u256(row.get("output_tokens"))?,
                    status: row.get("status"),
                    fault: row.get("fault"),
                    signed: serde_json::from_str(&signed)
                        .map_err(|e| self.err(sqlx::Error::Decode(Box::new(e))))?,
                    created_at: row.get("created_at"),
                })
            })
            .collect()
    }

    fn u256(&self, text: String) -> Result<U256, ClientError> {
        U256::from_str(&text).map_err(|e| self.err(sqlx::Error::Decode(Box::new(e))))
    }

    fn address(&self, text: String) -> Result<Address, ClientError> {
        Address::from_str(&text).map_err(|e| self.err(sqlx::Error::Decode(Box::new(e))))
    }
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
