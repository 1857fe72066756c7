//! Data rights: consents (GDPR art. 6–7, CCPA opt-out of sale/sharing), the export archive's
//! rules (GDPR art. 20 portability) and the erasure's timing (GDPR art. 17). Pure functions of
//! their inputs; the origin stores, the edge enforces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::time::UnixMillis;

/// The privacy policy version a consent given today refers to.
pub const POLICY_VERSION: &str = "2026-11";

/// What a user may consent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// First-party usage events (the edge's behavioural events) and the insights built on them.
    Analytics,
    Personalization,
    Marketing,
    FederatedLearning,
    /// Sharing with third-party integrations: what CCPA calls sale or sharing.
    ThirdPartyIntegrations,
}

pub const PURPOSES: [Purpose; 5] = [
    Purpose::Analytics,
    Purpose::Personalization,
    Purpose::Marketing,
    Purpose::FederatedLearning,
    Purpose::ThirdPartyIntegrations,
];

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analytics => "analytics",
            Self::Personalization => "personalization",
            Self::Marketing => "marketing",
            Self::FederatedLearning => "federated_learning",
            Self::ThirdPartyIntegrations => "third_party_integrations",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        PURPOSES.iter().copied().find(|p| p.as_str() == raw)
    }

    /// Whether a `Sec-GPC: 1` signal (Global Privacy Control) withdraws this purpose: the
    /// CCPA opt-out of sale and sharing covers sharing with third parties and cross-context
    /// advertising (marketing).
    pub fn covered_by_gpc(self) -> bool {
        matches!(self, Self::Marketing | Self::ThirdPartyIntegrations)
    }

    /// The state of a purpose nobody chose yet. First-party analytics and personalisation
    /// are part of the service (and can be withdrawn at any time); anything that reaches
    /// beyond it — marketing, federated training, third parties — needs an opt-in. A minor
    /// gets personalisation off too.
    pub fn default_granted(self, minor: bool) -> bool {
        match self {
            Self::Analytics => true,
            Self::Personalization => !minor,
            Self::Marketing | Self::FederatedLearning | Self::ThirdPartyIntegrations => false,
        }
    }
}

/// Where a consent's state came from: `default` (never chosen), `user` (set through this API)
/// or `gpc` (a `Sec-GPC: 1` signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The default at signup (never asked).
    Default,
    /// The user's own choice through the API.
    User,
    /// A Global Privacy Control signal (`Sec-GPC: 1`).
    Gpc,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::User => "user",
            Self::Gpc => "gpc",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Default, Self::User, Self::Gpc].into_iter().find(|s| s.as_str() == raw)
    }
}

/// One purpose's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub purpose: Purpose,
    pub granted: bool,
    pub at: UnixMillis,
    pub source: Source,
    pub policy_version: String,
}

/// Every purpose's state: the stored records, and the default for each purpose never recorded
/// (dated at the account's creation).
pub fn effective(stored: &[Consent], created_at: UnixMillis, minor: bool) -> Vec<Consent> {
    let by_purpose: BTreeMap<Purpose, &Consent> = stored.iter().map(|c| (c.purpose, c)).collect();
    PURPOSES
        .iter()
        .map(|&p| match by_purpose.get(&p) {
            Some(c) => (*c).clone(),
            None => Consent {
                purpose: p,
                granted: p.default_granted(minor),
                at: created_at,
                source: Source::Default,
                policy_version: POLICY_VERSION.to_owned(),
            },
        })
        .collect()
}

/// Why a consent change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct ConsentError {
    pub field: String,
    pub detail: String,
}

