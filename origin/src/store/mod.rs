//! Storage behind a trait. Handlers and services see only [`Store`]; `sqlite` is the embedded
//! default, `postgres` the backend for several origin processes sharing one database. The
//! database URL's scheme chooses (`open`).
//!
//! The store moves rows, not meaning: sealing, validation and authorisation happen above it.

pub mod integrations;
pub mod migrate;
pub mod orgs;
mod postgres;
mod postgres_entitlements;
mod postgres_integrations;
mod postgres_lifecycle;
mod postgres_orgs;
mod postgres_personalisation;
mod sqlite;
mod sqlite_entitlements;
mod sqlite_integrations;
mod sqlite_lifecycle;
mod sqlite_orgs;
mod sqlite_personalisation;

use std::sync::Arc;

use async_trait::async_trait;
use domain::analytics::Activity;
use domain::time::UnixMillis;

pub use integrations::{IntegrationRow, IntegrationStore, LocalKeyRow};
pub use orgs::OrgStore;
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

/// What [`Store::for_each_user_activity`] hands each user's events to.
pub type ActivityVisitor<'v> = dyn for<'u, 'e> FnMut(&'u str, &'e [Activity]) + Send + 'v;

/// Groups a stream of (user id, activity) rows, ordered by user, into one call of `visit` per
/// user. Both backends feed it from their row streams.
pub(crate) struct ActivityGroups<'v> {
    user: String,
    events: Vec<Activity>,
    read: u64,
    visit: &'v mut ActivityVisitor<'v>,
}

impl<'v> ActivityGroups<'v> {
    pub(crate) fn new(visit: &'v mut ActivityVisitor<'v>) -> Self {
        Self { user: String::new(), events: Vec::new(), read: 0, visit }
    }

    pub(crate) fn push(&mut self, user: &str, activity: Activity) {
        if user != self.user {
            self.flush();
            user.clone_into(&mut self.user);
        }
        self.events.push(activity);
        self.read += 1;
    }

    fn flush(&mut self) {
        if !self.events.is_empty() {
            (self.visit)(&self.user, &self.events);
            // The buffer is reused: its capacity is the busiest user's so far, not the total.
            self.events.clear();
        }
    }

    /// Hands over the last user and answers how many events were read.
    pub(crate) fn finish(mut self) -> u64 {
        self.flush();
        self.read
    }
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
pub trait Store:
    ProtectionStore
    + PasskeyStore
    + EventStore
    + JobStore
    + LifecycleStore
    + RightsStore
    + ObserveStore
    + OrgStore
    + EntitlementStore
    + IntegrationStore
    + PersonalizationStore
    + Send
    + Sync
{
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

/// A WebAuthn credential as stored (see migration 0010).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRow {
    /// The credential id, base64url without padding.
    pub id: String,
    pub user_id: String,
    /// The user handle authenticators keep for the account (a UUID).
    pub user_handle: String,
    /// webauthn-rs's credential (public key, algorithm, counter, flags), JSON.
    pub passkey: String,
    pub counter: u32,
    pub aaguid: String,
    pub backup_eligible: bool,
    pub backup_state: bool,
    /// Created as a discoverable credential (usable without an email, for passwordless sign-in).
    pub discoverable: bool,
    /// JSON array of transports (`internal`, `usb`, `nfc`, `ble`, `hybrid`).
    pub transports: String,
    pub label: String,
    pub created_at: UnixMillis,
    pub last_used_at: Option<UnixMillis>,
}

/// What inserting a credential found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasskeyInsert {
    Inserted,
    /// The credential id is registered already (to this or another account).
    Duplicate,
    /// The account holds the most credentials it may.
    TooMany,
}

/// What a use of a credential moves: its counter (by compare-and-set), backup state, stored
/// credential and last use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyUse {
    pub expected_counter: u32,
    pub counter: u32,
    pub backup_state: bool,
    pub passkey: String,
    pub at: UnixMillis,
}

/// WebAuthn credentials.
#[async_trait]
pub trait PasskeyStore: Send + Sync {
    /// A user's credentials, oldest first.
    async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRow>, StoreError>;
    async fn passkey(&self, id: &str) -> Result<Option<PasskeyRow>, StoreError>;
    /// Inserts a credential if its id is new and the user holds fewer than `max`, atomically
    /// (two registrations racing cannot pass the limit together).
    async fn insert_passkey(&self, row: &PasskeyRow, max: usize) -> Result<PasskeyInsert, StoreError>;
    /// Records a verified use if the stored counter is still `expected_counter`: of two uses
    /// racing with the same counter, one moves it; false for the other (and for a removed one).
    async fn use_passkey(&self, id: &str, update: &PasskeyUse) -> Result<bool, StoreError>;
    /// Renames a user's credential; false if the user has no such credential.
    async fn rename_passkey(&self, user_id: &str, id: &str, label: &str) -> Result<bool, StoreError>;
    /// Removes a user's credential; false if the user has no such credential.
    async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool, StoreError>;
}

