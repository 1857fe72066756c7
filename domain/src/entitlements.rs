//! Entitlements and metering: what a user may do now, from their tier (the templates in
//! `domain/profiles/`), their consents (`domain::rights`) and, once they belong to one, their
//! organization; and the decision on each usage report a platform service sends.
//!
//! The rules:
//! - A metered resource (playlists, storage bytes) has a limit from the tier (`None`:
//!   unlimited). A report adds a signed `delta` to what is used: a positive delta is admitted
//!   only if the new total stays within the limit, else refused naming the limit (nothing is
//!   counted); a negative delta is always admitted (deleting is never refused) and the count
//!   never goes below zero.
//! - A downgrade deletes nothing: what is used may then exceed the new limit. The resource is
//!   then **read-only** (kept and readable; nothing can be added until the count is back within
//!   the limit), and the entitlements say so.
//! - Consents narrow what the tier allows: AI personalization (and custom model training on the
//!   user's data) needs the `personalization` consent, federated learning its own opt-in, and
//!   sharing data with connected third parties the `third_party_integrations` consent.
//! - An organization (issue 19's other half) supplies the tier its members have while they
//!   belong to it and may narrow the integrations they may connect: [`OrgGrant`] is that hook.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rights::{Consent, Purpose};
use crate::tier::Tier;

/// A template's `storage_mb` is in decimal megabytes (the product description's "100 MB").
pub const BYTES_PER_MB: u64 = 1_000_000;

/// The largest delta one report may carry (a petabyte), so totals never near `u64::MAX`.
pub const MAX_DELTA: i64 = 1_000_000_000_000_000;

/// The longest idempotency key a report may carry.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// How long an idempotency key is remembered: a retry within it gets the first answer.
pub const IDEMPOTENCY_RETENTION_MS: u64 = 24 * 3_600_000;

/// A platform service's requests per rolling minute, per service client, at the edge.
pub const SERVICE_REQUESTS_PER_MINUTE: u32 = 1_200;

/// What is metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Resource {
    Playlists,
    StorageBytes,
}

pub const RESOURCES: [Resource; 2] = [Resource::Playlists, Resource::StorageBytes];

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Playlists => "playlists",
            Self::StorageBytes => "storage_bytes",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        RESOURCES.into_iter().find(|r| r.as_str() == raw)
    }

    /// The tier's limit of this resource (`None`: unlimited), in its unit (playlists, bytes).
    pub fn limit(self, tier: Tier) -> Option<u64> {
        let limits = tier.limits();
        match self {
            Self::Playlists => limits.playlists.map(u64::from),
            Self::StorageBytes => limits.storage_mb.map(|mb| mb.saturating_mul(BYTES_PER_MB)),
        }
    }
}

/// What a user uses of each metered resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub playlists: u64,
    pub storage_bytes: u64,
}

impl Usage {
    pub fn of(&self, resource: Resource) -> u64 {
        match resource {
            Resource::Playlists => self.playlists,
            Resource::StorageBytes => self.storage_bytes,
        }
    }
}

/// The decision on one usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageDecision {
    /// Counted: `used` is the new total.
    Admitted { used: u64 },
    /// Over the limit: nothing counted; `used` is unchanged.
    Refused { used: u64, limit: u64 },
}

/// Whether `delta` may be added to `used` under `limit`. Negative deltas are always admitted
/// (floored at zero); a positive one only if the new total stays within the limit.
pub fn decide(used: u64, delta: i64, limit: Option<u64>) -> UsageDecision {
    if delta <= 0 {
        return UsageDecision::Admitted { used: used.saturating_sub(delta.unsigned_abs()) };
    }
    let total = used.saturating_add(delta.unsigned_abs());
    match limit {
        Some(limit) if total > limit => UsageDecision::Refused { used, limit },
        _ => UsageDecision::Admitted { used: total },
    }
}

/// A resource is read-only while what is used exceeds the limit (after a downgrade).
pub fn read_only(used: u64, limit: Option<u64>) -> bool {
    limit.is_some_and(|l| used > l)
}

/// A usage report as a service sends it: `{"resource", "delta", "idempotency_key"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    pub resource: Resource,
    pub delta: i64,
    pub idempotency_key: String,
}

/// One field's problem in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}

