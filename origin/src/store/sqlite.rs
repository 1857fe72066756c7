//! The SQLite backend: one file, WAL mode, migrations embedded in the binary and applied at open.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::time::UnixMillis;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::{NonceOutcome, Store, StoreError};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a write the origin acknowledged survives a power loss, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn millis(t: UnixMillis) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn remember_nonce(
        &self,
        nonce: &str,
        now: UnixMillis,
        retain_ms: u64,
    ) -> Result<NonceOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM edge_nonces WHERE seen_at < ?")
            .bind(millis(now.saturating_sub_ms(retain_ms)))
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO edge_nonces (nonce, seen_at) VALUES (?, ?) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if inserted == 1 {
            NonceOutcome::Fresh
        } else {
            NonceOutcome::Replayed
        })
    }
}
