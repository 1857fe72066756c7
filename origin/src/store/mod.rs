//! Storage behind a trait. Handlers and services see only [`Store`]; `sqlite` is the embedded
//! default, `postgres` the backend for several origin processes sharing one database. The
//! database URL's scheme chooses (`open`).
//!
//! The store moves rows, not meaning: sealing, validation and authorisation happen above it.

pub mod migrate;
mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use domain::time::UnixMillis;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("a user with this email already exists")]
    DuplicateEmail,
    #[error("a stored value is corrupt: {0}")]
    Corrupt(String),
}

/// What remembering a nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    Fresh,
    Replayed,
}

/// A user as stored: personal data sealed, the rest plain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub email_index: Vec<u8>,
    pub email_sealed: Vec<u8>,
    pub data_key_sealed: Vec<u8>,
    pub data_key_master_id: String,
    pub role: String,
    pub tier: String,
    pub email_verified: bool,
    pub password_hash: Option<String>,
    pub profile_sealed: Vec<u8>,
    pub version: i64,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    pub last_login_at: Option<UnixMillis>,
    pub disabled_at: Option<UnixMillis>,
}

/// An entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub user_id: String,
    pub actor: String,
    pub action: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub at: UnixMillis,
}

/// What a conditional update found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated,
    /// The row's version was not the expected one; it is this.
    VersionMismatch(i64),
    NotFound,
}

#[async_trait]
pub trait Store: ProtectionStore + EventStore + JobStore + ObserveStore + Send + Sync {
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

    /// Inserts a new user (and an audit entry, in the same transaction).
    /// [`StoreError::DuplicateEmail`] when the email index is taken.
    async fn insert_user(&self, row: &UserRow, audit: &AuditEntry) -> Result<(), StoreError>;

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError>;

    async fn user_by_email_index(&self, index: &[u8]) -> Result<Option<UserRow>, StoreError>;

    /// Replaces the mutable columns of `row` if the stored version is `expected_version`,
    /// appending `audit` entries in the same transaction. [`StoreError::DuplicateEmail`] when
    /// the row's new email index is another user's.
    async fn update_user(
        &self,
        row: &UserRow,
        expected_version: i64,
        audit: &[AuditEntry],
    ) -> Result<UpdateOutcome, StoreError>;

    async fn record_login(&self, id: &str, at: UnixMillis) -> Result<(), StoreError>;

    /// How many users' data keys each master key id wraps.
    async fn master_key_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Up to `limit` users whose data key is wrapped by another master key than `current`,
    /// with ids after `after`, in id order.
    async fn users_wrapped_by_others(
        &self,
        current: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<UserRow>, StoreError>;

    async fn audit_entries(&self, user_id: &str) -> Result<Vec<AuditEntry>, StoreError>;
}

/// A user's TOTP factor as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRow {
    pub secret_sealed: Vec<u8>,
    pub confirmed_at: Option<UnixMillis>,
    pub last_step: Option<u64>,
}

/// A security event as stored (`detail` is JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    pub kind: String,
    pub detail: String,
    pub at: UnixMillis,
}

/// The values of an atomic state update, before and after, in the order of its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateUpdate {
    pub before: Vec<Option<String>>,
    pub after: Vec<Option<String>>,
}

/// What account protection stores: login history, short-lived auth state, security events,
/// TOTP factors and recovery codes.
#[async_trait]
pub trait ProtectionStore: Send + Sync {
    async fn append_login(&self, user_id: &str, context: &str, at: UnixMillis) -> Result<(), StoreError>;
    /// The `limit` most recent successful logins' contexts, oldest first.
    async fn recent_logins(&self, user_id: &str, limit: u32)
        -> Result<Vec<(String, UnixMillis)>, StoreError>;

