//! The SQLite store, for one broker process: one file owned by zg-sqlite's
//! writer thread, which commits concurrent requests' steps (admit, charge,
//! release, ack) in groups. A step is on disk before its request goes
//! upstream or its receipt goes out; a killed process loses none.
//!
//! A paid request touches few B-trees, for few pages per commit (migration
//! 0003): admission adds its voucher to `requests` (ids, addresses, digests
//! and signatures as bytes) and never changes it again; the charge or the
//! release adds its row to `outcomes`. A request with no outcome is in
//! flight, or was when its broker stopped (released at the next start).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use zg_core::{Address, B256, U256};
use zg_sqlite::Writer;

use super::{
    AccountRow, Ack, Charge, Issued, RequestRecord, RequestState, SettleTurn, SettlementRecord,
    SettlementRow, Store, StoreError, Tab, WHERE_UNSETTLED, hex_addr, hex_b256, now_unix,
    only_unsettled, parse_receipt, parse_u256,
};
use crate::admission::{self, Admission, Refusal};

/// The schema, one entry per version (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_partial_indexes.sql"),
    include_str!("../../migrations/sqlite/0003_outcomes.sql"),
    include_str!("../../migrations/sqlite/0004_proofs.sql"),
    include_str!("../../migrations/sqlite/0005_settlements.sql"),
];

const SELECT_ACCOUNT: &str = "SELECT user_addr, owed, reserved, settled, cumulative, request_digest, signature FROM accounts";

pub(crate) struct SqliteStore {
    db: Writer,
    provider: Address,
    /// `FILE.settle-lock` beside the database, flock'd for a settlement
    /// turn; None in memory, where no other process can settle.
    settle_lock: Option<PathBuf>,
}

impl SqliteStore {
    async fn select_tabs(&self, filter: &'static str) -> Result<Vec<Tab>, StoreError> {
        let provider = self.provider;
        self.call(move |db| {
            let mut stmt =
                db.prepare_cached(&format!("{SELECT_ACCOUNT} {filter} ORDER BY user_addr"))?;
            let rows = stmt.query_map([], account_row)?;
            rows.map(|r| r?.decode(provider)).collect()
        })
        .await
    }

