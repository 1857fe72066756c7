//! Account-security rules: the floors a tier or a role imposes (zero-trust for enterprise, VIP
//! and admins), when a login needs a second factor and which factors it offers, which changes
//! of the security settings weaken them (and so need a fresh proof), and the limits of a
//! session. Every function is a pure decision over its inputs.
//!
//! The floors are data: each tier template has a `security_floor`, and the complete template's
//! `roles.admin.security_floor` is the admin role's. An account's floor is the strictest of its
//! tier's and its role's.

use serde::{Deserialize, Serialize};

use crate::identity::Role;
use crate::profile::{MfaMethod, SecuritySettings};
use crate::session::ABSOLUTE_LIFETIME_MS;
use crate::tier::Tier;
use crate::time::UnixMillis;

/// How long a step-up (a fresh password + second-factor proof) lets a session make sensitive
/// changes without proving again.
pub const STEP_UP_MAX_AGE_MS: u64 = 5 * 60 * 1000;

/// The least protection an account may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityFloor {
    /// A second factor is always required; `require_mfa` cannot be turned off.
    pub mfa_required: bool,
    /// The longest idle timeout a session may have, in minutes (`None`: no floor).
    pub max_idle_minutes: Option<u32>,
    /// The longest a session may live, in hours (`None`: the default absolute lifetime).
    pub max_session_hours: Option<u32>,
}

impl SecurityFloor {
    /// What applies when the templates cannot be read: everything required, short sessions.
    pub const STRICTEST: SecurityFloor =
        SecurityFloor { mfa_required: true, max_idle_minutes: Some(30), max_session_hours: Some(12) };

    /// The floor of an account: the strictest of its tier's and its role's.
    pub fn of(tier: Tier, role: Role) -> SecurityFloor {
        let tier_floor = tier.rules().security_floor;
        match role {
            Role::Admin => tier_floor.strictest(crate::tier::admin_floor()),
            Role::User => tier_floor,
        }
    }

    fn strictest(&self, other: &SecurityFloor) -> SecurityFloor {
        let min = |a: Option<u32>, b: Option<u32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        SecurityFloor {
            mfa_required: self.mfa_required || other.mfa_required,
            max_idle_minutes: min(self.max_idle_minutes, other.max_idle_minutes),
            max_session_hours: min(self.max_session_hours, other.max_session_hours),
        }
    }

    /// Why `settings` fall below this floor, one `(field, rule)` per breach.
    pub fn violations(&self, settings: &SecuritySettings) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.mfa_required && !settings.require_mfa {
            out.push(("security_settings.require_mfa", "mfa-required-by-tier-or-role"));
        }
        if self.max_idle_minutes.is_some_and(|max| settings.session_timeout_minutes > max) {
            out.push(("security_settings.session_timeout_minutes", "session-timeout-above-floor"));
        }
        out
    }

    /// `settings` raised to this floor: what an upgrade into a stricter tier or role applies.
    pub fn apply(&self, settings: &SecuritySettings) -> SecuritySettings {
        let mut raised = settings.clone();
        if self.mfa_required {
            raised.require_mfa = true;
        }
        if let Some(max) = self.max_idle_minutes {
            raised.session_timeout_minutes = raised.session_timeout_minutes.min(max);
        }
        raised
    }

    /// The limits of a session opened now: idle timeout and absolute lifetime, in ms.
    pub fn session_limits(&self, settings: &SecuritySettings) -> SessionLimits {
        let idle_minutes = self
            .max_idle_minutes
            .map_or(settings.session_timeout_minutes, |max| settings.session_timeout_minutes.min(max));
        let absolute_ms = self
            .max_session_hours
            .map_or(ABSOLUTE_LIFETIME_MS, |h| (u64::from(h) * 3_600_000).min(ABSOLUTE_LIFETIME_MS));
        SessionLimits { idle_ms: u64::from(idle_minutes) * 60_000, absolute_ms }
    }
}

/// How long a session may stay idle and live at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLimits {
    pub idle_ms: u64,
    pub absolute_ms: u64,
}