/// The changes a `PUT …/consents` body asks for: `{"consents": {"<purpose>": bool, …}}`.
/// Every purpose named must be known and every value a boolean; purposes not named keep their
/// state. The changes are dated `now`, from the user, under the current policy.
pub fn parse_changes(body: &Value, now: UnixMillis) -> Result<Vec<Consent>, Vec<ConsentError>> {
    let err = |field: &str, detail: &str| ConsentError { field: field.to_owned(), detail: detail.to_owned() };
    let Some(object) = body.as_object() else {
        return Err(vec![err("", "the body must be a JSON object")]);
    };
    let mut errors = Vec::new();
    for key in object.keys() {
        if key != "consents" {
            errors.push(err(key, "unknown field (send {\"consents\": {\"<purpose>\": true|false}})"));
        }
    }
    let Some(asked) = object.get("consents").and_then(Value::as_object) else {
        errors.push(err("consents", "required: an object of purpose → true|false"));
        return Err(errors);
    };
    let mut changes = Vec::new();
    for (name, value) in asked {
        let field = format!("consents.{name}");
        match (Purpose::parse(name), value.as_bool()) {
            (None, _) => errors.push(err(
                &field,
                &format!(
                    "unknown purpose; one of {}",
                    PURPOSES.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )),
            (Some(_), None) => errors.push(err(&field, "must be true or false")),
            (Some(purpose), Some(granted)) => changes.push(Consent {
                purpose,
                granted,
                at: now,
                source: Source::User,
                policy_version: POLICY_VERSION.to_owned(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// The records a `Sec-GPC: 1` signal writes: each purpose it covers that is still granted
/// becomes withdrawn, with the signal as its source. Nothing when all are already withdrawn,
/// so a signal sent on every request records once.
pub fn gpc_changes(current: &[Consent], now: UnixMillis) -> Vec<Consent> {
    current
        .iter()
        .filter(|c| c.purpose.covered_by_gpc() && c.granted)
        .map(|c| Consent {
            purpose: c.purpose,
            granted: false,
            at: now,
            source: Source::Gpc,
            policy_version: POLICY_VERSION.to_owned(),
        })
        .collect()
}

/// Whether the edge may collect usage events about the user.
pub fn collects_events(current: &[Consent]) -> bool {
    current.iter().find(|c| c.purpose == Purpose::Analytics).is_none_or(|c| c.granted)
}

/// The export archive's format version (`manifest.json`'s `format_version`).
pub const EXPORT_FORMAT_VERSION: u32 = 1;
/// How long a finished export can be downloaded.
pub const EXPORT_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// How many times a finished export can be downloaded.
pub const EXPORT_MAX_DOWNLOADS: u32 = 3;
/// A job still pending after this long died with its process: a new request starts afresh.
pub const EXPORT_STALE_MS: u64 = 10 * 60 * 1000;

/// The sections of an export, each one JSON file in the archive, in this order.
pub const EXPORT_SECTIONS: &[&str] = &[
    "profile",
    "security_settings",
    "ai_preferences",
    "tier_history",
    "sessions",
    "login_history",
    "security_events",
    "audit_trail",
    "consents",
    "mfa_factors",
    "analytics_events",
    "insights",
    "organization",
    "usage",
    "integrations",
    "personalization",
];

/// An export as stored, seen by the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportState {
    pub ready: bool,
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub downloads: u32,
}

/// What a request for an export finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStatus {
    /// Still being built.
    Pending,
    /// The job died (its process stopped): ask again.
    Failed,
    Ready,
    Expired,
    /// Downloaded as many times as allowed.
    Exhausted,
}

pub fn export_status(export: &ExportState, now: UnixMillis) -> ExportStatus {
    if !export.ready {
        return if now.0.saturating_sub(export.created_at.0) > EXPORT_STALE_MS {
            ExportStatus::Failed
        } else {
            ExportStatus::Pending
        };
    }
    match export.expires_at {
        Some(expiry) if now >= expiry => ExportStatus::Expired,
        _ if export.downloads >= EXPORT_MAX_DOWNLOADS => ExportStatus::Exhausted,
        _ => ExportStatus::Ready,
    }
}

/// Whether a new export request reuses `existing` instead of starting another job: a job still
/// running is reused (two clicks make one archive); a finished, failed or used-up one is not.
pub fn reuses(existing: &ExportState, now: UnixMillis) -> bool {
    export_status(existing, now) == ExportStatus::Pending
}

/// A section's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionEntry {
    pub name: String,
    pub file: String,
    /// Records in the section (1 for a single object).
    pub count: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// A section's file: its JSON bytes and its manifest entry. The count is the length of an
/// array, the size of the section's `items` array if it has one, else 1.
pub fn section(name: &str, content: &Value) -> (Vec<u8>, SectionEntry) {
    let bytes = serde_json::to_vec_pretty(content).unwrap_or_default();
    let count = match content {
        Value::Array(items) => items.len() as u64,
        Value::Object(o) => o.get("items").and_then(Value::as_array).map_or(1, |a| a.len() as u64),
        Value::Null => 0,
        _ => 1,
    };
    let entry = SectionEntry {
        name: name.to_owned(),
        file: format!("{name}.json"),
        count,
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    (bytes, entry)
}

/// `manifest.json`: what the archive holds and how to check it.
pub fn manifest(user_id: &str, generated_at_rfc3339: &str, sections: &[SectionEntry]) -> Value {
    json!({
        "format_version": EXPORT_FORMAT_VERSION,
        "user_id": user_id,
        "generated_at": generated_at_rfc3339,
        "sections": sections,
    })
}

/// The default grace period before a requested erasure runs.
pub const DEFAULT_ERASURE_GRACE_DAYS: u64 = 14;

/// When an erasure asked at `asked_at` runs.
pub fn erasure_due(asked_at: UnixMillis, grace_days: u64) -> UnixMillis {
    asked_at.saturating_add_ms(grace_days.saturating_mul(86_400_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent(purpose: Purpose, granted: bool) -> Consent {
        Consent { purpose, granted, at: UnixMillis(5), source: Source::User, policy_version: "x".into() }
    }

    #[test]
    fn effective_consents_fill_every_purpose_with_its_default() {
        let all = effective(&[consent(Purpose::Marketing, true)], UnixMillis(1), false);
        assert_eq!(all.len(), PURPOSES.len());
        let state: BTreeMap<Purpose, (bool, Source)> =
            all.iter().map(|c| (c.purpose, (c.granted, c.source))).collect();
        assert_eq!(state[&Purpose::Marketing], (true, Source::User));
        assert_eq!(state[&Purpose::Analytics], (true, Source::Default));
        assert_eq!(state[&Purpose::Personalization], (true, Source::Default));
        assert_eq!(state[&Purpose::FederatedLearning], (false, Source::Default));
        assert_eq!(state[&Purpose::ThirdPartyIntegrations], (false, Source::Default));
        let minor = effective(&[], UnixMillis(1), true);
        assert!(!minor.iter().any(|c| c.purpose == Purpose::Personalization && c.granted));
        assert!(!minor.iter().any(|c| c.purpose == Purpose::Marketing && c.granted));
    }

    #[test]
    fn changes_name_known_purposes_with_booleans_only() {
        let ok =
            parse_changes(&json!({ "consents": { "analytics": false, "marketing": true } }), UnixMillis(9));
        let ok = ok.unwrap_or_default();
        assert_eq!(ok.len(), 2);
        assert!(ok.iter().all(|c| c.source == Source::User && c.at == UnixMillis(9)));
        let bad =
            parse_changes(&json!({ "consents": { "spam": true, "analytics": "no" }, "x": 1 }), UnixMillis(9));
        let fields: Vec<String> = bad.err().unwrap_or_default().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["x", "consents.analytics", "consents.spam"]);
        assert!(parse_changes(&json!({}), UnixMillis(0)).is_err());
        assert!(parse_changes(&json!([]), UnixMillis(0)).is_err());
    }

    #[test]
    fn gpc_withdraws_sale_and_sharing_once() {
        let current = effective(
            &[consent(Purpose::Marketing, true), consent(Purpose::ThirdPartyIntegrations, true)],
            UnixMillis(1),
            false,
        );
        let changes = gpc_changes(&current, UnixMillis(7));
        let purposes: Vec<Purpose> = changes.iter().map(|c| c.purpose).collect();
        assert_eq!(purposes, vec![Purpose::Marketing, Purpose::ThirdPartyIntegrations]);
        assert!(changes.iter().all(|c| !c.granted && c.source == Source::Gpc));
        let after: Vec<Consent> = effective(&changes, UnixMillis(1), false);
        assert!(gpc_changes(&after, UnixMillis(8)).is_empty());
        // Analytics is first-party: not sale or sharing.
        assert!(collects_events(&after));
        assert!(!collects_events(&[consent(Purpose::Analytics, false)]));
    }

    #[test]
    fn an_export_is_pending_then_ready_until_it_expires_or_is_used_up() {
        let mut e = ExportState { ready: false, created_at: UnixMillis(0), expires_at: None, downloads: 0 };
        assert_eq!(export_status(&e, UnixMillis(1000)), ExportStatus::Pending);
        assert!(reuses(&e, UnixMillis(1000)));
        assert_eq!(export_status(&e, UnixMillis(EXPORT_STALE_MS + 1)), ExportStatus::Failed);
        assert!(!reuses(&e, UnixMillis(EXPORT_STALE_MS + 1)));
        e.ready = true;
        e.expires_at = Some(UnixMillis(EXPORT_TTL_MS));
        assert_eq!(export_status(&e, UnixMillis(EXPORT_TTL_MS - 1)), ExportStatus::Ready);
        assert!(!reuses(&e, UnixMillis(1)));
        assert_eq!(export_status(&e, UnixMillis(EXPORT_TTL_MS)), ExportStatus::Expired);
        e.downloads = EXPORT_MAX_DOWNLOADS;
        assert_eq!(export_status(&e, UnixMillis(5)), ExportStatus::Exhausted);
    }

    #[test]
    fn sections_count_their_records_and_hash_their_bytes() {
        let (bytes, entry) = section("sessions", &json!([{ "a": 1 }, { "a": 2 }]));
        assert_eq!(entry.count, 2);
        assert_eq!(entry.file, "sessions.json");
        assert_eq!(entry.bytes, bytes.len() as u64);
        assert_eq!(entry.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(section("profile", &json!({ "id": "u" })).1.count, 1);
        assert_eq!(section("insights", &json!({ "items": [1, 2, 3] })).1.count, 3);
        let m = manifest("usr_x", "2026-11-25T00:00:00Z", &[entry]);
        assert_eq!(m["format_version"], EXPORT_FORMAT_VERSION);
        assert_eq!(m["sections"][0]["name"], "sessions");
    }

    #[test]
    fn erasure_runs_after_the_grace_period() {
        assert_eq!(erasure_due(UnixMillis(10), 14), UnixMillis(10 + 14 * 86_400_000));
        assert_eq!(erasure_due(UnixMillis(10), 0), UnixMillis(10));
    }
}
