//! The data-rights operations' answers and bodies: consents, the export job, erasure and its
//! cancellation, a parent's consent to a child's signup. The origin builds the answers; the
//! edge reads what it acts on (an export's `location`, a pending export's `retry_after`, an
//! erasure's outcome to complete with what it did, the consents' `collects_events` for its
//! gate, the erasures whose edge wipe is still to do) and relays the rest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rights::{Purpose, Source};

/// One purpose's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Consent))]
pub struct ConsentView {
    pub purpose: Purpose,
    pub granted: bool,
    /// When it was set (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub at: String,
    pub source: Source,
    pub policy_version: String,
}

/// Every purpose's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Consents {
    pub consents: Vec<ConsentView>,
    /// Whether usage events are collected (the analytics consent); the edge stops collecting
    /// from the next request.
    pub collects_events: bool,
}

/// A change of consents: `{"consents": {"analytics": false}}`; purposes not named keep their
/// state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConsentsUpdate {
    pub consents: BTreeMap<String, bool>,
}

/// Whether an export's archive is built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExportState {
    Pending,
    Ready,
}

/// An export job (a new one, or the one still being built).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportStarted {
    pub export_id: String,
    pub status: ExportState,
    /// Where to GET the archive (also the Location header).
    pub location: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub requested_at: String,
}

/// An export whose archive is not ready yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExportPending {
    pub export_id: String,
    /// Always `pending`.
    pub status: ExportState,
    /// Seconds to wait before asking again (also the Retry-After header).
    pub retry_after: u64,
}

/// The body of an erasure request (optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Required from the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    /// The factor a code comes from, when one is enrolled (totp, sms, email, recovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Admins only: erase now instead of after ORIGIN_ERASURE_GRACE_DAYS.
    #[serde(default)]
    pub immediately: bool,
}

/// A scheduled erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErasureScheduled {
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub erasure_due_at: String,
    /// Where to cancel it (with the password).
    pub cancel: String,
    /// How many sessions the edge ended (set by the edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_ended: Option<u64>,
}

/// An erasure done at once (admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErasureDone {
    pub id: String,
    /// Always true.
    pub erased: bool,
    /// How many rows each table lost.
    pub purged: BTreeMap<String, u64>,
    /// Whether the edge wiped its part before answering (set by the edge; the scheduled job
    /// retries otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_wiped: Option<bool>,
}

/// The body that cancels a scheduled erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CancelErasure {
    pub password: String,
}

/// A cancelled erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErasureCancelled {
    pub id: String,
    /// Always true.
    pub erasure_cancelled: bool,
}

/// Erased users whose edge state (KV entry, Durable Object) is still to be wiped (internal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWipes {
    pub user_ids: Vec<String>,
}

/// A parent's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ParentalDecision {
    Grant,
    Refuse,
}

/// What a parent answers through the consent link (`decision`: `grant` or `refuse`; checked by
/// the origin, which names the field when it is neither).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ParentalAnswer {
    pub token: String,
    #[cfg_attr(feature = "openapi", schema(value_type = ParentalDecision))]
    pub decision: String,
}

/// What a parent's answer did: a grant enables the account (the method recorded), a refusal
/// erases it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParentalOutcome {
    pub id: String,
    pub decision: ParentalDecision,
    /// How the consent was given (`email_link`), on a grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub consented_at: Option<String>,
    /// True on a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased: Option<bool>,
}

/// The body of an export request (optional): the current password and, when a factor is
/// enrolled, a code from it; or nothing when the session stepped up (POST
/// /api/v1/auth/step-up) in the last 5 minutes, or for an admin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    /// The factor a code comes from (totp, sms, email, recovery_code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// Edge → origin: an export request, with what the edge adds (the session's step-up time, the
/// sessions its gate holds: they are part of the export).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the caller's session last stepped up (the edge reads it from the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up_at: Option<u64>,
    /// The user's sessions as the edge's gate holds them.
    #[serde(default)]
    pub sessions: serde_json::Value,
}
