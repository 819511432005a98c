//! The SQLite store, for one broker process: one file owned by zg-sqlite's
//! writer thread, which commits concurrent requests' steps (admit, charge,
//! release, ack) in groups. A step is on disk before its request goes
//! upstream or its receipt goes out; a killed process loses none.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use zg_core::{Address, U256};
use zg_sqlite::Writer;

use super::{
    Account, AccountRow, Ack, Charge, Issued, RequestRecord, RequestState, Store, StoreError,
    hex_addr, hex_b256, now_unix, parse_addr, parse_receipt, parse_u256,
};
use crate::admission::{self, Admission, Refusal};

/// The schema, one entry per version (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_partial_indexes.sql"),
];

const SELECT_ACCOUNT: &str = "SELECT user_addr, owed, reserved, settled, cumulative, request_digest, signature FROM accounts";

pub struct SqliteStore {
    db: Writer,
    provider: Address,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url`
    /// (`sqlite://path` or `sqlite::memory:`).
    pub async fn open(url: &str, provider: Address) -> Result<Self, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        // sqlx-style options (`?mode=rwc`) mean nothing here: the file is always created.
        let path = path.split('?').next().unwrap_or(path).to_owned();
        let db = tokio::task::spawn_blocking(move || Writer::open(Path::new(&path), MIGRATIONS))
            .await
            .map_err(|e| StoreError::Open(e.to_string()))?
            .map_err(|e| StoreError::Open(e.to_string()))?;
        Ok(Self { db, provider })
    }

    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.db.call(work).await
    }
}

// ---- the steps, run on the writer thread ---------------------------------

fn read_account(
    db: &Connection,
    user: Address,
    provider: Address,
) -> Result<Option<Account>, StoreError> {
    let mut stmt = db.prepare_cached(&format!("{SELECT_ACCOUNT} WHERE user_addr = ?1"))?;
    let row = stmt.query_row([hex_addr(user)], account_row).optional()?;
    row.map(|r| r.decode(provider)).transpose()
}

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        user: r.get(0)?,
        owed: r.get(1)?,
        reserved: r.get(2)?,
        settled: r.get(3)?,
        cumulative: r.get(4)?,
        request_digest: r.get(5)?,
        signature: r.get(6)?,
    })
}

/// Writes owed, reserved and the newest voucher (never `settled`).
fn write_account(db: &Connection, a: &Account) -> Result<(), StoreError> {
    let (c, d, s) = match &a.voucher {
        Some((v, s)) => (
            Some(v.cumulative.to_string()),
            Some(hex_b256(v.request_digest)),
            Some(s.to_string()),
        ),
        None => (None, None, None),
    };
    db.prepare_cached(
        "INSERT INTO accounts (user_addr, owed, reserved, settled, cumulative, request_digest, signature, updated_at) \
         VALUES (?1, ?2, ?3, '0', ?4, ?5, ?6, ?7) \
         ON CONFLICT (user_addr) DO UPDATE SET owed = excluded.owed, reserved = excluded.reserved, \
         cumulative = excluded.cumulative, request_digest = excluded.request_digest, \
         signature = excluded.signature, updated_at = excluded.updated_at",
    )?
    .execute(params![
        hex_addr(a.user),
        a.owed.to_string(),
        a.reserved.to_string(),
        c,
        d,
        s,
        now_unix()
    ])?;
    Ok(())
}

fn seen(db: &Connection, user: Address, digest: zg_core::B256) -> Result<bool, StoreError> {
    let found = db
        .prepare_cached("SELECT 1 FROM requests WHERE user_addr = ?1 AND request_digest = ?2")?
        .query_row([hex_addr(user), hex_b256(digest)], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Stores an accepted voucher as a request row.
#[allow(clippy::too_many_arguments)]
fn insert_request(
    db: &Connection,
    id: &str,
    voucher: &zg_core::Voucher,
    signature: &zg_core::Signature,
    service: &str,
    worst: U256,
    state: RequestState,
    replica: &str,
) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT INTO requests (id, user_addr, request_digest, service, cumulative, signature, worst, state, replica, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        hex_addr(voucher.user),
        hex_b256(voucher.request_digest),
        service,
        voucher.cumulative.to_string(),
        signature.to_string(),
        worst.to_string(),
        state.as_str(),
        replica,
        now_unix()
    ])?;
    Ok(())
}

