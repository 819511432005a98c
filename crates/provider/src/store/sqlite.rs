//! The SQLite store: one file, WAL, one writer connection (SQLite allows one
//! writer anyway, and a single connection makes every transaction exclusive
//! without busy retries). For one broker process.

use std::{str::FromStr, time::Duration};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use zg_core::Address;

use super::StoreError;

type Db = sqlx::Sqlite;

pub struct SqliteStore {
    pool: SqlitePool,
    provider: Address,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `url`
    /// (`sqlite://path` or `sqlite::memory:`).
    pub async fn open(url: &str, provider: Address) -> Result<Self, StoreError> {
        // synchronous=NORMAL in WAL mode survives a killed process (the OS
        // still has every committed page); only a power cut can lose the tail.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool, provider })
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        Ok(self.pool.begin().await?)
    }
}

super::sql::sql_store!(SqliteStore);
