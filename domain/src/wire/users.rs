//! users: the wire types of this area (see `wire`): the account's public view (`User`), the
//! signup, profile-update and tier-change bodies and answers, the session list, the security
//! events, the audit log, password and email changes, and the TOTP and SMS enrolments. The
//! same types cross the edge → origin hop and the public API.
//!
//! Profile changes stay JSON merge patches (RFC 7396, a `null` resets a field) carried as a
//! JSON value: the profile rules (`profile::apply_merge_patch`) report every field they refuse
//! by name, which a typed body would turn into one deserialisation error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identity::Role;
use crate::profile::{AiPreferences, SecuritySettings};
use crate::security::Factor;
use crate::tier::{Limits, Tier};

/// The account as the API shows it: identity, tier and role, the editable profile, the tier's
/// limits and the version (the `ETag`). Never a secret. Not closed: the tier change's answer
/// adds `integrations_disabled` to it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[cfg_attr(feature = "openapi", schema(pattern = "^usr_[0-9a-f]{32}$"))]
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub role: Role,
    pub tier: Tier,
    pub display_name: Option<String>,
    /// BCP 47 language tag.
    pub language: String,
    /// IANA time zone.
    pub timezone: String,
    pub ai_preferences: AiPreferences,
    pub security_settings: SecuritySettings,
    pub limits: Limits,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub updated_at: String,
}

/// The fields a user may change, as a JSON merge patch (RFC 7396): an absent field is left as
/// it is, a `null` resets it (or a whole section) to the tier's default. Documentation of the
/// body only: the origin applies the patch as JSON, naming every field it refuses.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfilePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub display_name: Option<String>,
    /// BCP 47 language tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 2, max_length = 35))]
    pub language: Option<String>,
    /// IANA time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub timezone: Option<String>,
    /// Some or all of the `AiPreferences` fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub ai_preferences: Option<Value>,
    /// Some or all of the `SecuritySettings` fields; weakening them needs a recent step-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub security_settings: Option<Value>,
}

/// A signup (public: the free tier) or an account an admin creates (any tier, any role).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Normalised before use: Unicode NFKC, lower case, and the domain through IDNA (UTS #46),
    /// kept and answered in its ASCII (Punycode) form.
    #[cfg_attr(feature = "openapi", schema(format = Email, min_length = 3, max_length = 254))]
    pub email: String,
    /// 12 to 128 characters, counted after Unicode NFKC normalisation, not a common password,
    /// not containing the email's local part.
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The profile's first values, applied to the tier's defaults as a merge patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ProfilePatch>))]
    pub profile: Option<Value>,
    /// `YYYY-MM-DD`, read before anything else: under 13 the account waits for a parent's
    /// consent (202); under the minor age (16) personalization and marketing start off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Date))]
    pub birth_date: Option<String>,
    /// Required under 13: where the single-use consent link (72 hours) goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = Email))]
    pub parent_email: Option<String>,
}

/// A child's signup (under 13): the account exists, disabled, until a parent consents.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignup {
    pub id: String,
    /// Always `pending_parental_consent`.
    #[cfg_attr(feature = "openapi", schema(example = "pending_parental_consent"))]
    pub status: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub parental_consent_expires_at: String,
}

/// The status of a child's signup.
pub const PENDING_PARENTAL_CONSENT: &str = "pending_parental_consent";

/// What a signup answers: the account (201), or a child's pending one (202).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Signup {
    Pending(PendingSignup),
    Created(Box<User>),
}

impl Signup {
    /// The new account's id, pending or not.
    pub fn id(&self) -> &str {
        match self {
            Signup::Pending(pending) => &pending.id,
            Signup::Created(user) => &user.id,
        }
    }
}

/// A profile update, edge → origin: the caller's merge patch, the `If-Match` version, and when
/// the caller's session last stepped up (weakening the security settings needs one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub patch: Value,
    #[serde(default)]
    pub if_match: Option<u64>,
    #[serde(default)]
    pub step_up_at: Option<u64>,
}

/// A tier change.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    pub tier: Tier,
}

