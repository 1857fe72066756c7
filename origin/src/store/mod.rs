//! Storage behind a trait. Handlers see only [`Store`]; `sqlite` is today's backend, and a
//! PostgreSQL one can implement the same trait without touching a handler.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use domain::time::UnixMillis;

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

/// What remembering a nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    Fresh,
    Replayed,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Answers when the database is reachable.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Records that a signed request with `nonce` arrived at `now`. A nonce already recorded
    /// is a replay. Nonces older than `retain_ms` are forgotten on the way.
    async fn remember_nonce(
        &self,
        nonce: &str,
        now: UnixMillis,
        retain_ms: u64,
    ) -> Result<NonceOutcome, StoreError>;
}

/// Opens the store a database URL names, applying pending migrations.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqliteStore::open(database_url).await?))
}