/// A behavioural event as stored: the wire's record.
pub use domain::wire::event::Event as EventRow;

/// An event kind read back from the store; a name that is no kind is a corrupt row.
pub(crate) fn event_kind(name: &str) -> Result<domain::wire::event::EventKind, sqlx::Error> {
    name.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
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
    /// Every user's events (kind, class, at) in `[from, to)`, streamed from the database and
    /// handed to `visit` one user at a time (users in id order, each user's events by time):
    /// only one user's events are ever in memory. Answers how many events were read.
    async fn for_each_user_activity(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        visit: &mut ActivityVisitor<'_>,
    ) -> Result<u64, StoreError>;
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
    async fn job_runs(&self, limit: u32) -> Result<Vec<domain::wire::job::JobRun>, StoreError>;
}

/// A message stored in the outbox before any attempt to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Random; the message's idempotency key.
    pub id: String,
    pub user_id: String,
    /// `email` or `sms`.
    pub channel: String,
    /// The message (address, subject, text, code), sealed with the user's data key.
    pub message_sealed: Vec<u8>,
    pub created_at: UnixMillis,
}

/// A message a dispatcher claimed: no other dispatcher tries it until the lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMessage {
    pub row: OutboxRow,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// A single-use code as stored (its hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    pub code_hash: String,
    pub user_id: String,
    /// `password_reset` or `email_verification`.
    pub purpose: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
}

/// What a password reset writes, in one transaction.
#[derive(Debug, Clone)]
pub struct PasswordReset<'a> {
    pub code_hash: &'a str,
    pub user_id: &'a str,
    pub password_hash: &'a str,
    pub now: UnixMillis,
    pub audit: &'a AuditEntry,
    /// Short-lived state to delete (the account's softlock counters): exact keys, and prefixes
    /// (every key starting with one).
    pub state_keys: &'a [String],
    pub state_prefixes: &'a [String],
    pub security_event: (&'a str, &'a str),
    pub notice: &'a OutboxRow,
}

/// The account lifecycle: the durable outbox, single-use codes (password reset, email
/// verification), and retention.
#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Stores a message to send: its first attempt is the storing origin's (a kick); the
    /// sweep takes it after `domain::delivery::SWEEP_GRACE_MS`.
    async fn enqueue_message(&self, message: &OutboxRow) -> Result<(), StoreError>;
    /// Claims message `id` until `lease_until` if it is unsent, not given up, and unclaimed
    /// (or its claim ran out): of dispatchers racing, one gets it.
    async fn claim_message(
        &self,
        id: &str,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<Option<ClaimedMessage>, StoreError>;
    /// Claims up to `limit` messages due at `now`, oldest first.
    async fn claim_due(
        &self,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>, StoreError>;
    /// Marks a claimed message sent (one more attempt). False if it was not claimed (any more).
    async fn message_sent(&self, id: &str, at: UnixMillis) -> Result<bool, StoreError>;
    /// Records a failed attempt: the next attempt's time, or `None` to give up (kept, marked
    /// failed). `error` names the kind of failure, never the provider's text.
    async fn message_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<UnixMillis>,
        at: UnixMillis,
    ) -> Result<(), StoreError>;
    /// Messages by state: (waiting, sent, failed).
    async fn outbox_counts(&self) -> Result<(u64, u64, u64), StoreError>;

    /// Stores a single-use code and the message that carries it, in one transaction, unless
    /// the user already has `max_recent` codes of that purpose created after `recent_after`
    /// (then nothing is stored and it answers false).
    async fn issue_code(
        &self,
        code: &CodeRow,
        max_recent: u32,
        recent_after: UnixMillis,
        message: &OutboxRow,
    ) -> Result<bool, StoreError>;
    /// The user an unused, unexpired code of `purpose` belongs to.
    async fn code_user(
        &self,
        code_hash: &str,
        purpose: &str,
        now: UnixMillis,
    ) -> Result<Option<String>, StoreError>;
    /// Uses the reset code and sets the password, in one transaction: the code (and every
    /// other unused reset code of the user) is used, the password hash replaced, the audit
    /// entry, the security event and the notice written, the softlock state deleted. False
    /// (nothing written) if the code is not an unused, unexpired reset code of the user.
    async fn reset_password(&self, reset: &PasswordReset<'_>) -> Result<bool, StoreError>;
    /// Uses a verification code and marks the user's email verified (a new version), with an
    /// audit entry, in one transaction. False if the code is not an unused, unexpired
    /// verification code of the user.
    async fn verify_email(
        &self,
        code_hash: &str,
        user_id: &str,
        now: UnixMillis,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;

    /// Applies the retention rule of `class` with its cutoff (data older than it goes), for
    /// the classes this trait owns; answers the rows removed (or summarised).
    async fn apply_retention(
        &self,
        class: domain::retention::DataClass,
        cutoff: UnixMillis,
    ) -> Result<u64, StoreError>;
}

/// An export job as stored (its archive apart: it is read only to be downloaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRow {
    pub id: String,
    pub user_id: String,
    pub requested_by: String,
    pub created_at: UnixMillis,
    pub ready_at: Option<UnixMillis>,
    pub expires_at: Option<UnixMillis>,
    pub downloads: u32,
}

impl ExportRow {
    pub fn state(&self) -> domain::rights::ExportState {
        domain::rights::ExportState {
            ready: self.ready_at.is_some(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            downloads: self.downloads,
        }
    }
}

/// An erasure asked for and not yet run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRequest {
    pub asked_at: UnixMillis,
    pub due_at: UnixMillis,
    pub requested_by: String,
}

/// What remains of an erased user: no personal data (`subject` is a keyed hash of the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    pub subject: String,
    pub asked_at: UnixMillis,
    pub ran_at: UnixMillis,
    pub requested_by: String,
    /// Rows deleted per table, as JSON.
    pub purged: String,
}