/// A tier change's answer: the account in its new tier, and the integrations a downgrade
/// disabled (kept, not deleted), when there are any.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upgraded {
    #[serde(flatten)]
    pub user: User,
    /// The connected integrations the new tier does not allow, now disabled (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integrations_disabled: Vec<String>,
}

/// A session as the list shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub device_id: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Unix ms.
    pub created_at: u64,
    /// Unix ms.
    pub last_seen: u64,
    pub idle_timeout_minutes: u64,
    /// Unix ms: the session's absolute end (12 h for admins, 72 h for enterprise and VIP, 30
    /// days otherwise).
    pub expires_at: u64,
    /// Whether this is the session the request came with.
    #[serde(default)]
    pub current: bool,
}

/// The account's open sessions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

/// A password change. The owner gives the current password; an admin changing someone else's
/// need not.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    pub new_password: String,
}

/// A changed password: every other session of the account has ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordChanged {
    pub sessions_ended: u32,
}

/// Starts an email change: the new address, and the current password (the owner's proof).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartEmailChange {
    #[cfg_attr(feature = "openapi", schema(format = Email))]
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
}

/// An email change waiting for its code.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailChangeStarted {
    /// The new address, normalised; a code was sent there.
    #[cfg_attr(feature = "openapi", schema(format = Email))]
    pub pending_email: String,
    /// Seconds the code stays valid.
    pub expires_in: u64,
}

/// A one-time code: an email change's, or the first code of a TOTP or SMS enrolment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    pub code: String,
}

/// The current password, where a change needs the recent authentication it proves (optional
/// body: an admin acting on someone else need not give it).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordProof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
}

/// A started TOTP enrolment: the secret, for the authenticator app.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolment {
    /// Base32.
    pub secret: String,
    pub otpauth_uri: String,
    /// The `otpauth_uri` as a QR code (SVG).
    pub qr_svg: String,
    pub digits: u32,
    /// Seconds per code.
    pub period: u64,
}

/// A confirmed second factor. A TOTP confirmation also answers the ten recovery codes, shown
/// only now; an SMS one the masked number.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactorEnrolled {
    pub enrolled: Factor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
    /// The enrolled number, masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Starts an SMS enrolment: the number (E.164 or as people type it) and the current password.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolSms {
    pub phone_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
}

/// An SMS enrolment waiting for the code the number received.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsEnrolment {
    /// The number, masked.
    pub pending_phone: String,
    /// Seconds the code stays valid.
    pub expires_in: u64,
}

/// A new verification code is on its way to the account's address (the earlier ones still
/// work until they expire).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationSent {
    /// Always `email`.
    pub sent: Factor,
    /// Seconds the code stays valid.
    pub expires_in: u64,
}

/// Something that happened to the account's security (a login, a factor enrolled, a lockout).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityEvent {
    pub kind: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub at: String,
    /// What the event records (its fields depend on the kind; never a secret).
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub detail: Value,
}

/// The account's latest security events, newest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityEvents {
    pub events: Vec<SecurityEvent>,
}

/// One change to the account: who made it, from what to what, and when. Never personal data.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// create, profile_update, tier_change, password_change, email_change, disable, enable,
    /// provision.
    pub action: String,
    /// Who made the change: `user:<id>:<role>`, `system`, `anonymous`.
    pub actor: String,
    pub old: Option<String>,
    pub new: Option<String>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub at: String,
}

/// The account's audit trail, oldest first.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// Disables or re-enables an account, edge → origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountStatus {
    pub disabled: bool,
}

/// A disabled or re-enabled account; disabling ends every session of it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChanged {
    pub id: String,
    pub disabled: bool,
    /// Sessions ended (when disabling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_ended: Option<u32>,
}

/// What the service knows of an account's use: its age, engagement, segment and cohort, the
/// churn model's prediction, a tier recommendation, the last 30 days' activity by kind, and
/// (added by the edge) the API requests of the current window.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insights {
    pub user_id: String,
    pub tier: Tier,
    pub account_age_days: u64,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub last_login_at: Option<String>,
    pub limits: Limits,
    /// The gate's count of the current window (the edge adds it; the origin does not know it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    pub engagement: crate::analytics::Engagement,
    /// new, power_user, engaged, casual or dormant.
    pub segment: String,
    /// The signup month, `YYYY-MM`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9]{4}-[0-9]{2}$"))]
    pub cohort: String,
    pub churn: Churn,
    pub tier_recommendation: crate::analytics::Recommendation,
    /// Events of the last 30 days, by kind.
    pub activity_30d: std::collections::BTreeMap<String, u64>,
}