/// Parses and checks a report body; every problem found is named.
pub fn parse_report(body: &Value) -> Result<UsageReport, Vec<FieldError>> {
    let err = |field: &str, detail: &str| FieldError { field: field.to_owned(), detail: detail.to_owned() };
    let Some(object) = body.as_object() else {
        return Err(vec![err("", "the body must be a JSON object")]);
    };
    let mut errors: Vec<FieldError> = object
        .keys()
        .filter(|k| !["resource", "delta", "idempotency_key"].contains(&k.as_str()))
        .map(|k| err(k, "unknown field"))
        .collect();
    let resource = object.get("resource").and_then(Value::as_str).and_then(Resource::parse);
    if resource.is_none() {
        errors.push(err("resource", "required: \"playlists\" or \"storage_bytes\""));
    }
    let delta =
        object.get("delta").and_then(Value::as_i64).filter(|d| d.unsigned_abs() <= MAX_DELTA.unsigned_abs());
    if delta.is_none() {
        errors.push(err("delta", &format!("required: an integer between -{MAX_DELTA} and {MAX_DELTA}")));
    }
    let key = object.get("idempotency_key").and_then(Value::as_str).filter(|k| valid_idempotency_key(k));
    if key.is_none() {
        errors.push(err(
            "idempotency_key",
            &format!(
                "required: 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters, unique per report"
            ),
        ));
    }
    match (resource, delta, key) {
        (Some(resource), Some(delta), Some(key)) if errors.is_empty() => {
            Ok(UsageReport { resource, delta, idempotency_key: key.to_owned() })
        }
        _ => Err(errors),
    }
}

fn valid_idempotency_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_CHARS && key.bytes().all(|b| b.is_ascii_graphic())
}

/// The organization's part, supplied by the organizations module once a user belongs to one:
/// its tier replaces the user's own while they are a member, and its policy may narrow the
/// integrations members may connect (`None`: the tier's list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgGrant {
    pub id: String,
    pub tier: Tier,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrations: Option<Vec<String>>,
}