/// The tables an erasure deletes a user's rows from, children first; `users` last.
pub const ERASED_TABLES: &[&str] = &[
    "org_invitations",
    "org_members",
    "org_audit",
    "usage_counters",
    "usage_reports",
    "integrations",
    "integration_keys",
    "taste_profiles",
    "moods",
    "custom_models",
    "federated_updates",
    "webauthn_credentials",
    "outbox",
    "one_time_codes",
    "consents",
    "parental_consents",
    "exports",
    "erasure_requests",
    "activations",
    "recovery_codes",
    "mfa_totp",
    "mfa_sms",
    "login_history",
    "security_events",
    "audit_log",
    "events",
    "auth_state",
    "sms_send_counts",
];

/// Consents, exports and erasures (issue 13).
#[async_trait]
pub trait RightsStore: Send + Sync {
    /// The consent records a user (or a signal) set, one per purpose.
    async fn consents(&self, user_id: &str) -> Result<Vec<domain::rights::Consent>, StoreError>;
    /// Sets each consent's state and appends `audit`, in one transaction.
    async fn put_consents(
        &self,
        user_id: &str,
        consents: &[domain::rights::Consent],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError>;
    /// Starts an export, atomically with respect to other starts for the same user: the user's
    /// newest export is kept when `reuse` says so (a job still running), else `new` is inserted
    /// with `audit`. Answers the export and whether it is new; `None` when there is no such user.
    async fn start_export(
        &self,
        new: &ExportRow,
        reuse: &(dyn for<'r> Fn(&'r ExportRow) -> bool + Send + Sync),
        audit: &AuditEntry,
    ) -> Result<Option<(ExportRow, bool)>, StoreError>;
    /// Stores a finished archive; false when the export is gone (its user erased meanwhile).
    async fn finish_export(
        &self,
        id: &str,
        archive_sealed: &[u8],
        ready_at: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<bool, StoreError>;
    async fn export(&self, id: &str) -> Result<Option<ExportRow>, StoreError>;
    /// Counts one download of a ready export and answers its sealed archive, in one statement,
    /// unless it expired by `now` or was downloaded `max` times already (then `None`).
    async fn take_export(&self, id: &str, now: UnixMillis, max: u32) -> Result<Option<Vec<u8>>, StoreError>;

    /// Schedules an erasure (replacing an earlier request) with `audit`, in one transaction.
    async fn request_erasure(
        &self,
        user_id: &str,
        request: &ErasureRequest,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    async fn erasure_request(&self, user_id: &str) -> Result<Option<ErasureRequest>, StoreError>;
    /// Cancels a scheduled erasure with `audit`; false when none was scheduled.
    async fn cancel_erasure(&self, user_id: &str, audit: &AuditEntry) -> Result<bool, StoreError>;
    /// Users whose scheduled erasure is due at `now`.
    async fn due_erasures(&self, now: UnixMillis, limit: u32) -> Result<Vec<String>, StoreError>;
    /// Deletes every row about the user ([`ERASED_TABLES`], then the user), records `record`
    /// (its `purged` filled with the counts) and the edge's pending wipe, in one transaction.
    /// `None` when there is no such user (erased already).
    async fn erase_user(
        &self,
        user_id: &str,
        record: &ErasureRecord,
    ) -> Result<Option<std::collections::BTreeMap<String, u64>>, StoreError>;
    async fn erasure_record(&self, subject: &str) -> Result<Option<ErasureRecord>, StoreError>;
    /// Users erased whose edge state (KV entry, Durable Object) is still to be wiped.
    async fn pending_edge_wipes(&self, limit: u32) -> Result<Vec<String>, StoreError>;
    /// The edge wiped the user's state: the last row naming the id goes.
    async fn edge_wiped(&self, user_id: &str) -> Result<bool, StoreError>;

    /// A child's account waits for a parent's consent through a link (its token's hash).
    async fn put_parental_request(
        &self,
        user_id: &str,
        token_hash: &str,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError>;
    /// Consumes an unexpired link, in one statement (single use); the child's user id.
    async fn take_parental_request(
        &self,
        token_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<String>, StoreError>;
    /// Children whose parent did not answer in time.
    async fn expired_parental_requests(&self, now: UnixMillis, limit: u32)
        -> Result<Vec<String>, StoreError>;
}

/// A user's taste profile as stored, with the cursor of the last listening event it learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TasteRow {
    /// `domain::personalization::TasteProfile`, JSON.
    pub profile: String,
    pub cursor_at: u64,
    pub cursor_id: String,
    pub updated_at: UnixMillis,
}

/// What saving a profile does to the user's mood, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoodWrite {
    /// `domain::personalization::MoodReading`, JSON.
    Set(String),
    /// Mood detection or the consent is off: no mood may be kept.
    Delete,
    /// No new mood (no new full play): the stored one stays.
    Keep,
}

/// The federated model's state: the open round, the weights, the accountant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedRow {
    pub round: u64,
    /// The weights (five features, then the bias), JSON.
    pub weights: String,
    /// `domain::federated::Accountant`, JSON.
    pub accountant: String,
    pub opened_at: UnixMillis,
}

/// What adding a client's update found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateAdded {
    Added,
    /// The client sent an update for this round already.
    Duplicate,
    /// The round is not the open one; the open one is this.
    WrongRound(u64),
}