fn admit(
    db: &Connection,
    a: &Admission,
    provider: Address,
) -> Result<Result<(), Refusal>, StoreError> {
    let user = a.voucher.user;
    if seen(db, user, a.voucher.request_digest)? {
        return Ok(Err(Refusal::Replayed));
    }
    let account = read_account(db, user, provider)?.unwrap_or_else(|| Account::new(user));
    let next = match admission::decide(&account, a) {
        Ok(next) => next,
        Err(refusal) => return Ok(Err(refusal)),
    };
    insert_request(
        db,
        &a.id,
        &a.voucher,
        &a.signature,
        &a.service,
        a.worst,
        RequestState::Admitted,
        &a.replica,
    )?;
    write_account(db, &next)?;
    Ok(Ok(()))
}

/// Moves an admitted request to `charged` (with its receipt) or `failed`.
fn close_request(
    db: &Connection,
    id: &str,
    mut account: Account,
    worst: U256,
    fee: U256,
    receipt: Option<(&str, zg_core::B256)>,
) -> Result<(), StoreError> {
    let (state, text, hash) = match receipt {
        Some((text, hash)) => (RequestState::Charged, Some(text), Some(hex_b256(hash))),
        None => (RequestState::Failed, None, None),
    };
    let updated = db
        .prepare_cached(
            "UPDATE requests SET state = ?2, fee = ?3, receipt = ?4, receipt_hash = ?5 \
             WHERE id = ?1 AND state = 'admitted'",
        )?
        .execute(params![id, state.as_str(), fee.to_string(), text, hash])?;
    if updated == 0 {
        return Err(StoreError::NotAdmitted(id.to_string()));
    }
    account.owed = account.owed.saturating_add(fee);
    account.reserved = account.reserved.saturating_sub(worst);
    write_account(db, &account)
}

fn charge(db: &Connection, c: Charge, provider: Address) -> Result<Issued, StoreError> {
    let account = read_account(db, c.user, provider)?.unwrap_or_else(|| Account::new(c.user));
    let issued = (c.sign)(account.owed.saturating_add(c.fee));
    close_request(
        db,
        &c.id,
        account,
        c.worst,
        c.fee,
        Some((&issued.json, issued.hash)),
    )?;
    Ok(issued)
}