/// What the entitlements are computed from.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The user's own tier.
    pub tier: Tier,
    /// Every purpose's effective consent (`rights::effective`).
    pub consents: &'a [Consent],
    pub usage: Usage,
    pub organization: Option<&'a OrgGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestQuota {
    /// API requests per rolling hour; `None`: unlimited.
    pub per_hour: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Playlists {
    pub limit: Option<u64>,
    pub used: u64,
    pub remaining: Option<u64>,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Storage {
    pub limit_bytes: Option<u64>,
    pub used_bytes: u64,
    pub remaining_bytes: Option<u64>,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Integrations {
    /// The services the user may connect.
    pub allowed: Vec<String>,
    /// Whether data may be shared with them (the `third_party_integrations` consent).
    pub data_sharing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AiFeatures {
    /// The personalization levels allowed (none without the `personalization` consent).
    pub personalization_levels: Vec<String>,
    pub custom_model_training: bool,
    pub federated_learning: bool,
}

/// What a user may do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entitlements {
    /// The tier that applies: the organization's while the user belongs to one.
    pub tier: Tier,
    pub organization: Option<OrgGrant>,
    pub requests: RequestQuota,
    pub playlists: Playlists,
    pub storage: Storage,
    pub integrations: Integrations,
    pub ai_features: AiFeatures,
    pub support: String,
    /// Why something the tier offers is not available now, one sentence each.
    pub restrictions: Vec<String>,
}

fn granted(consents: &[Consent], purpose: Purpose) -> bool {
    consents.iter().any(|c| c.purpose == purpose && c.granted)
}

/// The entitlements `facts` give.
pub fn compute(facts: &Facts<'_>) -> Entitlements {
    let tier = facts.organization.map_or(facts.tier, |o| o.tier);
    let rules = tier.rules();
    let mut restrictions = Vec::new();

    let metered = |resource: Resource, restrictions: &mut Vec<String>| {
        let limit = resource.limit(tier);
        let used = facts.usage.of(resource);
        let read_only = read_only(used, limit);
        if let (true, Some(limit)) = (read_only, limit) {
            restrictions.push(format!(
                "{}: {used} used is over the {tier} tier's limit of {limit}; read-only (nothing deleted) until back within it",
                resource.as_str()
            ));
        }
        (limit, used, limit.map(|l| l.saturating_sub(used)), read_only)
    };
    let (limit, used, remaining, playlists_read_only) = metered(Resource::Playlists, &mut restrictions);
    let playlists = Playlists { limit, used, remaining, read_only: playlists_read_only };
    let (limit, used, remaining, storage_read_only) = metered(Resource::StorageBytes, &mut restrictions);
    let storage = Storage {
        limit_bytes: limit,
        used_bytes: used,
        remaining_bytes: remaining,
        read_only: storage_read_only,
    };

    let mut allowed = rules.limits.integrations.clone();
    if let Some(policy) = facts.organization.and_then(|o| o.integrations.as_ref()) {
        allowed.retain(|i| policy.contains(i));
    }
    let data_sharing = granted(facts.consents, Purpose::ThirdPartyIntegrations);
    if !data_sharing {
        restrictions.push(
            "integrations: no data is shared with them without the third_party_integrations consent".into(),
        );
    }

    let personalization = granted(facts.consents, Purpose::Personalization);
    if !personalization {
        restrictions.push("ai_features: personalization is off without the personalization consent".into());
    }
    let federated_learning = granted(facts.consents, Purpose::FederatedLearning);
    let ai_features = AiFeatures {
        personalization_levels: if personalization {
            rules.features.personalization_levels.clone()
        } else {
            Vec::new()
        },
        custom_model_training: personalization && rules.features.custom_model_training,
        federated_learning,
    };

    Entitlements {
        tier,
        organization: facts.organization.cloned(),
        requests: RequestQuota { per_hour: rules.limits.api_requests_per_hour },
        playlists,
        storage,
        integrations: Integrations { allowed, data_sharing },
        ai_features,
        support: rules.limits.support.clone(),
        restrictions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rights::{effective, Source, POLICY_VERSION};
    use crate::time::UnixMillis;
    use proptest::prelude::*;
    use serde_json::json;

    fn defaults() -> Vec<Consent> {
        effective(&[], UnixMillis(0), false)
    }

    fn facts(tier: Tier, consents: &[Consent], usage: Usage) -> Facts<'_> {
        Facts { tier, consents, usage, organization: None }
    }

    #[test]
    fn the_free_tier_has_ten_playlists_and_100_mb() {
        assert_eq!(Resource::Playlists.limit(Tier::Free), Some(10));
        assert_eq!(Resource::StorageBytes.limit(Tier::Free), Some(100_000_000));
        assert_eq!(Resource::Playlists.limit(Tier::Premium), None);
        assert_eq!(Resource::StorageBytes.limit(Tier::Premium), Some(10_240_000_000));
        assert_eq!(Resource::StorageBytes.limit(Tier::Vip), None);
    }

    #[test]
    fn a_report_within_the_limit_is_admitted_and_one_beyond_refused_naming_it() {
        assert_eq!(decide(9, 1, Some(10)), UsageDecision::Admitted { used: 10 });
        assert_eq!(decide(10, 1, Some(10)), UsageDecision::Refused { used: 10, limit: 10 });
        assert_eq!(decide(5, 6, Some(10)), UsageDecision::Refused { used: 5, limit: 10 });
        assert_eq!(decide(5, 1_000, None), UsageDecision::Admitted { used: 1_005 });
    }

    #[test]
    fn negative_deltas_are_always_admitted_and_floor_at_zero() {
        assert_eq!(decide(15, -1, Some(10)), UsageDecision::Admitted { used: 14 });
        assert_eq!(decide(2, -5, Some(10)), UsageDecision::Admitted { used: 0 });
        assert_eq!(decide(0, 0, Some(0)), UsageDecision::Admitted { used: 0 });
    }

    #[test]
    fn a_downgrade_makes_the_excess_read_only_and_deletes_nothing() {
        let consents = defaults();
        let before = compute(&facts(Tier::Premium, &consents, Usage { playlists: 15, storage_bytes: 0 }));
        assert_eq!(before.playlists, Playlists { limit: None, used: 15, remaining: None, read_only: false });
        let after = compute(&facts(Tier::Free, &consents, Usage { playlists: 15, storage_bytes: 0 }));
        assert_eq!(
            after.playlists,
            Playlists { limit: Some(10), used: 15, remaining: Some(0), read_only: true }
        );
        assert!(after
            .restrictions
            .iter()
            .any(|r| r.starts_with("playlists: 15 used is over the free tier's limit of 10")));
        // Adding is refused, removing admitted, until it is back within the limit.
        assert_eq!(decide(15, 1, Some(10)), UsageDecision::Refused { used: 15, limit: 10 });
        assert_eq!(decide(15, -5, Some(10)), UsageDecision::Admitted { used: 10 });
        assert!(!read_only(10, Some(10)));
    }

    #[test]
    fn the_free_tier_with_default_consents() {
        let consents = defaults();
        let e = compute(&facts(Tier::Free, &consents, Usage { playlists: 3, storage_bytes: 1_000 }));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({
                "tier": "free",
                "organization": null,
                "requests": { "per_hour": 100 },
                "playlists": { "limit": 10, "used": 3, "remaining": 7, "read_only": false },
                "storage": { "limit_bytes": 100_000_000u64, "used_bytes": 1_000, "remaining_bytes": 99_999_000u64, "read_only": false },
                "integrations": { "allowed": ["spotify_basic"], "data_sharing": false },
                "ai_features": { "personalization_levels": ["basic", "standard"], "custom_model_training": false, "federated_learning": false },
                "support": "community",
                "restrictions": ["integrations: no data is shared with them without the third_party_integrations consent"],
            })
        );
    }

    #[test]
    fn consents_narrow_what_the_tier_allows() {
        let stored = |purpose, granted| Consent {
            purpose,
            granted,
            at: UnixMillis(1),
            source: Source::User,
            policy_version: POLICY_VERSION.into(),
        };
        let consents = effective(
            &[
                stored(Purpose::Personalization, false),
                stored(Purpose::FederatedLearning, true),
                stored(Purpose::ThirdPartyIntegrations, true),
            ],
            UnixMillis(0),
            false,
        );
        let e = compute(&facts(Tier::Enterprise, &consents, Usage::default()));
        assert_eq!(
            e.ai_features,
            AiFeatures {
                personalization_levels: vec![],
                custom_model_training: false,
                federated_learning: true
            }
        );
        assert!(e.integrations.data_sharing);
        assert_eq!(
            e.restrictions,
            vec!["ai_features: personalization is off without the personalization consent"]
        );
        let with_it = effective(&[stored(Purpose::Personalization, true)], UnixMillis(0), false);
        assert!(
            compute(&facts(Tier::Enterprise, &with_it, Usage::default())).ai_features.custom_model_training
        );
    }

    #[test]
    fn an_organization_supplies_the_tier_and_narrows_integrations() {
        let consents = defaults();
        let org = OrgGrant {
            id: "org_1".into(),
            tier: Tier::Enterprise,
            integrations: Some(vec!["slack".into(), "jira".into()]),
        };
        let e = compute(&Facts {
            tier: Tier::Free,
            consents: &consents,
            usage: Usage { playlists: 50, storage_bytes: 0 },
            organization: Some(&org),
        });
        assert_eq!(e.tier, Tier::Enterprise);
        assert_eq!(e.requests.per_hour, Some(50_000));
        assert_eq!(e.playlists.limit, None);
        assert!(!e.playlists.read_only);
        assert_eq!(e.integrations.allowed, vec!["jira".to_owned(), "slack".to_owned()]);
        assert_eq!(e.support, "dedicated 24/7");
    }

    #[test]
    fn reports_are_parsed_strictly() {
        let ok = parse_report(&json!({"resource": "playlists", "delta": -2, "idempotency_key": "k-1"}));
        assert_eq!(
            ok,
            Ok(UsageReport { resource: Resource::Playlists, delta: -2, idempotency_key: "k-1".into() })
        );
        let bad = parse_report(&json!({"resource": "songs", "delta": 1.5, "idempotency_key": "", "x": 1}))
            .unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["x", "resource", "delta", "idempotency_key"]);
        assert!(parse_report(
            &json!({"resource": "storage_bytes", "delta": MAX_DELTA + 1, "idempotency_key": "k"})
        )
        .is_err());
        assert!(parse_report(&json!({"resource": "storage_bytes", "delta": 1, "idempotency_key": "a b"}))
            .is_err());
        assert!(parse_report(
            &json!({"resource": "storage_bytes", "delta": 1, "idempotency_key": "k".repeat(129)})
        )
        .is_err());
        assert!(parse_report(&json!([])).is_err());
    }

    proptest! {
        /// Applying any sequence of reports one at a time never passes the limit through an
        /// admitted positive delta, counts exactly the admitted deltas, and refuses only what
        /// would have passed it.
        #[test]
        fn a_sequence_of_reports_never_passes_the_limit(
            start in 0u64..50,
            limit in proptest::option::of(0u64..40),
            deltas in proptest::collection::vec(-10i64..10, 0..60),
        ) {
            let mut used = start;
            for delta in deltas {
                match decide(used, delta, limit) {
                    UsageDecision::Admitted { used: after } => {
                        if delta > 0 {
                            prop_assert!(limit.is_none_or(|l| after <= l));
                            prop_assert_eq!(after, used + delta.unsigned_abs());
                        } else {
                            prop_assert_eq!(after, used.saturating_sub(delta.unsigned_abs()));
                        }
                        used = after;
                    }
                    UsageDecision::Refused { used: unchanged, limit: l } => {
                        prop_assert!(delta > 0);
                        prop_assert_eq!(unchanged, used);
                        prop_assert_eq!(Some(l), limit);
                        prop_assert!(used + delta.unsigned_abs() > l);
                    }
                }
            }
        }

        /// From `used` under `limit`, n reports of +1 admit exactly the room left.
        #[test]
        fn unit_reports_admit_exactly_the_room_left(used in 0u64..20, limit in 0u64..20, n in 0usize..40) {
            let mut current = used;
            let admitted = (0..n).filter(|_| match decide(current, 1, Some(limit)) {
                UsageDecision::Admitted { used } => { current = used; true }
                UsageDecision::Refused { .. } => false,
            }).count() as u64;
            prop_assert_eq!(admitted, limit.saturating_sub(used).min(n as u64));
        }

        /// Read-only exactly when over the limit.
        #[test]
        fn read_only_means_over_the_limit(used in 0u64..100, limit in proptest::option::of(0u64..100)) {
            prop_assert_eq!(read_only(used, limit), limit.is_some_and(|l| used > l));
        }
    }
}
