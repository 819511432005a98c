//! The broker's persistent state behind one narrow trait: accounts (owed,
//! reserved, newest voucher, settled), every accepted voucher with its request
//! and receipt, and the history of final settlements. SQLite for one broker, PostgreSQL for replicas. Each step
//! (admit, charge, release, ack) is one transaction that holds the user's
//! account row, so one user's admissions are serialized by the database.

mod postgres;
mod sqlite;

pub(crate) use postgres::PgStore;
pub(crate) use sqlite::SqliteStore;

use crate::admission::{Admission, Refusal, Tab};
use async_trait::async_trait;
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use zg_core::{Address, B256, Signature, U256, Voucher, headers::SignedReceipt};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database error: {0}; check that the database at the configured URL is up and writable"
    )]
    Db(#[from] sqlx::Error),
    #[error("SQLite error: {0}; check that the database file is writable and not corrupt")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Stopped(#[from] zg_sqlite::Stopped),
    #[error("could not open the SQLite database: {0}")]
    Open(String),
    #[error("database migration failed: {0}; the database may belong to a newer broker")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database holds a malformed {what}: {value:?}")]
    Corrupt { what: &'static str, value: String },
    #[error("request {0} is not in the admitted state (charged or released twice?)")]
    NotAdmitted(String),
    #[error(
        "could not take the settlement lock {path}: {reason}; check that the database's folder is writable"
    )]
    Lock { path: String, reason: String },
}

/// A settler's turn over the books: while one is held no other settler of
/// the same database (another process's included) submits; dropping it
/// ends the turn.
pub(crate) struct SettleTurn {
    _held: Box<dyn Send + Sync>,
}

impl SettleTurn {
    pub(crate) fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

/// A signed receipt as the broker stores and sends it: its EIP-712 hash (what
/// acknowledgement vouchers name), its JSON (`X-ZG-Receipt`, serialized
/// once), and the proof of model whose digest it binds, kept with it.
pub(crate) struct Issued {
    pub hash: B256,
    pub json: String,
    pub proof: Option<bytes::Bytes>,
}

/// A completed request's charge: the store adds `fee` to what the user owes
/// and hands the new total to `sign`, which builds and signs the receipt.
pub(crate) struct Charge {
    pub id: String,
    pub user: Address,
    pub worst: U256,
    pub fee: U256,
    pub sign: Box<dyn FnOnce(U256) -> Issued + Send>,
}

/// A stored request as `GET /v1/receipts/{id}` needs it.
#[derive(Debug, Clone)]
pub(crate) struct RequestRecord {
    pub state: RequestState,
    pub receipt: Option<SignedReceipt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestState {
    Admitted,
    Charged,
    Failed,
    Ack,
}

impl RequestState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Charged => "charged",
            Self::Failed => "failed",
            Self::Ack => "ack",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "admitted" => Self::Admitted,
            "charged" => Self::Charged,
            "failed" => Self::Failed,
            "ack" => Self::Ack,
            other => {
                return Err(StoreError::Corrupt {
                    what: "request state",
                    value: other.into(),
                });
            }
        })
    }
}

/// A final settlement, as the provider page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettlementRecord {
    pub tx: B256,
    /// The block that mined it.
    pub block: u64,
    /// Unix time it became final (its confirmations reached).
    pub final_at: i64,
    /// The users whose vouchers it settled.
    pub users: Vec<Address>,
    /// Vouchers the contract rejected in it.
    pub rejected: u64,
    /// What it paid to the provider's ledger balance, in neuron.
    pub paid: U256,
}

/// The columns of a `settlements` row, encoded the same way for both databases.
pub(crate) struct SettlementRow {
    pub tx: String,
    pub block: i64,
    pub final_at: i64,
    pub users: String,
    pub rejected: i64,
    pub paid: String,
}

impl SettlementRecord {
    pub(crate) fn encode(&self) -> SettlementRow {
        SettlementRow {
            tx: hex_b256(self.tx),
            block: i64::try_from(self.block).unwrap_or(i64::MAX),
            final_at: self.final_at,
            users: self
                .users
                .iter()
                .map(|u| hex_addr(*u))
                .collect::<Vec<_>>()
                .join(" "),
            rejected: i64::try_from(self.rejected).unwrap_or(i64::MAX),
            paid: self.paid.to_string(),
        }
    }
}

impl SettlementRow {
    pub(crate) fn decode(self) -> Result<SettlementRecord, StoreError> {
        Ok(SettlementRecord {
            tx: parse_b256("settlement transaction", &self.tx)?,
            block: u64::try_from(self.block).unwrap_or_default(),
            final_at: self.final_at,
            users: self
                .users
                .split_whitespace()
                .map(parse_addr)
                .collect::<Result<_, _>>()?,
            rejected: u64::try_from(self.rejected).unwrap_or_default(),
            paid: parse_u256("settlement paid", &self.paid)?,
        })
    }
}

/// An acknowledgement voucher: `voucher.request_digest` is the EIP-712 hash of
/// a receipt this broker issued.
#[derive(Clone)]
pub(crate) struct Ack {
    pub voucher: Voucher,
    pub signature: Signature,
}