/// The fields whose change in `old → new` weakens the account's protection: `require_mfa`
/// turned off, email codes newly allowed (a channel a thief may hold: the login then offers
/// them beside the enrolled factors; the other methods only name factors, which are offered
/// once enrolled), a longer session timeout, a higher risk threshold (fewer logins
/// challenged), anomaly detection turned off. Each needs a fresh proof.
pub fn weakened_fields(old: &SecuritySettings, new: &SecuritySettings) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.require_mfa && !new.require_mfa {
        out.push("require_mfa");
    }
    if new.mfa_methods.contains(&MfaMethod::Email) && !old.mfa_methods.contains(&MfaMethod::Email) {
        out.push("mfa_methods");
    }
    if new.session_timeout_minutes > old.session_timeout_minutes {
        out.push("session_timeout_minutes");
    }
    if new.risk_score_threshold > old.risk_score_threshold {
        out.push("risk_score_threshold");
    }
    if old.anomaly_detection_enabled && !new.anomaly_detection_enabled {
        out.push("anomaly_detection_enabled");
    }
    out
}

/// Whether a step-up made at `stepped_up_at` still covers a sensitive change at `now`.
pub fn step_up_fresh(stepped_up_at: Option<UnixMillis>, now: UnixMillis) -> bool {
    stepped_up_at.is_some_and(|at| at <= now && now.0 - at.0 <= STEP_UP_MAX_AGE_MS)
}

/// A second factor.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Factor {
    Totp,
    Sms,
    Email,
    RecoveryCode,
    /// A passkey or security key (WebAuthn), with user verification.
    Webauthn,
}

impl Factor {
    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Totp => "totp",
            Factor::Sms => "sms",
            Factor::Email => "email",
            Factor::RecoveryCode => "recovery_code",
            Factor::Webauthn => "webauthn",
        }
    }
}

impl std::str::FromStr for Factor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Factor::Webauthn, Factor::Totp, Factor::Sms, Factor::Email, Factor::RecoveryCode]
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a second factor (webauthn, totp, sms, email, recovery_code)")
            })
    }
}

/// The second factors an account has confirmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enrolled {
    /// At least one passkey or security key is registered.
    pub webauthn: bool,
    pub totp: bool,
    pub sms: bool,
    pub recovery_codes_left: u32,
}

impl Enrolled {
    /// Whether any factor of the user's own is confirmed (an email code is not one: the
    /// address is always there).
    pub fn any(&self) -> bool {
        self.webauthn || self.totp || self.sms
    }
}

/// Why a login asks for a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaReason {
    /// A factor is enrolled: it is always asked.
    Enrolled,
    /// The account (or its tier or role) requires one.
    Required,
    /// The login's risk is at or above the account's threshold.
    Risk,
}

impl MfaReason {
    pub fn describe(self) -> &'static str {
        match self {
            MfaReason::Enrolled => "required: the account has a second factor enrolled",
            MfaReason::Required => "required by the account",
            MfaReason::Risk => "required by the login's risk",
        }
    }
}

/// What a correct password leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactor {
    /// The login completes with the password alone.
    NotNeeded,
    /// A challenge with these factors.
    Ask { reason: MfaReason, factors: Vec<Factor> },
    /// The risk is extreme and nothing can confirm the login.
    Refuse,
}

/// Decides the second factor of a login whose password was right. An enrolled factor is
/// always asked; `require_mfa` (the account's, raised by its floor) asks for one even when
/// none is enrolled (an email code); otherwise the risk decides.
pub fn second_factor(
    enrolled: &Enrolled,
    settings: &SecuritySettings,
    floor: &SecurityFloor,
    risky: bool,
    extreme: bool,
) -> SecondFactor {
    let required = settings.require_mfa || floor.mfa_required;
    let factors = offered_factors(enrolled, settings, required);
    let reason = if enrolled.any() {
        Some(MfaReason::Enrolled)
    } else if required {
        Some(MfaReason::Required)
    } else if risky {
        Some(MfaReason::Risk)
    } else {
        None
    };
    match reason {
        Some(reason) if !factors.is_empty() => SecondFactor::Ask { reason, factors },
        _ if risky && extreme => SecondFactor::Refuse,
        _ => SecondFactor::NotNeeded,
    }
}

