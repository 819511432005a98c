//! The PostgreSQL store, for several broker replicas on one database: the
//! upsert that opens each transaction locks the user's row (held until
//! commit), so two replicas admit one user's requests one after the other
//! and never both spend the same escrow.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use zg_core::Address;

use super::StoreError;

type Db = sqlx::Postgres;

pub(crate) struct PgStore {
    pool: PgPool,
    provider: Address,
}

impl PgStore {
    async fn select_tabs(&self, filter: &str) -> Result<Vec<crate::admission::Tab>, StoreError> {
        let rows: Vec<Row> =
            sqlx::query_as(&format!("{SELECT_ACCOUNT} {filter} ORDER BY user_addr"))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| decode_row(r, self.provider))
            .collect()
    }

    pub(crate) async fn connect(url: &str, provider: Address) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        // sqlx takes an advisory lock, so replicas starting together migrate once.
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool, provider })
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        Ok(self.pool.begin().await?)
    }
}

// ---- the statements: each step is one transaction on the user's locked row

const LOCK_ACCOUNT: &str = "INSERT INTO accounts (user_addr, owed, reserved, settled, updated_at) \
     VALUES ($1, '0', '0', '0', $2) \
     ON CONFLICT (user_addr) DO UPDATE SET updated_at = excluded.updated_at \
     RETURNING user_addr, owed, reserved, settled, cumulative, request_digest, signature";
const SELECT_ACCOUNT: &str = "SELECT user_addr, owed, reserved, settled, cumulative, request_digest, signature FROM accounts";
const INSERT_REQUEST: &str = "INSERT INTO requests \
     (id, user_addr, request_digest, service, cumulative, signature, worst, state, replica, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (user_addr, request_digest) DO NOTHING";
const UPDATE_ACCOUNT: &str = "UPDATE accounts SET owed = $2, reserved = $3, cumulative = $4, \
     request_digest = $5, signature = $6 WHERE user_addr = $1";

type Row = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn decode_row(
    row: Row,
    provider: zg_core::Address,
) -> Result<crate::admission::Tab, crate::store::StoreError> {
    crate::store::AccountRow {
        user: row.0,
        owed: row.1,
        reserved: row.2,
        settled: row.3,
        cumulative: row.4,
        request_digest: row.5,
        signature: row.6,
    }
    .decode(provider)
}

async fn lock_account<'c>(
    tx: &mut sqlx::Transaction<'c, Db>,
    user: zg_core::Address,
    provider: zg_core::Address,
) -> Result<crate::admission::Tab, crate::store::StoreError> {
    let row: Row = sqlx::query_as(LOCK_ACCOUNT)
        .bind(crate::store::hex_addr(user))
        .bind(crate::store::now_unix())
        .fetch_one(&mut **tx)
        .await?;
    decode_row(row, provider)
}