/// The API requests of the caller's current rolling window.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub api_requests: ApiRequests,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequests {
    /// Requests counted in the current window (null: an unlimited tier, not counted).
    pub used: Option<u32>,
    pub limit: Option<u32>,
    pub window_secs: u64,
}

/// The churn model's prediction, when one is available.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Churn {
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factors: Option<Vec<ChurnFactor>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_auc: Option<f64>,
    /// Why no prediction is available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Churn {
    /// No prediction, and why.
    pub fn unavailable(reason: &str) -> Self {
        Churn {
            available: false,
            probability: None,
            factors: None,
            model_auc: None,
            reason: Some(reason.to_owned()),
        }
    }
}

/// One feature's contribution to the churn prediction.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnFactor {
    pub factor: String,
    pub contribution: f64,
    /// raises or lowers.
    pub effect: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_without_disabled_integrations_says_nothing_of_them() {
        let profile = crate::profile::defaults(Tier::Premium).ok();
        let Some(profile) = profile else { return };
        let user = User {
            id: "usr_00000000000000000000000000000001".into(),
            email: "a@example.com".into(),
            email_verified: false,
            role: Role::User,
            tier: Tier::Premium,
            display_name: None,
            language: profile.language,
            timezone: profile.timezone,
            ai_preferences: profile.ai_preferences,
            security_settings: profile.security_settings,
            limits: Tier::Premium.limits().clone(),
            version: 2,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        };
        let quiet = serde_json::to_value(Upgraded { user: user.clone(), integrations_disabled: vec![] });
        assert!(quiet.is_ok_and(|v| v.get("integrations_disabled").is_none() && v["display_name"].is_null()));
        let loud = Upgraded { user, integrations_disabled: vec!["spotify".into()] };
        let text = serde_json::to_string(&loud).unwrap_or_default();
        assert!(serde_json::from_str::<Upgraded>(&text).is_ok_and(|u| u == loud));
    }

    #[test]
    fn optional_members_are_omitted_as_before() {
        let enabled = StatusChanged { id: "usr_1".into(), disabled: false, sessions_ended: None };
        assert_eq!(
            serde_json::to_value(&enabled).ok(),
            Some(serde_json::json!({ "id": "usr_1", "disabled": false }))
        );
        let sms = FactorEnrolled {
            enrolled: Factor::Sms,
            recovery_codes: None,
            phone: Some("+33 6** ** ** 78".into()),
        };
        assert_eq!(
            serde_json::to_value(&sms).ok(),
            Some(serde_json::json!({ "enrolled": "sms", "phone": "+33 6** ** ** 78" }))
        );
        // An audit entry without values says so with nulls, as the log always did.
        let entry = AuditEntry {
            action: "password_change".into(),
            actor: "system".into(),
            old: None,
            new: None,
            at: "2026-01-01T00:00:00Z".into(),
        };
        assert!(serde_json::to_value(&entry).is_ok_and(|v| v["old"].is_null() && v.get("new").is_some()));
    }

    #[test]
    fn a_session_from_the_gate_is_not_current_until_the_list_says_so() {
        let stored = serde_json::json!({
            "id": "s1", "device_id": null, "user_agent": null, "ip": "127.0.0.1",
            "created_at": 1, "last_seen": 2, "idle_timeout_minutes": 30, "expires_at": 3,
        });
        assert!(serde_json::from_value::<Session>(stored).is_ok_and(|s| !s.current));
    }

    #[test]
    fn a_signup_answer_is_told_apart_by_its_status() {
        let pending = serde_json::json!({
            "id": "usr_1", "status": PENDING_PARENTAL_CONSENT,
            "parental_consent_expires_at": "2026-01-04T00:00:00Z",
        });
        assert!(matches!(serde_json::from_value::<Signup>(pending), Ok(Signup::Pending(_))));
    }
}