    /// Opens (creating if needed) and migrates the database at `url`
    /// (`sqlite://path` or `sqlite::memory:`).
    pub(crate) async fn open(url: &str, provider: Address) -> Result<Self, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        // sqlx-style options (`?mode=rwc`) mean nothing here: the file is always created.
        let path = path.split('?').next().unwrap_or(path).to_owned();
        let settle_lock =
            (path != ":memory:").then(|| PathBuf::from(format!("{path}.settle-lock")));
        let db = tokio::task::spawn_blocking(move || Writer::open(Path::new(&path), MIGRATIONS))
            .await
            .map_err(|e| StoreError::Open(e.to_string()))?
            .map_err(|e| StoreError::Open(e.to_string()))?;
        Ok(Self {
            db,
            provider,
            settle_lock,
        })
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
) -> Result<Option<Tab>, StoreError> {
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
fn write_account(db: &Connection, a: &Tab) -> Result<(), StoreError> {
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

fn seen(db: &Connection, user: Address, digest: B256) -> Result<bool, StoreError> {
    let found = db
        .prepare_cached("SELECT 1 FROM requests WHERE user_addr = ?1 AND request_digest = ?2")?
        .query_row(params![user.as_slice(), digest.as_slice()], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Whether this broker issued `user` a receipt whose EIP-712 hash is `hash`.
fn issued(db: &Connection, user: Address, hash: B256) -> Result<bool, StoreError> {
    let found = db
        .prepare_cached(
            "SELECT 1 FROM outcomes o JOIN requests q ON q.seq = o.request \
             WHERE o.receipt_hash = ?1 AND q.user_addr = ?2",
        )?
        .query_row(params![hash.as_slice(), user.as_slice()], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// A request id (`new_id`: 16 hex digits of time, 16 of chance) as its row:
/// `seq`, the time (unique within a broker process), and `tag`.
fn split_id(id: &str) -> Option<(i64, i64)> {
    let (time, chance) = (id.get(..16)?, id.get(16..)?);
    let seq = u64::from_str_radix(time, 16).ok()?;
    let tag = u64::from_str_radix(chance, 16).ok()?;
    (chance.len() == 16).then_some((seq as i64, tag as i64))
}

/// The row of request `id`, if there is one.
fn find_request(db: &Connection, id: &str) -> Result<Option<i64>, StoreError> {
    let Some((seq, tag)) = split_id(id) else {
        return Ok(None);
    };
    Ok(db
        .prepare_cached("SELECT seq FROM requests WHERE seq = ?1 AND tag = ?2")?
        .query_row([seq, tag], |r| r.get(0))
        .optional()?)
}

fn blob_addr(bytes: &[u8]) -> Result<Address, StoreError> {
    <[u8; 20]>::try_from(bytes)
        .map(Address::from)
        .map_err(|_| StoreError::Corrupt {
            what: "address",
            value: hex::encode(bytes),
        })
}

/// Stores an accepted voucher as a request row; returns its `seq`.
/// Two brokers sharing one file could, in the same nanosecond, make the
/// same `seq`: the second insert fails and its request is refused.
fn insert_request(
    db: &Connection,
    id: &str,
    voucher: &zg_core::Voucher,
    signature: &zg_core::Signature,
    service: &str,
    worst: U256,
    replica: &str,
) -> Result<i64, StoreError> {
    let (seq, tag) = split_id(id).ok_or_else(|| StoreError::Corrupt {
        what: "request id",
        value: id.into(),
    })?;
    db.prepare_cached(
        "INSERT INTO requests (seq, tag, user_addr, request_digest, service, cumulative, signature, worst, replica, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        seq,
        tag,
        voucher.user.as_slice(),
        voucher.request_digest.as_slice(),
        service,
        voucher.cumulative.to_string(),
        signature.as_bytes().as_slice(),
        worst.to_string(),
        replica,
        now_unix()
    ])?;
    Ok(seq)
}

/// Records how request `seq` ended; false if it already had an outcome.
fn insert_outcome(
    db: &Connection,
    seq: i64,
    state: RequestState,
    fee: U256,
    receipt: Option<&Issued>,
) -> Result<bool, StoreError> {
    let inserted = db
        .prepare_cached(
            "INSERT OR IGNORE INTO outcomes (request, state, fee, receipt_hash, receipt, proof) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            seq,
            state.as_str(),
            fee.to_string(),
            receipt.map(|r| r.hash.as_slice()),
            receipt.map(|r| r.json.as_str()),
            receipt.and_then(|r| r.proof.as_deref())
        ])?;
    Ok(inserted == 1)
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
    let account = read_account(db, user, provider)?.unwrap_or_else(|| Tab::new(user));
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
        &a.replica,
    )?;
    write_account(db, &next)?;
    Ok(Ok(()))
}

/// Ends an admitted request: `charged` with its receipt, or `failed`
/// (free). A request already ended is refused.
fn close_request(
    db: &Connection,
    id: &str,
    account: Tab,
    worst: U256,
    fee: U256,
    receipt: Option<&Issued>,
) -> Result<(), StoreError> {
    let seq = find_request(db, id)?.ok_or_else(|| StoreError::NotAdmitted(id.into()))?;
    if !end_request(db, seq, account, worst, fee, receipt)? {
        return Err(StoreError::NotAdmitted(id.into()));
    }
    Ok(())
}

/// Records how request `seq` ended and moves its worst case from reserved
/// to its fee owed; false, writing nothing, if it had ended already.
fn end_request(
    db: &Connection,
    seq: i64,
    mut account: Tab,
    worst: U256,
    fee: U256,
    receipt: Option<&Issued>,
) -> Result<bool, StoreError> {
    let state = match receipt {
        Some(_) => RequestState::Charged,
        None => RequestState::Failed,
    };
    if !insert_outcome(db, seq, state, fee, receipt)? {
        return Ok(false);
    }
    account.owed = account.owed.saturating_add(fee);
    account.reserved = account.reserved.saturating_sub(worst);
    write_account(db, &account)?;
    Ok(true)
}

fn charge(db: &Connection, c: Charge, provider: Address) -> Result<Issued, StoreError> {
    let account = read_account(db, c.user, provider)?.unwrap_or_else(|| Tab::new(c.user));
    let issued = (c.sign)(account.owed.saturating_add(c.fee));
    close_request(db, &c.id, account, c.worst, c.fee, Some(&issued))?;
    Ok(issued)
}

fn ack(db: &Connection, ack: &Ack, provider: Address) -> Result<Result<(), Refusal>, StoreError> {
    let v = &ack.voucher;
    if !issued(db, v.user, v.request_digest)? {
        return Ok(Err(Refusal::UnknownReceipt));
    }
    if seen(db, v.user, v.request_digest)? {
        return Ok(Err(Refusal::Replayed));
    }
    let account = read_account(db, v.user, provider)?.unwrap_or_else(|| Tab::new(v.user));
    let next = match admission::decide_ack(&account, v, ack.signature) {
        Ok(next) => next,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let seq = insert_request(db, &super::new_id(), v, &ack.signature, "", U256::ZERO, "")?;
    insert_outcome(db, seq, RequestState::Ack, U256::ZERO, None)?;
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
            let account = read_account(db, user, provider)?.unwrap_or_else(|| Tab::new(user));
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
            // Requests from before migration 0003 keep their id aside.
            let seq = match find_request(db, &id)? {
                Some(seq) => Some(seq),
                None => db
                    .prepare_cached("SELECT seq FROM requests WHERE legacy_id = ?1")?
                    .query_row([id.as_bytes()], |r| r.get(0))
                    .optional()?,
            };
            let Some(seq) = seq else {
                return Ok(None);
            };
            let row: Option<(Option<String>, Option<String>)> = db
                .prepare_cached(
                    "SELECT o.state, o.receipt FROM requests q \
                     LEFT JOIN outcomes o ON o.request = q.seq WHERE q.seq = ?1",
                )?
                .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(state, receipt)| {
                Ok(RequestRecord {
                    // No outcome yet: in flight.
                    state: state
                        .as_deref()
                        .map_or(Ok(RequestState::Admitted), RequestState::parse)?,
                    receipt: receipt.as_deref().map(parse_receipt).transpose()?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn proof(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_owned();
        self.call(move |db| {
            let Some(seq) = find_request(db, &id)? else {
                return Ok(None);
            };
            Ok(db
                .prepare_cached("SELECT proof FROM outcomes WHERE request = ?1")?
                .query_row([seq], |r| r.get::<_, Option<Vec<u8>>>(0))
                .optional()?
                .flatten())
        })
        .await
    }

    async fn tab(&self, user: Address) -> Result<Option<Tab>, StoreError> {
        let provider = self.provider;
        self.call(move |db| read_account(db, user, provider)).await
    }

    async fn tabs(&self) -> Result<Vec<Tab>, StoreError> {
        self.select_tabs("").await
    }

    async fn unsettled(&self) -> Result<Vec<Tab>, StoreError> {
        let tabs = self.select_tabs(WHERE_UNSETTLED).await?;
        Ok(only_unsettled(tabs))
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

    async fn record_settlement(&self, settlement: &SettlementRecord) -> Result<(), StoreError> {
        let row = settlement.encode();
        self.call(move |db| {
            db.prepare_cached(
                "INSERT INTO settlements (tx_hash, block, final_at, users, rejected, paid) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tx_hash) DO NOTHING",
            )?
            .execute(params![
                row.tx,
                row.block,
                row.final_at,
                row.users,
                row.rejected,
                row.paid
            ])?;
            Ok(())
        })
        .await
    }

    async fn settlements(&self, limit: u32) -> Result<Vec<SettlementRecord>, StoreError> {
        self.call(move |db| {
            let mut stmt = db.prepare_cached(
                "SELECT tx_hash, block, final_at, users, rejected, paid FROM settlements \
                 ORDER BY final_at DESC, block DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit], |r| {
                Ok(SettlementRow {
                    tx: r.get(0)?,
                    block: r.get(1)?,
                    final_at: r.get(2)?,
                    users: r.get(3)?,
                    rejected: r.get(4)?,
                    paid: r.get(5)?,
                })
            })?;
            rows.map(|r| r?.decode()).collect()
        })
        .await
    }

    async fn settle_turn(&self, wait: bool) -> Result<Option<SettleTurn>, StoreError> {
        let Some(path) = self.settle_lock.clone() else {
            return Ok(Some(SettleTurn::new(())));
        };
        let shown = path.display().to_string();
        // flock: held per open file, so two stores in one process exclude
        // each other too, and the kernel drops it with a process that dies.
        let taken = tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            if wait {
                file.lock()?;
            } else if let Err(e) = file.try_lock() {
                return match e {
                    std::fs::TryLockError::WouldBlock => Ok(None),
                    std::fs::TryLockError::Error(e) => Err(e),
                };
            }
            Ok(Some(SettleTurn::new(file)))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r: std::io::Result<_>| r.map_err(|e| e.to_string()));
        taken.map_err(|reason| StoreError::Lock {
            path: shown,
            reason,
        })
    }

    async fn release_abandoned(&self, replica: &str) -> Result<u64, StoreError> {
        let (replica, provider) = (replica.to_owned(), self.provider);
        self.call(move |db| {
            // Every request up to the mark was ended or released at an
            // earlier start: look only at those after it.
            let mark: i64 = db
                .prepare_cached("SELECT seq FROM release_marks WHERE replica = ?1")?
                .query_row([&replica], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let rows: Vec<(i64, Vec<u8>, String)> = db
                .prepare_cached(
                    "SELECT q.seq, q.user_addr, q.worst FROM requests q \
                     WHERE q.seq > ?1 AND q.replica = ?2 \
                     AND NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.request = q.seq)",
                )?
                .query_map(params![mark, replica], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<_, _>>()?;
            for (seq, user, worst) in &rows {
                let user = blob_addr(user)?;
                let account = read_account(db, user, provider)?.unwrap_or_else(|| Tab::new(user));
                let worst = parse_u256("worst", worst)?;
                end_request(db, *seq, account, worst, U256::ZERO, None)?;
            }
            let newest: i64 = db
                .prepare_cached("SELECT coalesce(max(seq), 0) FROM requests")?
                .query_row([], |r| r.get(0))?;
            db.prepare_cached(
                "INSERT INTO release_marks (replica, seq) VALUES (?1, ?2) \
                 ON CONFLICT (replica) DO UPDATE SET seq = excluded.seq",
            )?
            .execute(params![replica, newest])?;
            // Requests from now on land after the mark, whatever the clock did.
            super::ids_after(newest.max(0) as u64);
            Ok(rows.len() as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zg_core::{Receipt, SigningKey, headers::SignedReceipt};

    #[test]
    fn request_ids_are_rows_that_only_grow() {
        let (a, b) = (super::super::new_id(), super::super::new_id());
        let ((seq_a, _), (seq_b, _)) = (split_id(&a).unwrap(), split_id(&b).unwrap());
        assert!(seq_b > seq_a, "{a} then {b}");
        // After a start that found newer rows (a clock that went back).
        super::super::ids_after(seq_b as u64 + 1_000_000_000_000);
        let (seq_c, _) = split_id(&super::super::new_id()).unwrap();
        assert!(seq_c > seq_b + 1_000_000_000_000);
        assert_eq!(split_id("not an id"), None);
        assert_eq!(split_id("0123456789abcdef0123456789abcdefff"), None);
    }

    /// A broker's file from before migration 0003 (text ids, addresses and
    /// digests, the receipt in its request's row) reads the same after it.
    #[tokio::test]
    async fn a_version_2_file_keeps_its_requests_and_receipts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broker.db");
        let (user, provider) = (Address::repeat_byte(1), Address::repeat_byte(9));
        let key = SigningKey::random();
        let signature = key.sign_hash(&B256::repeat_byte(7));
        let receipt = SignedReceipt::new(
            Receipt {
                user,
                provider,
                service: B256::repeat_byte(4),
                model_digest: B256::repeat_byte(5),
                request_digest: B256::repeat_byte(2),
                response_digest: B256::repeat_byte(6),
                input_tokens: U256::from(3u64),
                output_tokens: U256::from(4u64),
                input_price: U256::from(1u64),
                output_price: U256::from(1u64),
                cached_tokens: U256::ZERO,
                cached_price: U256::ZERO,
                fee: U256::from(7u64),
                owed: U256::from(7u64),
                proof_digest: B256::ZERO,
                issued_at: 0,
            },
            &signature,
        );
        let hash = B256::repeat_byte(3);
        drop(Writer::open(&path, &MIGRATIONS[..2]).unwrap());
        let old = Connection::open(&path).unwrap();
        let insert = "INSERT INTO requests (id, user_addr, request_digest, service, cumulative, \
             signature, worst, state, replica, created_at, fee, receipt, receipt_hash) \
             VALUES (?1, ?2, ?3, 'chat', '7', ?4, '10', ?5, 'r', 0, ?6, ?7, ?8)";
        let charged = "0000000000000001aaaaaaaaaaaaaaaa";
        let in_flight = "0000000000000002bbbbbbbbbbbbbbbb";
        old.execute(
            insert,
            params![
                charged,
                hex_addr(user),
                hex_b256(B256::repeat_byte(2)),
                signature.to_string(),
                "charged",
                "7",
                receipt.to_header(),
                hex_b256(hash)
            ],
        )
        .unwrap();
        old.execute(
            insert,
            params![
                in_flight,
                hex_addr(user),
                hex_b256(B256::repeat_byte(8)),
                signature.to_string(),
                "admitted",
                None::<String>,
                None::<String>,
                None::<String>
            ],
        )
        .unwrap();
        drop(old);

        let store = SqliteStore::open(&format!("sqlite://{}", path.display()), provider)
            .await
            .unwrap();
        let record = store.request(charged).await.unwrap().unwrap();
        assert_eq!(record.receipt.as_ref().map(|r| r.receipt.user), Some(user));
        assert_eq!(record.state, RequestState::Charged);
        assert_eq!(record.receipt, Some(receipt));
        let (replayed, acknowledgeable, other) = store
            .call(move |db| {
                Ok((
                    seen(db, user, B256::repeat_byte(2))?,
                    issued(db, user, hash)?,
                    issued(db, provider, hash)?,
                ))
            })
            .await
            .unwrap();
        assert!(replayed && acknowledgeable && !other);
        assert_eq!(store.release_abandoned("r").await.unwrap(), 1);
        // The next start looks only at requests after this one's mark.
        assert_eq!(store.release_abandoned("r").await.unwrap(), 0);
        let released = store.request(in_flight).await.unwrap().unwrap();
        assert_eq!(released.state, RequestState::Failed);
        assert!(released.receipt.is_none());
    }

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
        let account = store.tab(user).await.unwrap().unwrap();
        assert_eq!(account.settled, U256::from(7u64));
        assert_eq!(account.reserved, U256::ZERO);
    }
}