/// What closing a round writes: the new weights and accountant (unchanged when it did not
/// aggregate) and the outcome recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundClose {
    pub weights: String,
    pub accountant: String,
    /// `aggregated` or `too_few_clients`.
    pub outcome: String,
}

/// Personalisation (issue 17): the catalogue, taste profiles, moods, personal models and the
/// federated rounds.
#[async_trait]
pub trait PersonalizationStore: Send + Sync {
    /// Inserts or replaces catalogue tracks; answers how many were written.
    async fn put_catalogue(
        &self,
        tracks: &[domain::personalization::CatalogueTrack],
    ) -> Result<u64, StoreError>;
    async fn catalogue(&self) -> Result<Vec<domain::personalization::CatalogueTrack>, StoreError>;
    async fn taste(&self, user_id: &str) -> Result<Option<TasteRow>, StoreError>;
    /// The user's listening events after the cursor `(at, id)`, oldest first, at most `limit`.
    async fn listening_after(
        &self,
        user_id: &str,
        cursor: (u64, &str),
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError>;
    /// The user's latest listening events, newest first.
    async fn recent_listening(&self, user_id: &str, limit: u32) -> Result<Vec<EventRow>, StoreError>;
    /// Users with a listening event after `since` (the profile job's work list).
    async fn listeners_since(&self, since: UnixMillis) -> Result<Vec<String>, StoreError>;
    /// Stores the profile if the stored cursor is still `expected` (`None`: no profile yet),
    /// and applies `mood`, in one transaction: of two jobs learning the same events, one
    /// stores. False when the cursor moved meanwhile (or the user is gone).
    async fn save_taste(
        &self,
        user_id: &str,
        row: &TasteRow,
        expected: Option<(u64, &str)>,
        mood: &MoodWrite,
    ) -> Result<bool, StoreError>;
    /// The user's mood and when it was detected.
    async fn mood(&self, user_id: &str) -> Result<Option<(String, UnixMillis)>, StoreError>;
    /// Deletes the user's mood; false when there was none.
    async fn delete_mood(&self, user_id: &str) -> Result<bool, StoreError>;
    async fn put_custom_model(&self, user_id: &str, model: &str, at: UnixMillis) -> Result<(), StoreError>;
    async fn custom_model(&self, user_id: &str) -> Result<Option<String>, StoreError>;

    /// How many users granted the `federated_learning` consent (a round's sampling rate is its
    /// clients over these).
    async fn federated_eligible(&self) -> Result<u64, StoreError>;
    /// The federated state, created as round 1 with `initial` weights and accountant if absent.
    async fn federated(&self, initial: &FederatedRow) -> Result<FederatedRow, StoreError>;
    /// Adds a client's update to `round` if it is the open round, once per client, atomically
    /// with respect to the round's closing.
    async fn add_federated_update(
        &self,
        round: u64,
        user_id: &str,
        delta: &str,
        at: UnixMillis,
    ) -> Result<UpdateAdded, StoreError>;
    /// Closes the open round in one transaction: hands its updates to `close`, stores the
    /// result, opens the next round, records the outcome with `eligible`, and deletes the
    /// round's updates (aggregated or not, no update outlives its round). Answers the closed
    /// round, how many clients took part, and the new state.
    async fn close_federated_round(
        &self,
        eligible: u64,
        now: UnixMillis,
        close: &(dyn for<'a> Fn(&'a FederatedRow, &'a [String]) -> RoundClose + Send + Sync),
    ) -> Result<(u64, usize, FederatedRow), StoreError>;
}

/// Data-rights requests, counted for the dashboard (no user named): a wire type.
pub use domain::wire::admin::ComplianceCounts;

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
    /// The data-rights work in flight at `now` and done since `since` (the dashboard's compliance).
    async fn compliance_counts(
        &self,
        since: UnixMillis,
        now: UnixMillis,
    ) -> Result<ComplianceCounts, StoreError>;
}

/// A service client as stored (its secret only as a keyed hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceClientRow {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    /// Space-delimited scopes (`domain::oauth::Scope`).
    pub scopes: String,
    pub created_at: UnixMillis,
    pub revoked_at: Option<UnixMillis>,
}

