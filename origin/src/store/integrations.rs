//! What the integration hub stores (issue 15): connected services with their sealed tokens
//! (`integrations`, migrations 0016 / pg 0008) and the local integrations' API keys
//! (`integration_keys`, 0017 / pg 0009). Both backends: `sqlite_integrations.rs`,
//! `postgres_integrations.rs`.

use async_trait::async_trait;
use domain::time::UnixMillis;

use super::{OutboxRow, StoreError};

/// A connected service as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationRow {
    pub user_id: String,
    pub service: String,
    /// `active`, `disabled` or `needs_reconnect` (`domain::integrations::Status`).
    pub status: String,
    /// The scopes granted, space-separated.
    pub scopes: String,
    /// The provider's tokens (JSON), sealed with the user's data key; none for a local one.
    pub tokens_sealed: Option<Vec<u8>>,
    /// The account the provider reported (its name or id), sealed.
    pub account_sealed: Option<Vec<u8>>,
    pub expires_at: Option<UnixMillis>,
    /// Moves with every token change: a refresh stores its tokens only over the version it read.
    pub token_version: i64,
    pub connected_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_sync_at: Option<UnixMillis>,
    pub last_error: Option<String>,
    /// JSON of `domain::integrations::SyncCursor`.
    pub sync_cursor: String,
    /// No sync before this (a provider's `Retry-After`).
    pub retry_at: Option<UnixMillis>,
}

/// New tokens for an integration, stored over the version a refresh read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUpdate<'a> {
    pub user_id: &'a str,
    pub service: &'a str,
    pub expected_version: i64,
    pub tokens_sealed: &'a [u8],
    pub expires_at: Option<UnixMillis>,
    pub at: UnixMillis,
}

/// What a sync run leaves on its integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome<'a> {
    pub user_id: &'a str,
    pub service: &'a str,
    pub cursor: &'a str,
    pub at: UnixMillis,
    pub retry_at: Option<UnixMillis>,
    pub error: Option<&'a str>,
}

/// A local integration's API key as stored (its keyed hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKeyRow {
    pub key_hash: String,
    pub user_id: String,
    pub service: String,
    pub scopes: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// Connected services and local keys.
#[async_trait]
pub trait IntegrationStore: Send + Sync {
    /// Inserts or replaces a user's connection to a service (a reconnect starts afresh: active,
    /// a new token version, no error, the cursor kept).
    async fn put_integration(&self, row: &IntegrationRow) -> Result<(), StoreError>;
    /// A user's connected services, by service id.
    async fn integrations(&self, user_id: &str) -> Result<Vec<IntegrationRow>, StoreError>;
    async fn integration(&self, user_id: &str, service: &str) -> Result<Option<IntegrationRow>, StoreError>;
    /// Deletes the connection and revokes the service's local keys, in one transaction; false
    /// when there was none.
    async fn delete_integration(
        &self,
        user_id: &str,
        service: &str,
        at: UnixMillis,
    ) -> Result<bool, StoreError>;
    /// Stores refreshed tokens if the version is still the one read (compare-and-set): of two
    /// refreshes racing, one stores; false for the other.
    async fn replace_tokens(&self, update: &TokenUpdate<'_>) -> Result<bool, StoreError>;
    /// Marks an integration `needs_reconnect` with its error and stores the user's notice, in
    /// one transaction, if it was not marked already (one notice per breakage); false otherwise.
    async fn mark_needs_reconnect(
        &self,
        user_id: &str,
        service: &str,
        error: &str,
        notice: &OutboxRow,
        at: UnixMillis,
    ) -> Result<bool, StoreError>;
    /// Active integrations whose token expires by `before`, soonest first.
    async fn refresh_due(&self, before: UnixMillis, limit: u32) -> Result<Vec<IntegrationRow>, StoreError>;
    /// Active integrations of `service` a sync may call at `now` (no pending `Retry-After`).
    async fn sync_due(
        &self,
        service: &str,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<IntegrationRow>, StoreError>;
    async fn record_sync(&self, outcome: &SyncOutcome<'_>) -> Result<(), StoreError>;
    /// Sets the active ones of `services` to `disabled` (kept, tokens and all), in one
    /// transaction; answers how many changed.
    async fn disable_integrations(
        &self,
        user_id: &str,
        services: &[String],
        at: UnixMillis,
    ) -> Result<u64, StoreError>;

    /// Stores a new local key and the integration row it stands for, in one transaction.
    async fn insert_local_key(&self, key: &LocalKeyRow, row: &IntegrationRow) -> Result<(), StoreError>;
    /// The key with this hash, unless revoked.
    async fn local_key(&self, key_hash: &str) -> Result<Option<LocalKeyRow>, StoreError>;
}
