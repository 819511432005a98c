//! The PostgreSQL store, for several broker replicas on one database: the
//! upsert that opens each transaction locks the user's row, so two replicas
//! admit one user's requests one after the other and never both spend the
//! same escrow.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use zg_core::Address;

use super::StoreError;

type Db = sqlx::Postgres;

pub struct PgStore {
    pool: PgPool,
    provider: Address,
}

impl PgStore {
    pub async fn connect(url: &str, provider: Address) -> Result<Self, StoreError> {
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

super::sql::sql_store!(PgStore);
