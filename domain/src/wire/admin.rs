//! admin: the operations dashboard's numbers (`GET /admin/data`, and the data block of the
//! `/admin` page): what the origin reads from the store and answers, what the page draws.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tier::Tier;

/// Requests, logins and signups per minute over the last hour, oldest minute first
/// ([`crate::observe::ACTIVITY_MINUTES`] entries in every series).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// The start of each minute (Unix seconds), oldest first.
    pub minutes: Vec<u64>,
    pub requests: Vec<u64>,
    pub logins: Vec<u64>,
    pub failed_logins: Vec<u64>,
    pub signups: Vec<u64>,
}

/// Users, requests and refusals of one tier.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierUsage {
    pub tier: Tier,
    pub users: u64,
    /// API requests in the last hour.
    pub requests: u64,
    /// Requests refused for the tier's quota in the last hour.
    pub refusals: u64,
}

/// One of the latest security events (any user's).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentSecurityEvent {
    /// When (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub at: String,
    /// The security event's kind (`login_failure`, `mfa_success`, `session_evicted`, ...).
    pub kind: String,
    pub user_id: String,
}

/// The security section: the last `window_hours` hours of security events.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Security {
    pub window_hours: u64,
    pub failed_logins: u64,
    pub softlocks: u64,
    /// Second-factor outcomes: challenges asked, codes accepted, codes refused.
    pub mfa: BTreeMap<String, u64>,
    /// Risk scores of logins in buckets: `[label, count]` pairs, lowest bucket first.
    pub risk: Vec<(String, u64)>,
    pub recent: Vec<RecentSecurityEvent>,
    /// Whether more events happened in the window than the dashboard read.
    pub truncated: bool,
}

/// Data-rights requests, counted for the dashboard (no user named).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplianceCounts {
    /// Erasures scheduled and not yet run (in their grace period).
    pub erasures_pending: u64,
    /// Erasures run since the window's start.
    pub erasures_done: u64,
    /// Erased users whose edge state (KV, Durable Object) is still to be wiped.
    pub edge_wipes_pending: u64,
    /// Export archives being built.
    pub exports_building: u64,
    /// Export archives ready and not expired.
    pub exports_ready: u64,
    /// Consent records set or changed since the window's start.
    pub consent_changes: u64,
    /// Children's accounts waiting for a parent's consent.
    pub parental_pending: u64,
}

/// The compliance section.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compliance {
    /// In flight now, and done in the last 24 hours.
    pub counts: ComplianceCounts,
}

/// One signup cohort's retention.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    /// The cohort's month (`2026-11`).
    pub cohort: String,
    pub users: u64,
    /// The share of the cohort active in each 30-day period after signup, in [0, 1].
    pub retention: Vec<f64>,
}

/// The business section: what the last analytics and tier-analysis runs found.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Business {
    /// When `generate-analytics` last succeeded (RFC 3339), and what it found.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub analytics_at: Option<String>,
    pub segments: BTreeMap<String, u64>,
    pub churn_auc: Option<f64>,
    /// Users per churn-probability decile (0–10 %, …, 90–100 %), when a model was trained.
    pub churn_risk: Vec<u64>,
    pub cohorts: Vec<Cohort>,
    /// When `analyze-tiers` last succeeded (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub tiers_at: Option<String>,
    /// Its recommendations (`from->to`: users).
    pub recommendations: BTreeMap<String, u64>,
}

/// Everything the dashboard shows, read at `generated_at`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dashboard {
    /// When the numbers were read (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub generated_at: String,
    pub activity: Activity,
    /// One entry per tier.
    pub tiers: Vec<TierUsage>,
    pub security: Security,
    pub compliance: Compliance,
    pub business: Business,
}