    async fn state_get(&self, key: &str, now: UnixMillis) -> Result<Option<String>, StoreError>;
    async fn state_put(&self, key: &str, value: &str, expires_at: UnixMillis) -> Result<(), StoreError>;
    async fn state_delete(&self, key: &str) -> Result<(), StoreError>;
    /// Applies `update` to the values under `keys` (`None`: absent or expired) inside one
    /// write transaction, so concurrent updates of the same keys serialise and none is lost
    /// (30 parallel failures move a counter by 30). Each key comes with the expiry a value it
    /// sets is stored with; values it clears are deleted. Answers the values before and after.
    async fn update_states(
        &self,
        keys: &[(String, UnixMillis)],
        now: UnixMillis,
        update: &(dyn for<'v> Fn(&'v mut [Option<String>]) + Send + Sync),
    ) -> Result<StateUpdate, StoreError>;
    /// Deletes the value under `key` and answers it (if unexpired): of callers racing for the
    /// same key, at most one gets it, which makes a challenge single-use.
    async fn state_take(&self, key: &str, now: UnixMillis) -> Result<Option<String>, StoreError>;
    /// The second factors a user has confirmed, in one query.
    async fn enrolled_factors(&self, user_id: &str) -> Result<domain::security::Enrolled, StoreError>;
    /// What a successful login writes, in one transaction: the last-login time, the history
    /// entry, and its security events `(kind, detail)`.
    async fn record_login_success(
        &self,
        user_id: &str,
        context: &str,
        at: UnixMillis,
        events: &[(String, String)],
    ) -> Result<(), StoreError>;
    /// Whether the user is disabled (`None`: no such user).
    async fn is_disabled(&self, user_id: &str) -> Result<Option<bool>, StoreError>;

    async fn add_security_event(
        &self,
        user_id: &str,
        kind: &str,
        detail: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError>;
    async fn security_events(&self, user_id: &str, limit: u32) -> Result<Vec<SecurityEvent>, StoreError>;

    async fn totp(&self, user_id: &str) -> Result<Option<TotpRow>, StoreError>;
    /// Stores a new, unconfirmed secret (replacing an unconfirmed one).
    async fn put_pending_totp(&self, user_id: &str, secret_sealed: &[u8]) -> Result<(), StoreError>;
    async fn confirm_totp(
        &self,
        user_id: &str,
        at: UnixMillis,
        step: u64,
        recovery_hashes: &[String],
    ) -> Result<(), StoreError>;
    /// Records `step` as used if it is later than the last one used; false if it is not.
    async fn use_totp_step(&self, user_id: &str, step: u64) -> Result<bool, StoreError>;
    async fn delete_totp(&self, user_id: &str) -> Result<(), StoreError>;
    /// Marks a recovery code used; false if there is no such unused code. `code_hashes` are
    /// the hashes the code may be stored under (current key, retired keys, legacy format).
    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hashes: &[String],
        at: UnixMillis,
    ) -> Result<bool, StoreError>;
    async fn recovery_codes_left(&self, user_id: &str) -> Result<u32, StoreError>;

    /// The sealed phone number confirmed for SMS codes, if any.
    async fn sms_phone(&self, user_id: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets (or replaces) the confirmed phone number.
    async fn put_sms_phone(
        &self,
        user_id: &str,
        phone_sealed: &[u8],
        at: UnixMillis,
    ) -> Result<(), StoreError>;
    /// Removes the phone number; false if there was none.
    async fn delete_sms_phone(&self, user_id: &str) -> Result<bool, StoreError>;
    /// Counts one text against each `(scope, limit)` counter of `day`, all or none, in one
    /// write transaction: answers the index of the first counter the text would take past its
    /// limit (then nothing is counted), or `None` once all are counted.
    async fn count_sms_text(&self, counters: &[(String, u32)], day: u64)
        -> Result<Option<usize>, StoreError>;
}

/// Event kinds from the edge that are also security events of their user.
pub const SECURITY_EVENT_KINDS: [&str; 1] = ["session_evicted"];

/// A behavioural event as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRow {
    pub id: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub class: Option<String>,
    pub at: u64,
    pub data: serde_json::Value,
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores the events whose ids are new; answers (stored, duplicates).
    async fn store_events(
        &self,
        events: &[EventRow],
        received_at: UnixMillis,
    ) -> Result<(u64, u64), StoreError>;
    /// A user's events in `[from, to)`, oldest first.
    async fn user_events(
        &self,
        user_id: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<EventRow>, StoreError>;
    async fn count_events(&self) -> Result<u64, StoreError>;
    /// A trained model's JSON by name.
    async fn model(&self, name: &str) -> Result<Option<String>, StoreError>;
    async fn put_model(&self, name: &str, model: &str, trained_at: UnixMillis) -> Result<(), StoreError>;
}