#[async_trait]
pub(crate) trait Store: Send + Sync + 'static {
    /// Stores the voucher and reserves the request's worst case, or refuses.
    async fn admit(&self, admission: &Admission) -> Result<Result<(), Refusal>, StoreError>;
    /// Stores the charge and the receipt `sign` builds; returns the receipt.
    async fn charge(&self, charge: Charge) -> Result<Issued, StoreError>;
    /// Frees the reservation of a request that failed upstream: it costs nothing.
    async fn release(&self, id: &str, user: Address, worst: U256) -> Result<(), StoreError>;
    /// Accepts an acknowledgement voucher.
    async fn ack(&self, ack: &Ack) -> Result<Result<(), Refusal>, StoreError>;
    async fn request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError>;
    /// The proof of model stored with request `id`'s receipt, if any.
    async fn proof(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn tab(&self, user: Address) -> Result<Option<Tab>, StoreError>;
    /// Every user's tab (status and metrics).
    async fn tabs(&self) -> Result<Vec<Tab>, StoreError>;
    /// The tabs whose newest voucher would still collect something (settlement).
    async fn unsettled(&self) -> Result<Vec<Tab>, StoreError>;
    /// Records the user's settled total on chain (never lowers it).
    async fn record_settled(&self, user: Address, settled: U256) -> Result<(), StoreError>;
    /// Keeps a final settlement in the history (once per transaction).
    async fn record_settlement(&self, settlement: &SettlementRecord) -> Result<(), StoreError>;
    /// The newest `limit` final settlements, newest first.
    async fn settlements(&self, limit: u32) -> Result<Vec<SettlementRecord>, StoreError>;
    /// The settlement turn: waits for it when `wait`, else None while
    /// another settler holds it.
    async fn settle_turn(&self, wait: bool) -> Result<Option<SettleTurn>, StoreError>;
    /// Releases what `replica`'s earlier run left admitted (a crash in flight):
    /// those requests got no receipt, so they cost nothing. Returns how many.
    async fn release_abandoned(&self, replica: &str) -> Result<u64, StoreError>;
}

/// Opens the store a database URL names, creating and migrating the schema.
pub(crate) async fn open(url: &str, provider: Address) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres") {
        Ok(Arc::new(PgStore::connect(url, provider).await?))
    } else {
        Ok(Arc::new(SqliteStore::open(url, provider).await?))
    }
}

/// A new request id: the time in nanoseconds, then 8 random bytes, as hex.
/// New rows land at the end of the table (few pages written per commit) and
/// ids stay unguessable. Within a process the time part only grows, one
/// nanosecond at least, so it alone identifies a request (the SQLite
/// store's row id).
pub(crate) fn new_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    let nanos = now.max(previous + 1);
    format!("{nanos:016x}{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// The time part of the newest id made; see [`new_id`].
static LAST: AtomicU64 = AtomicU64::new(0);

/// Makes every later id's time part exceed `nanos` (the newest stored at
/// start), even if the clock went back across a restart.
pub(crate) fn ids_after(nanos: u64) {
    LAST.fetch_max(nanos, Ordering::Relaxed);
}

// Encodings shared by both databases: addresses and digests as 0x lowercase
// hex, amounts as decimal text (compared in Rust, never in SQL).

pub(crate) fn hex_addr(a: Address) -> String {
    format!("{a:#x}")
}

pub(crate) fn hex_b256(b: B256) -> String {
    format!("{b:#x}")
}

pub(crate) fn parse_u256(what: &'static str, text: &str) -> Result<U256, StoreError> {
    U256::from_str_radix(text, 10).map_err(|_| StoreError::Corrupt {
        what,
        value: text.into(),
    })
}

pub(crate) fn parse_addr(text: &str) -> Result<Address, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt {
        what: "address",
        value: text.into(),
    })
}

pub(crate) fn parse_b256(what: &'static str, text: &str) -> Result<B256, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt {
        what,
        value: text.into(),
    })
}

pub(crate) fn parse_sig(text: &str) -> Result<Signature, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt {
        what: "signature",
        value: text.into(),
    })
}

pub(crate) fn parse_receipt(text: &str) -> Result<SignedReceipt, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt {
        what: "receipt",
        value: text.chars().take(200).collect(),
    })
}

pub(crate) fn now_unix() -> i64 {
    zg_core::now_unix() as i64
}

/// Selects the tabs that may have unsettled value; [`Tab::unsettled`] decides
/// (amounts are compared in Rust, never in SQL).
pub(crate) const WHERE_UNSETTLED: &str = "WHERE cumulative IS NOT NULL AND cumulative <> settled";

pub(crate) fn only_unsettled(tabs: Vec<Tab>) -> Vec<Tab> {
    tabs.into_iter()
        .filter(|t| !t.unsettled().is_zero())
        .collect()
}

/// The raw columns of an account row, decoded the same way for both databases.
pub(crate) struct AccountRow {
    pub user: String,
    pub owed: String,
    pub reserved: String,
    pub settled: String,
    pub cumulative: Option<String>,
    pub request_digest: Option<String>,
    pub signature: Option<String>,
}

impl AccountRow {
    pub(crate) fn decode(self, provider: Address) -> Result<Tab, StoreError> {
        let user = parse_addr(&self.user)?;
        let voucher = match (self.cumulative, self.request_digest, self.signature) {
            (Some(c), Some(d), Some(s)) => Some((
                Voucher {
                    user,
                    provider,
                    cumulative: parse_u256("cumulative", &c)?,
                    request_digest: parse_b256("request digest", &d)?,
                },
                parse_sig(&s)?,
            )),
            _ => None,
        };
        Ok(Tab {
            user,
            owed: parse_u256("owed", &self.owed)?,
            reserved: parse_u256("reserved", &self.reserved)?,
            settled: parse_u256("settled", &self.settled)?,
            voucher,
        })
    }
}