async fn write_account<'c>(
    tx: &mut sqlx::Transaction<'c, Db>,
    a: &crate::admission::Tab,
) -> Result<(), crate::store::StoreError> {
    let (c, d, s) = match &a.voucher {
        Some((v, s)) => (
            Some(v.cumulative.to_string()),
            Some(crate::store::hex_b256(v.request_digest)),
            Some(s.to_string()),
        ),
        None => (None, None, None),
    };
    sqlx::query(UPDATE_ACCOUNT)
        .bind(crate::store::hex_addr(a.user))
        .bind(a.owed.to_string())
        .bind(a.reserved.to_string())
        .bind(c)
        .bind(d)
        .bind(s)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The end of an admission or an acknowledgement: a replay (nothing
/// inserted) or a refusal rolls back; else the account is written, committed.
async fn conclude(
    mut tx: sqlx::Transaction<'_, Db>,
    inserted: u64,
    next: Result<crate::admission::Tab, crate::admission::Refusal>,
) -> Result<Result<(), crate::admission::Refusal>, crate::store::StoreError> {
    if inserted == 0 {
        return Ok(Err(crate::admission::Refusal::Replayed));
    }
    let next = match next {
        Ok(next) => next,
        Err(refusal) => return Ok(Err(refusal)),
    };
    write_account(&mut tx, &next).await?;
    tx.commit().await?;
    Ok(Ok(()))
}

#[async_trait::async_trait]
impl crate::store::Store for PgStore {
    async fn admit(
        &self,
        a: &crate::admission::Admission,
    ) -> Result<Result<(), crate::admission::Refusal>, crate::store::StoreError> {
        let user = a.voucher.user;
        let mut tx = self.begin().await?;
        let account = lock_account(&mut tx, user, self.provider).await?;
        let inserted = sqlx::query(INSERT_REQUEST)
            .bind(&a.id)
            .bind(crate::store::hex_addr(user))
            .bind(crate::store::hex_b256(a.voucher.request_digest))
            .bind(&a.service)
            .bind(a.voucher.cumulative.to_string())
            .bind(a.signature.to_string())
            .bind(a.worst.to_string())
            .bind(crate::store::RequestState::Admitted.as_str())
            .bind(&a.replica)
            .bind(crate::store::now_unix())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        conclude(tx, inserted, crate::admission::decide(&account, a)).await
    }

    async fn charge(
        &self,
        c: crate::store::Charge,
    ) -> Result<crate::store::Issued, crate::store::StoreError> {
        let mut tx = self.begin().await?;
        let mut account = lock_account(&mut tx, c.user, self.provider).await?;
        account.owed = account.owed.saturating_add(c.fee);
        account.reserved = account.reserved.saturating_sub(c.worst);
        let issued = (c.sign)(account.owed);
        let updated = sqlx::query(
            "UPDATE requests SET state = 'charged', fee = $2, receipt = $3, receipt_hash = $4, \
             proof = $5 WHERE id = $1 AND state = 'admitted'",
        )
        .bind(&c.id)
        .bind(c.fee.to_string())
        .bind(&issued.json)
        .bind(crate::store::hex_b256(issued.hash))
        .bind(issued.proof.as_deref())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(crate::store::StoreError::NotAdmitted(c.id.to_string()));
        }
        write_account(&mut tx, &account).await?;
        tx.commit().await?;
        Ok(issued)
    }

    async fn release(
        &self,
        id: &str,
        user: zg_core::Address,
        worst: zg_core::U256,
    ) -> Result<(), crate::store::StoreError> {
        let mut tx = self.begin().await?;
        let mut account = lock_account(&mut tx, user, self.provider).await?;
        let updated = sqlx::query(
            "UPDATE requests SET state = 'failed', fee = '0' WHERE id = $1 AND state = 'admitted'",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(crate::store::StoreError::NotAdmitted(id.to_string()));
        }
        account.reserved = account.reserved.saturating_sub(worst);
        write_account(&mut tx, &account).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ack(
        &self,
        ack: &crate::store::Ack,
    ) -> Result<Result<(), crate::admission::Refusal>, crate::store::StoreError> {
        let v = &ack.voucher;
        let mut tx = self.begin().await?;
        let account = lock_account(&mut tx, v.user, self.provider).await?;
        let known: Option<(String,)> =
            sqlx::query_as("SELECT id FROM requests WHERE user_addr = $1 AND receipt_hash = $2")
                .bind(crate::store::hex_addr(v.user))
                .bind(crate::store::hex_b256(v.request_digest))
                .fetch_optional(&mut *tx)
                .await?;
        if known.is_none() {
            return Ok(Err(crate::admission::Refusal::UnknownReceipt));
        }
        let inserted = sqlx::query(INSERT_REQUEST)
            .bind(crate::store::new_id())
            .bind(crate::store::hex_addr(v.user))
            .bind(crate::store::hex_b256(v.request_digest))
            .bind("")
            .bind(v.cumulative.to_string())
            .bind(ack.signature.to_string())
            .bind("0")
            .bind(crate::store::RequestState::Ack.as_str())
            .bind("")
            .bind(crate::store::now_unix())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        conclude(
            tx,
            inserted,
            crate::admission::decide_ack(&account, v, ack.signature),
        )
        .await
    }

    async fn request(
        &self,
        id: &str,
    ) -> Result<Option<crate::store::RequestRecord>, crate::store::StoreError> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, receipt FROM requests WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(state, receipt)| {
            Ok(crate::store::RequestRecord {
                state: crate::store::RequestState::parse(&state)?,
                receipt: receipt
                    .as_deref()
                    .map(crate::store::parse_receipt)
                    .transpose()?,
            })
        })
        .transpose()
    }

    async fn proof(&self, id: &str) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
        let row: Option<(Option<Vec<u8>>,)> =
            sqlx::query_as("SELECT proof FROM requests WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(proof,)| proof))
    }

    async fn tab(
        &self,
        user: zg_core::Address,
    ) -> Result<Option<crate::admission::Tab>, crate::store::StoreError> {
        let row: Option<Row> = sqlx::query_as(&format!("{SELECT_ACCOUNT} WHERE user_addr = $1"))
            .bind(crate::store::hex_addr(user))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| decode_row(r, self.provider)).transpose()
    }

    async fn tabs(&self) -> Result<Vec<crate::admission::Tab>, crate::store::StoreError> {
        self.select_tabs("").await
    }

    async fn unsettled(&self) -> Result<Vec<crate::admission::Tab>, crate::store::StoreError> {
        let tabs = self.select_tabs(crate::store::WHERE_UNSETTLED).await?;
        Ok(crate::store::only_unsettled(tabs))
    }

    async fn record_settled(
        &self,
        user: zg_core::Address,
        settled: zg_core::U256,
    ) -> Result<(), crate::store::StoreError> {
        let mut tx = self.begin().await?;
        let account = lock_account(&mut tx, user, self.provider).await?;
        if settled > account.settled {
            sqlx::query("UPDATE accounts SET settled = $2 WHERE user_addr = $1")
                .bind(crate::store::hex_addr(user))
                .bind(settled.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_settlement(
        &self,
        settlement: &crate::store::SettlementRecord,
    ) -> Result<(), crate::store::StoreError> {
        let row = settlement.encode();
        sqlx::query(
            "INSERT INTO settlements (tx_hash, block, final_at, users, rejected, paid) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tx_hash) DO NOTHING",
        )
        .bind(row.tx)
        .bind(row.block)
        .bind(row.final_at)
        .bind(row.users)
        .bind(row.rejected)
        .bind(row.paid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn settlements(
        &self,
        limit: u32,
    ) -> Result<Vec<crate::store::SettlementRecord>, crate::store::StoreError> {
        let rows: Vec<(String, i64, i64, String, i64, String)> = sqlx::query_as(
            "SELECT tx_hash, block, final_at, users, rejected, paid FROM settlements \
             ORDER BY final_at DESC, block DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(tx, block, final_at, users, rejected, paid)| {
                crate::store::SettlementRow {
                    tx,
                    block,
                    final_at,
                    users,
                    rejected,
                    paid,
                }
                .decode()
            })
            .collect()
    }

    async fn settle_turn(
        &self,
        wait: bool,
    ) -> Result<Option<crate::store::SettleTurn>, crate::store::StoreError> {
        // A session advisory lock, one per provider, on a connection kept
        // for the turn: every replica and `provider settle` share it.
        let key = i64::from_be_bytes(settle_lock_key(self.provider));
        let mut conn = self.pool.acquire().await?;
        if wait {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(key)
                .execute(&mut *conn)
                .await?;
        } else {
            let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await?;
            if !taken {
                return Ok(None);
            }
        }
        Ok(Some(crate::store::SettleTurn::new(LockedConnection(Some(
            conn,
        )))))
    }

    async fn release_abandoned(&self, replica: &str) -> Result<u64, crate::store::StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT id, user_addr, worst FROM requests WHERE state = 'admitted' AND replica = $1",
        )
        .bind(replica)
        .fetch_all(&self.pool)
        .await?;
        let n = rows.len() as u64;
        for (id, user, worst) in rows {
            let user = crate::store::parse_addr(&user)?;
            let worst = crate::store::parse_u256("worst", &worst)?;
            match self.release(&id, user, worst).await {
                Ok(()) | Err(crate::store::StoreError::NotAdmitted(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// The advisory lock key of `provider`'s settlement turn: its address's
/// first 8 bytes (sqlx's migration lock uses keys of its own).
fn settle_lock_key(provider: Address) -> [u8; 8] {
    let mut key = [0u8; 8];
    key.copy_from_slice(&provider.as_slice()[..8]);
    key
}

/// The connection that holds a settlement turn. Dropped, it is closed, not
/// pooled: closing ends the session and so releases its advisory lock on
/// every way out, an error or a cancelled future included.
struct LockedConnection(Option<sqlx::pool::PoolConnection<Db>>);

impl Drop for LockedConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}
