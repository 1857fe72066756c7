//! Tiers and their rules. The rules are data: each tier's limits, features and profile
//! defaults live in the JSON templates under `domain/profiles/` (`free_user_profile.json`,
//! `premium_user_profile.json`, `complete_profile.json` for enterprise and vip), embedded at
//! build time and parsed once. A unit test parses them, so a broken template fails the build's
//! tests rather than a request.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::passkey::PasskeyPolicy;
use crate::security::SecurityFloor;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Premium,
    Enterprise,
    Vip,
}

pub const ALL_TIERS: [Tier; 4] = [Tier::Free, Tier::Premium, Tier::Enterprise, Tier::Vip];

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Premium => "premium",
            Tier::Enterprise => "enterprise",
            Tier::Vip => "vip",
        }
    }

    /// This tier's rules, from the templates.
    pub fn rules(self) -> &'static TierRules {
        let rules = catalogue();
        match self {
            Tier::Free => &rules.free,
            Tier::Premium => &rules.premium,
            Tier::Enterprise => &rules.enterprise,
            Tier::Vip => &rules.vip,
        }
    }

    pub fn limits(self) -> &'static Limits {
        &self.rules().limits
    }

    /// API requests per rolling hour; `None` is unlimited.
    pub fn hourly_quota(self) -> Option<u32> {
        self.limits().api_requests_per_hour
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_TIERS
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a tier (free, premium, enterprise or vip)"))
    }
}

/// What a tier may use. `None` means unlimited.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub api_requests_per_hour: Option<u32>,
    pub playlists: Option<u32>,
    pub storage_mb: Option<u64>,
    pub integrations: Vec<String>,
    pub support: String,
    /// Open sessions allowed at once; a new login beyond it ends the least recently used.
    pub max_open_sessions: u32,
}

/// The optional features a tier has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// The AI personalization levels allowed, lowest first.
    pub personalization_levels: Vec<String>,
    pub custom_model_training: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TierRules {
    pub tier: Tier,
    pub limits: Limits,
    pub features: Features,
    /// The least protection an account of this tier may have (`domain::security`).
    pub security_floor: SecurityFloor,
    /// Which authenticators its accounts may register as passkeys (`domain::passkey`).
    pub passkey_policy: PasskeyPolicy,
    /// The profile a new account of this tier starts from (JSON of `profile::Profile`).
    pub defaults: Value,
}

struct Catalogue {
    free: TierRules,
    premium: TierRules,
    enterprise: TierRules,
    vip: TierRules,
    admin_floor: SecurityFloor,
}