fn ack(db: &Connection, ack: &Ack, provider: Address) -> Result<Result<(), Refusal>, StoreError> {
    let v = &ack.voucher;
    let known = db
        .prepare_cached("SELECT 1 FROM requests WHERE user_addr = ?1 AND receipt_hash = ?2")?
        .query_row([hex_addr(v.user), hex_b256(v.request_digest)], |_| Ok(()))
        .optional()?;
    if known.is_none() {
        return Ok(Err(Refusal::UnknownReceipt));
    }
    if seen(db, v.user, v.request_digest)? {
        return Ok(Err(Refusal::Replayed));
    }
    let account = read_account(db, v.user, provider)?.unwrap_or_else(|| Account::new(v.user));
    let next = match admission::decide_ack(&account, v, ack.signature) {
        Ok(next) => next,
        Err(refusal) => return Ok(Err(refusal)),
    };
    insert_request(
        db,
        &super::new_id(),
        v,
        &ack.signature,
        "",
        U256::ZERO,
        RequestState::Ack,
        "",
    )?;
    write_account(db, &next)?;
    Ok(Ok(()))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn admit(&self, a: &Admission) -> Result<Result<(), Refusal>, StoreError> {
        let (a, provider) = (a.clone(), self.provider);
        self.call(move |db| admit(db, &a, provider)).await
    }

    async fn charge(&self, c: Charge) -> Result<Issued, StoreError> {
        let provider = self.provider;
        self.call(move |db| charge(db, c, provider)).await
    }

    async fn release(&self, id: &str, user: Address, worst: U256) -> Result<(), StoreError> {
        let (id, provider) = (id.to_owned(), self.provider);
        self.call(move |db| {
            let account = read_account(db, user, provider)?.unwrap_or_else(|| Account::new(user));
            close_request(db, &id, account, worst, U256::ZERO, None)
        })
        .await
    }

    async fn ack(&self, a: &Ack) -> Result<Result<(), Refusal>, StoreError> {
        let (a, provider) = (a.clone(), self.provider);
        self.call(move |db| ack(db, &a, provider)).await
    }

    async fn request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        let id = id.to_owned();
        self.call(move |db| {
            let row: Option<(String, String, String, Option<String>)> = db
                .prepare_cached("SELECT id, user_addr, state, receipt FROM requests WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            row.map(|(id, user, state, receipt)| {
                Ok(RequestRecord {
                    id,
                    user: parse_addr(&user)?,
                    state: RequestState::parse(&state)?,
                    receipt: receipt.as_deref().map(parse_receipt).transpose()?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn account(&self, user: Address) -> Result<Option<Account>, StoreError> {
        let provider = self.provider;
        self.call(move |db| read_account(db, user, provider)).await
    }

    async fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let provider = self.provider;
        self.call(move |db| {
            let mut stmt = db.prepare_cached(&format!("{SELECT_ACCOUNT} ORDER BY user_addr"))?;
            let rows = stmt.query_map([], account_row)?;
            rows.map(|r| r?.decode(provider)).collect()
        })
        .await
    }

    async fn record_settled(&self, user: Address, settled: U256) -> Result<(), StoreError> {
        let provider = self.provider;
        self.call(move |db| {
            let account = read_account(db, user, provider)?;
            if account.is_none_or(|a| settled > a.settled) {
                db.prepare_cached(
                    "INSERT INTO accounts (user_addr, owed, reserved, settled, updated_at) \
                     VALUES (?1, '0', '0', ?2, ?3) \
                     ON CONFLICT (user_addr) DO UPDATE SET settled = excluded.settled",
                )?
                .execute(params![
                    hex_addr(user),
                    settled.to_string(),
                    now_unix()
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn release_abandoned(&self, replica: &str) -> Result<u64, StoreError> {
        let (replica, provider) = (replica.to_owned(), self.provider);
        self.call(move |db| {
            let rows: Vec<(String, String, String)> = db
                .prepare_cached(
                    "SELECT id, user_addr, worst FROM requests WHERE state = 'admitted' AND replica = ?1",
                )?
                .query_map([replica], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            for (id, user, worst) in &rows {
                let user = parse_addr(user)?;
                let account =
                    read_account(db, user, provider)?.unwrap_or_else(|| Account::new(user));
                let worst = parse_u256("worst", worst)?;
                close_request(db, id, account, worst, U256::ZERO, None)?;
            }
            Ok(rows.len() as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn releasing_an_unknown_request_changes_nothing() {
        let store = SqliteStore::open("sqlite::memory:", Address::repeat_byte(9))
            .await
            .unwrap();
        let user = Address::repeat_byte(1);
        let (bad, good) = tokio::join!(
            store.release("nope", user, U256::from(1u64)),
            store.record_settled(user, U256::from(7u64)),
        );
        assert!(matches!(bad, Err(StoreError::NotAdmitted(_))));
        good.unwrap();
        let account = store.account(user).await.unwrap().unwrap();
        assert_eq!(account.settled, U256::from(7u64));
        assert_eq!(account.reserved, U256::ZERO);
    }
}