/// What the automation jobs need: bulk writes and whole-table reads.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Inserts users whose email index is new, each with its activation (token hash, expiry)
    /// if it has one; answers the ids inserted (the others already existed).
    async fn insert_provisioned(
        &self,
        users: &[(UserRow, Option<(String, UnixMillis)>)],
        actor: &str,
        at: UnixMillis,
    ) -> Result<Vec<String>, StoreError>;
    /// Events in bulk (the demo generator).
    async fn insert_events(&self, events: &[EventRow], received_at: UnixMillis) -> Result<u64, StoreError>;
    /// Every user's id, tier and creation time.
    async fn all_users(&self) -> Result<Vec<(String, String, UnixMillis)>, StoreError>;
    /// Every event's (user id, kind, class, at) in `[from, to)`, by user then time.
    async fn activity(
        &self,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<(String, String, Option<String>, u64)>, StoreError>;
    /// Tier changes from the audit log: (user id, old, new, at).
    async fn tier_changes(
        &self,
    ) -> Result<Vec<(String, Option<String>, Option<String>, UnixMillis)>, StoreError>;
    /// Removes expired short-lived state and nonces older than `nonces_before`: (state, nonces).
    async fn purge_auth_state(
        &self,
        now: UnixMillis,
        nonces_before: UnixMillis,
    ) -> Result<(u64, u64), StoreError>;
    /// Removes accounts never activated whose deadline passed.
    async fn purge_unactivated(&self, now: UnixMillis) -> Result<u64, StoreError>;
    async fn purge_events_before(&self, before: UnixMillis) -> Result<u64, StoreError>;
    /// Activates an account: sets its password hash if the token is valid; the user's id.
    async fn activate(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<String>, StoreError>;
    /// The user an unexpired activation token belongs to.
    async fn activation_user(&self, token_hash: &str, now: UnixMillis)
        -> Result<Option<UserRow>, StoreError>;
    async fn start_job(&self, job: &str, trigger: &str, at: UnixMillis) -> Result<i64, StoreError>;
    async fn finish_job(&self, id: i64, ok: bool, summary: &str, at: UnixMillis) -> Result<(), StoreError>;
    /// The latest runs: (job, trigger, started, finished, ok, summary), newest first.
    async fn job_runs(&self, limit: u32) -> Result<Vec<serde_json::Value>, StoreError>;
}

/// The connections of the store's pool, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open now (busy or idle).
    pub open: u32,
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// What observability reads: bounded aggregates for `/metrics` and the admin dashboard. Each
/// is one read query (no write, nothing to keep atomic), served by an index on time.
#[async_trait]
pub trait ObserveStore: Send + Sync {
    fn pool_use(&self) -> PoolUse;
    /// Users per tier.
    async fn tier_counts(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// How many distinct users have an event since `since`.
    async fn active_users_since(&self, since: UnixMillis) -> Result<u64, StoreError>;
    /// Counts per (minute since the epoch, kind) of the events since `since`, and of the
    /// accounts created since then as kind `signup`.
    async fn activity_counts(&self, since: UnixMillis) -> Result<Vec<(u64, String, u64)>, StoreError>;
    /// Counts per (kind, tier in the event's data, `none` without one) of the events since
    /// `since` whose kind is one of `kinds`.
    async fn usage_by_tier(
        &self,
        since: UnixMillis,
        kinds: &[&str],
    ) -> Result<Vec<(String, String, u64)>, StoreError>;
    /// Every user's security events since `since`, newest first, at most `limit`:
    /// (user id, event).
    async fn security_events_since(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<(String, SecurityEvent)>, StoreError>;
    /// The latest successful run of `job`: when it finished, and its summary.
    async fn last_successful_run(
        &self,
        job: &str,
    ) -> Result<Option<(UnixMillis, serde_json::Value)>, StoreError>;
}

/// Opens the store a database URL names, applying pending migrations.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if is_postgres(database_url) {
        Ok(Arc::new(PostgresStore::open(database_url).await?))
    } else {
        Ok(Arc::new(SqliteStore::open(database_url).await?))
    }
}

/// Whether a database URL names PostgreSQL (`postgres://` or `postgresql://`).
pub fn is_postgres(database_url: &str) -> bool {
    database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
}