/// The second-factor decision of a login whose password was right: the risk `score` against
/// the account's `risk_score_threshold` (and [`crate::risk::EXTREME`]) feeds [`second_factor`],
/// and a member's organization narrows the factors offered ([`crate::org::OrgPolicies::restrict`]).
pub fn login_decision(
    enrolled: &Enrolled,
    settings: &SecuritySettings,
    floor: &SecurityFloor,
    score: f64,
    org: Option<&crate::org::OrgPolicies>,
) -> SecondFactor {
    let risky = score >= settings.risk_score_threshold;
    match second_factor(enrolled, settings, floor, risky, score >= crate::risk::EXTREME) {
        SecondFactor::Ask { reason, factors } => {
            let factors = match org {
                Some(policies) => policies.restrict(factors),
                None => factors,
            };
            SecondFactor::Ask { reason, factors }
        }
        other => other,
    }
}

/// The factors a challenge offers: the enrolled ones (a passkey first: it resists phishing),
/// an email code when the user chose that
/// method or when a factor is required and none is enrolled (the address is always there),
/// and recovery codes while an authenticator is enrolled and codes are left.
pub fn offered_factors(enrolled: &Enrolled, settings: &SecuritySettings, required: bool) -> Vec<Factor> {
    let mut factors = Vec::new();
    if enrolled.webauthn {
        factors.push(Factor::Webauthn);
    }
    if enrolled.totp {
        factors.push(Factor::Totp);
    }
    if enrolled.sms {
        factors.push(Factor::Sms);
    }
    if settings.mfa_methods.contains(&MfaMethod::Email) || (required && !enrolled.any()) {
        factors.push(Factor::Email);
    }
    if enrolled.totp && enrolled.recovery_codes_left > 0 {
        factors.push(Factor::RecoveryCode);
    }
    factors
}