const FREE_TEMPLATE: &str = include_str!("../profiles/free_user_profile.json");
const PREMIUM_TEMPLATE: &str = include_str!("../profiles/premium_user_profile.json");
const COMPLETE_TEMPLATE: &str = include_str!("../profiles/complete_profile.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SingleTemplate {
    tier: Tier,
    limits: Limits,
    features: Features,
    security_floor: SecurityFloor,
    passkey_policy: PasskeyPolicy,
    defaults: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierSection {
    limits: Limits,
    features: Features,
    security_floor: SecurityFloor,
    passkey_policy: PasskeyPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleSection {
    security_floor: SecurityFloor,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRoles {
    admin: RoleSection,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteTemplate {
    tiers: CompleteTiers,
    roles: CompleteRoles,
    defaults: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteTiers {
    enterprise: TierSection,
    vip: TierSection,
}

fn parse_catalogue() -> Result<Catalogue, String> {
    let single = |text: &str, expected: Tier| -> Result<TierRules, String> {
        let t: SingleTemplate =
            serde_json::from_str(text).map_err(|e| format!("{expected} template: {e}"))?;
        if t.tier != expected {
            return Err(format!("the {expected} template says tier {}", t.tier));
        }
        Ok(TierRules {
            tier: t.tier,
            limits: t.limits,
            features: t.features,
            security_floor: t.security_floor,
            passkey_policy: t.passkey_policy,
            defaults: t.defaults,
        })
    };
    let complete: CompleteTemplate =
        serde_json::from_str(COMPLETE_TEMPLATE).map_err(|e| format!("complete template: {e}"))?;
    let section = |tier: Tier, s: TierSection| TierRules {
        tier,
        limits: s.limits,
        features: s.features,
        security_floor: s.security_floor,
        passkey_policy: s.passkey_policy,
        defaults: complete.defaults.clone(),
    };
    Ok(Catalogue {
        free: single(FREE_TEMPLATE, Tier::Free)?,
        premium: single(PREMIUM_TEMPLATE, Tier::Premium)?,
        enterprise: section(Tier::Enterprise, complete.tiers.enterprise),
        vip: section(Tier::Vip, complete.tiers.vip),
        admin_floor: complete.roles.admin.security_floor,
    })
}

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        // The templates are compiled in and parsed by `the_templates_parse`; should one still
        // be broken, every tier falls back to the most restrictive rules rather than failing.
        parse_catalogue().unwrap_or_else(|_| restrictive_catalogue())
    })
}

fn restrictive_catalogue() -> Catalogue {
    let rules = |tier| TierRules {
        tier,
        limits: Limits {
            api_requests_per_hour: Some(0),
            playlists: Some(0),
            storage_mb: Some(0),
            integrations: Vec::new(),
            support: String::new(),
            max_open_sessions: 1,
        },
        features: Features { personalization_levels: vec!["basic".into()], custom_model_training: false },
        security_floor: SecurityFloor::STRICTEST,
        passkey_policy: PasskeyPolicy { attested_keys_only: true, ..PasskeyPolicy::default() },
        defaults: Value::Null,
    };
    Catalogue {
        free: rules(Tier::Free),
        premium: rules(Tier::Premium),
        enterprise: rules(Tier::Enterprise),
        vip: rules(Tier::Vip),
        admin_floor: SecurityFloor::STRICTEST,
    }
}

/// The security floor of the admin role, from the complete template's `roles` section.
pub fn admin_floor() -> &'static SecurityFloor {
    &catalogue().admin_floor
}

/// The tiers a user moves between by themselves (a subscription); every other move (into or
/// out of enterprise or VIP) is an admin's to make.
pub const SELF_SERVICE_TIERS: [Tier; 2] = [Tier::Free, Tier::Premium];

/// Whether a tier change from `from` to `to` is allowed: an admin may make any; a user only
/// between the self-service tiers (staying where one is counts as such a move when both are).
pub fn may_change_tier(from: Tier, to: Tier, by_admin: bool) -> bool {
    by_admin || (SELF_SERVICE_TIERS.contains(&from) && SELF_SERVICE_TIERS.contains(&to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_move_between_free_and_premium_only() {
        for (from, to) in [(Tier::Free, Tier::Premium), (Tier::Premium, Tier::Free), (Tier::Free, Tier::Free)]
        {
            assert!(may_change_tier(from, to, false), "{from} → {to}");
        }
        for from in ALL_TIERS {
            for to in [Tier::Enterprise, Tier::Vip] {
                assert!(!may_change_tier(from, to, false), "{from} → {to}");
                assert!(!may_change_tier(to, from, false), "{to} → {from}");
            }
        }
    }

    #[test]
    fn admins_make_any_move() {
        for from in ALL_TIERS {
            for to in ALL_TIERS {
                assert!(may_change_tier(from, to, true), "{from} → {to}");
            }
        }
    }

    #[test]
    fn the_templates_parse() {
        parse_catalogue().unwrap();
    }

    #[test]
    fn quotas_follow_the_product_description() {
        assert_eq!(Tier::Free.hourly_quota(), Some(100));
        assert_eq!(Tier::Premium.hourly_quota(), Some(5_000));
        assert_eq!(Tier::Enterprise.hourly_quota(), Some(50_000));
        assert_eq!(Tier::Vip.hourly_quota(), None);
        assert_eq!(Tier::Free.limits().playlists, Some(10));
        assert_eq!(Tier::Premium.limits().playlists, None);
        assert_eq!(Tier::Free.limits().storage_mb, Some(100));
        assert_eq!(Tier::Free.limits().integrations, vec!["spotify_basic".to_owned()]);
        assert!(!Tier::Premium.rules().features.custom_model_training);
        assert!(Tier::Enterprise.rules().features.custom_model_training);
        assert!(!Tier::Free.rules().features.personalization_levels.contains(&"advanced".to_owned()));
    }

    #[test]
    fn tiers_parse_and_print() {
        for tier in ALL_TIERS {
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
            assert_eq!(serde_json::to_string(&tier).unwrap(), format!("\"{tier}\""));
        }
        assert_eq!(
            "gold".parse::<Tier>(),
            Err("\"gold\" is not a tier (free, premium, enterprise or vip)".into())
        );
    }
}