/// A usage report to apply: `delta` to the user's `resource`, decided under `limit` by
/// `domain::entitlements::decide`, once per (client, idempotency key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageChange<'a> {
    pub client_id: &'a str,
    pub idempotency_key: &'a str,
    pub user_id: &'a str,
    pub resource: &'a str,
    pub delta: i64,
    pub limit: Option<u64>,
    pub now: UnixMillis,
    /// Reports answered before this are forgotten (their keys count again).
    pub forget_before: UnixMillis,
}

/// A report's answer as stored: what a retry with the same key is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReportRow {
    pub user_id: String,
    pub resource: String,
    pub delta: i64,
    pub admitted: bool,
    /// The total after the report (admitted) or the unchanged one (refused).
    pub used: u64,
    pub limit: Option<u64>,
    pub created_at: UnixMillis,
}

/// What applying a usage report found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageApplied {
    /// Decided and recorded now (counted if admitted).
    New(UsageReportRow),
    /// The key was answered before: that answer, nothing counted. It may be another report's
    /// (another user, resource or delta): the caller compares.
    Replayed(UsageReportRow),
    NoUser,
}

/// Service clients and metering (issue 19).
#[async_trait]
pub trait EntitlementStore: Send + Sync {
    async fn insert_service_client(&self, row: &ServiceClientRow) -> Result<(), StoreError>;
    async fn service_client(&self, id: &str) -> Result<Option<ServiceClientRow>, StoreError>;
    /// Every client, oldest first.
    async fn service_clients(&self) -> Result<Vec<ServiceClientRow>, StoreError>;
    /// Revokes a client; false when there is no such client or it was revoked already.
    async fn revoke_service_client(&self, id: &str, at: UnixMillis) -> Result<bool, StoreError>;
    /// What a user uses of each resource they ever reported: (resource, used, updated_at).
    async fn usage(&self, user_id: &str) -> Result<Vec<(String, u64, UnixMillis)>, StoreError>;
    /// Applies a report atomically: under the user's counter's lock (`FOR UPDATE` on
    /// PostgreSQL, the write lock on SQLite) a key already answered gets its answer back;
    /// otherwise the decision is taken on the current count, the count moved if admitted and
    /// the answer recorded under the key, in one transaction.
    async fn apply_usage(&self, change: &UsageChange<'_>) -> Result<UsageApplied, StoreError>;
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