/// The factors a step-up or a sensitive change accepts as its second proof: the enrolled ones
/// (a passkey first) and recovery codes while an authenticator has some left; never an email
/// code, which proves only the mailbox a stolen session may already read.
pub fn proof_factors(enrolled: &Enrolled) -> Vec<Factor> {
    let mut factors = Vec::new();
    if enrolled.webauthn {
        factors.push(Factor::Webauthn);
    }
    if enrolled.totp {
        factors.push(Factor::Totp);
    }
    if enrolled.sms {
        factors.push(Factor::Sms);
    }
    if enrolled.totp && enrolled.recovery_codes_left > 0 {
        factors.push(Factor::RecoveryCode);
    }
    factors
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_proof_takes_the_enrolled_factors_and_never_an_email_code() {
        let none = Enrolled::default();
        assert!(proof_factors(&none).is_empty());
        let all = Enrolled { webauthn: true, totp: true, sms: true, recovery_codes_left: 3 };
        assert_eq!(
            proof_factors(&all),
            vec![Factor::Webauthn, Factor::Totp, Factor::Sms, Factor::RecoveryCode]
        );
        let used_up = Enrolled { totp: true, recovery_codes_left: 0, ..Enrolled::default() };
        assert_eq!(proof_factors(&used_up), vec![Factor::Totp]);
        // The same factors a login offers when nothing asks for an email code.
        let quiet = settings(false, &[]);
        for enrolled in [none, all, used_up] {
            assert_eq!(proof_factors(&enrolled), offered_factors(&enrolled, &quiet, false));
        }
    }

    use super::*;

    fn settings(require_mfa: bool, methods: &[MfaMethod]) -> SecuritySettings {
        SecuritySettings {
            require_mfa,
            mfa_methods: methods.to_vec(),
            session_timeout_minutes: 1440,
            risk_score_threshold: 0.7,
            anomaly_detection_enabled: true,
        }
    }

    const NONE: SecurityFloor =
        SecurityFloor { mfa_required: false, max_idle_minutes: None, max_session_hours: None };
    const TOTP: Enrolled = Enrolled { webauthn: false, totp: true, sms: false, recovery_codes_left: 10 };

    #[test]
    fn a_login_decision_weighs_the_risk_and_the_organizations_methods() {
        let quiet = settings(false, &[]);
        let none = Enrolled::default();
        // Under the threshold: nothing asked; at it with nothing enrolled: no factor to offer.
        assert_eq!(login_decision(&none, &quiet, &NONE, 0.69, None), SecondFactor::NotNeeded);
        assert_eq!(login_decision(&none, &quiet, &NONE, 0.7, None), SecondFactor::NotNeeded);
        assert_eq!(login_decision(&none, &quiet, &NONE, crate::risk::EXTREME, None), SecondFactor::Refuse);
        // A member whose organization allows passkeys only: a passkey among the enrolled is all
        // that is offered; with none of the allowed enrolled, the challenge keeps what it had.
        let both = Enrolled { webauthn: true, ..TOTP };
        let passkeys_only = crate::org::OrgPolicies {
            mfa_methods: vec![Factor::Webauthn],
            ..crate::org::OrgPolicies::default()
        };
        assert_eq!(
            login_decision(&both, &quiet, &NONE, 0.0, Some(&passkeys_only)),
            SecondFactor::Ask { reason: MfaReason::Enrolled, factors: vec![Factor::Webauthn] }
        );
        assert_eq!(
            login_decision(&TOTP, &quiet, &NONE, 0.0, Some(&passkeys_only)),
            SecondFactor::Ask {
                reason: MfaReason::Enrolled,
                factors: vec![Factor::Totp, Factor::RecoveryCode]
            }
        );
        assert_eq!(
            login_decision(&TOTP, &quiet, &NONE, 0.0, None),
            second_factor(&TOTP, &quiet, &NONE, false, false)
        );
    }

    #[test]
    fn an_enrolled_factor_is_always_asked_even_without_require_mfa_or_risk() {
        let decision = second_factor(&TOTP, &settings(false, &[]), &NONE, false, false);
        assert_eq!(
            decision,
            SecondFactor::Ask {
                reason: MfaReason::Enrolled,
                factors: vec![Factor::Totp, Factor::RecoveryCode]
            }
        );
        let sms = Enrolled { webauthn: false, totp: false, sms: true, recovery_codes_left: 0 };
        assert_eq!(
            second_factor(&sms, &settings(false, &[MfaMethod::Email]), &NONE, false, false),
            SecondFactor::Ask { reason: MfaReason::Enrolled, factors: vec![Factor::Sms, Factor::Email] }
        );
    }

    #[test]
    fn a_passkey_is_an_enrolled_factor_offered_first() {
        let both = Enrolled { webauthn: true, ..TOTP };
        assert_eq!(
            second_factor(&both, &settings(false, &[]), &NONE, false, false),
            SecondFactor::Ask {
                reason: MfaReason::Enrolled,
                factors: vec![Factor::Webauthn, Factor::Totp, Factor::RecoveryCode]
            }
        );
        let passkey_only = Enrolled { webauthn: true, ..Enrolled::default() };
        assert!(passkey_only.any());
        assert_eq!(
            second_factor(&passkey_only, &settings(true, &[]), &NONE, false, false),
            SecondFactor::Ask { reason: MfaReason::Enrolled, factors: vec![Factor::Webauthn] }
        );
        assert_eq!("webauthn".parse::<Factor>(), Ok(Factor::Webauthn));
    }

    #[test]
    fn require_mfa_without_a_factor_asks_for_an_email_code_and_the_floor_counts_as_required() {
        let none = Enrolled::default();
        let expected = SecondFactor::Ask { reason: MfaReason::Required, factors: vec![Factor::Email] };
        assert_eq!(second_factor(&none, &settings(true, &[]), &NONE, false, false), expected);
        let floor = SecurityFloor { mfa_required: true, ..NONE };
        assert_eq!(second_factor(&none, &settings(false, &[]), &floor, false, false), expected);
    }

    #[test]
    fn without_factor_or_requirement_the_risk_decides() {
        let none = Enrolled::default();
        assert_eq!(second_factor(&none, &settings(false, &[]), &NONE, false, false), SecondFactor::NotNeeded);
        assert_eq!(
            second_factor(&none, &settings(false, &[MfaMethod::Email]), &NONE, true, false),
            SecondFactor::Ask { reason: MfaReason::Risk, factors: vec![Factor::Email] }
        );
        assert_eq!(second_factor(&none, &settings(false, &[]), &NONE, true, false), SecondFactor::NotNeeded);
        assert_eq!(second_factor(&none, &settings(false, &[]), &NONE, true, true), SecondFactor::Refuse);
    }

    #[test]
    fn weakening_changes_are_named_and_strengthening_ones_are_not() {
        let old = settings(true, &[MfaMethod::Authenticator]);
        let mut sms_added = old.clone();
        sms_added.mfa_methods.push(MfaMethod::Sms);
        assert!(weakened_fields(&old, &sms_added).is_empty(), "naming a factor weakens nothing");
        assert!(weakened_fields(&old, &old).is_empty());
        let mut new = old.clone();
        new.require_mfa = false;
        new.mfa_methods.push(MfaMethod::Email);
        new.session_timeout_minutes = 2000;
        new.risk_score_threshold = 0.9;
        new.anomaly_detection_enabled = false;
        assert_eq!(
            weakened_fields(&old, &new),
            vec![
                "require_mfa",
                "mfa_methods",
                "session_timeout_minutes",
                "risk_score_threshold",
                "anomaly_detection_enabled"
            ]
        );
        let mut stronger = settings(false, &[MfaMethod::Email, MfaMethod::Sms]);
        let before = stronger.clone();
        stronger.require_mfa = true;
        stronger.mfa_methods = vec![MfaMethod::Sms, MfaMethod::Authenticator];
        stronger.session_timeout_minutes = 60;
        stronger.risk_score_threshold = 0.5;
        assert!(weakened_fields(&before, &stronger).is_empty());
    }

    #[test]
    fn the_floors_come_from_the_templates_and_the_strictest_applies() {
        assert!(!SecurityFloor::of(Tier::Free, Role::User).mfa_required);
        assert!(!SecurityFloor::of(Tier::Premium, Role::User).mfa_required);
        assert!(SecurityFloor::of(Tier::Enterprise, Role::User).mfa_required);
        assert!(SecurityFloor::of(Tier::Vip, Role::User).mfa_required);
        let admin = SecurityFloor::of(Tier::Free, Role::Admin);
        assert_eq!(
            admin,
            SecurityFloor { mfa_required: true, max_idle_minutes: Some(30), max_session_hours: Some(12) }
        );
        let limits = admin.session_limits(&settings(true, &[]));
        assert_eq!(limits, SessionLimits { idle_ms: 30 * 60_000, absolute_ms: 12 * 3_600_000 });
        let free = SecurityFloor::of(Tier::Free, Role::User).session_limits(&settings(false, &[]));
        assert_eq!(free, SessionLimits { idle_ms: 1440 * 60_000, absolute_ms: ABSOLUTE_LIFETIME_MS });
    }

    #[test]
    fn a_floor_names_each_breach_and_raises_settings_to_itself() {
        let floor = SecurityFloor::of(Tier::Free, Role::Admin);
        let weak = settings(false, &[]);
        assert_eq!(
            floor.violations(&weak),
            vec![
                ("security_settings.require_mfa", "mfa-required-by-tier-or-role"),
                ("security_settings.session_timeout_minutes", "session-timeout-above-floor")
            ]
        );
        let raised = floor.apply(&weak);
        assert!(raised.require_mfa);
        assert_eq!(raised.session_timeout_minutes, 30);
        assert!(floor.violations(&raised).is_empty());
    }

    #[test]
    fn a_step_up_covers_five_minutes() {
        let at = UnixMillis(1_000_000);
        assert!(step_up_fresh(Some(at), at));
        assert!(step_up_fresh(Some(at), at.saturating_add_ms(STEP_UP_MAX_AGE_MS)));
        assert!(!step_up_fresh(Some(at), at.saturating_add_ms(STEP_UP_MAX_AGE_MS + 1)));
        assert!(!step_up_fresh(None, at));
        assert!(
            !step_up_fresh(Some(at.saturating_add_ms(1)), at),
            "a step-up from the future is not trusted"
        );
    }
}
