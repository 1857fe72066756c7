//! auth: the wire types of this area (see `wire`): sign-in (password and second factor), the
//! token pair and its refresh, the step-up, activation and recovery, and the edge ↔ origin
//! calls behind them (`/internal/auth/verify`, `/internal/auth/mfa`, …).
//!
//! Public requests accept unknown fields unless the document says otherwise (a client may send
//! more than the API reads); answers never deny unknown fields in their schemas.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::org::{OrgGrant, OrgRole};
use crate::risk::Assessment;
use crate::wire::{Factor, Role, Tier};

/// `POST /api/v1/auth/login`: email and password.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The device_token a previous successful login answered. A device the server issued a
    /// token to is held back only by its own failed logins and is known to risk scoring; a
    /// client-chosen id proves nothing and is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// A stable id of the client install (ignored: only a device token proves a device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// The credentials of a password sign-in, as the edge forwards them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordCredentials {
    pub email: String,
    pub password: String,
}

/// The credentials of a passwordless sign-in (`POST /api/v1/auth/passkey`): the ceremony and
/// the authenticator's answer, forwarded as they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyCredentials {
    pub ceremony_id: String,
    pub credential: Value,
}

/// A public sign-in body: the credentials and, optionally, the device token a previous
/// login answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignInRequest<C> {
    #[serde(flatten)]
    pub credentials: C,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
}

/// What the edge saw of the client of a sign-in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientContext {
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// Edge → origin: a sign-in to verify (`/internal/auth/verify` with [`PasswordCredentials`],
/// `/internal/auth/webauthn/login` with [`PasskeyCredentials`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignIn<C> {
    #[serde(flatten)]
    pub credentials: C,
    /// The device token a previous successful login returned, if the client kept it.
    #[serde(default)]
    pub device_token: Option<String>,
    #[serde(default)]
    pub context: ClientContext,
}

/// Origin → edge: a sign-in the origin accepted (a password alone, a completed second factor,
/// a passkey). The edge opens the session with it and answers [`LoginAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginVerified {
    pub user_id: String,
    pub tier: Tier,
    pub role: Role,
    /// The profile's version, which the edge's gate records.
    pub version: u64,
    /// The session's idle timeout.
    pub session_timeout_minutes: u64,
    /// The session's absolute lifetime.
    #[serde(default)]
    pub session_absolute_ms: Option<u64>,
    /// The device token for this device, signed by the origin and bound to the account.
    #[serde(default)]
    pub device_token: Option<String>,
    #[serde(default)]
    pub risk: Option<Assessment>,
    /// The member's organization (`None`: none).
    #[serde(default)]
    pub org: Option<OrgGrant>,
    /// When the organization was read (orders the grants a gate receives).
    #[serde(default)]
    pub org_at: Option<u64>,
}

/// The signed-in user's organization, as a login answers it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgMembership {
    /// The organization's id (`org_<32 hex>`).
    pub id: String,
    pub role: OrgRole,
}

/// The tokens a sign-in or a refresh answers with (`RefreshResponse`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RefreshResponse))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    /// Opaque; rotates on every refresh.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    pub session_id: String,
}

/// The 200 answer of a sign-in (`POST /api/v1/auth/login`, `/mfa`, `/passkey`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TokenResponse))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginAnswer {
    pub access_token: String,
    /// Opaque; rotates on every refresh.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    pub session_id: String,
    pub user_id: String,
    /// The effective tier (an organization's while the user is a member).
    pub tier: Tier,
    /// The user's organization, when they are a member of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<OrgMembership>,
    pub role: Role,
    /// Keep it and send it with later logins from this device (signed by the server, bound to
    /// the account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_token: Option<String>,
    /// The login's risk assessment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Assessment>,
}

impl LoginAnswer {
    /// The answer of a sign-in the origin verified, once its session is open with `pair`.
    pub fn new(pair: TokenPair, verified: &LoginVerified, tier: Tier) -> Self {
        Self {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            token_type: pair.token_type,
            expires_in: pair.expires_in,
            session_id: pair.session_id,
            user_id: verified.user_id.clone(),
            tier,
            org: verified.org.as_ref().map(|g| OrgMembership { id: g.org.clone(), role: g.role }),
            role: verified.role,
            device_token: verified.device_token.clone(),
            risk: verified.risk.clone(),
        }
    }
}

/// The extensions of the `mfa-required` problem a login answers (401) when a second factor is
/// needed: the challenge and the factors it offers, nothing about the account or the risk.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaChallenge {
    pub mfa_required: bool,
    pub challenge_id: String,
    /// The factors offered, a passkey (`webauthn`) first.
    pub methods: Vec<Factor>,
}

/// `POST /api/v1/auth/mfa`: a challenge's completion (forwarded as it is to
/// `/internal/auth/mfa`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MfaRequest {
    pub challenge_id: String,
    pub method: Factor,
    /// The code, for every method but webauthn.
    #[serde(default)]
    pub code: String,
    /// For method webauthn: the answer to the options of POST /api/v1/auth/mfa/webauthn
    /// (a WebAuthnCredential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub credential: Option<Value>,
}

/// `POST /api/v1/auth/mfa/send`: a one-time code for a challenge, by email or SMS (also the
/// body of `/internal/auth/mfa/webauthn`, with method `webauthn`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaSendRequest {
    pub challenge_id: String,
    /// `email` or `sms`, one of the challenge's methods.
    pub method: Factor,
}

/// A one-time code was sent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSent {
    /// How it was sent.
    pub sent: Factor,
    /// Seconds the code is valid.
    pub expires_in: u64,
}

/// `POST /api/v1/auth/refresh`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The refresh token of the pair to rotate (a missing one is refused as malformed, 401).
    #[serde(default)]
    pub refresh_token: String,
}

/// `POST /api/v1/auth/step-up` (forwarded as it is to `/internal/users/{id}/step-up`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    /// The second factor, when one is enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Factor>,
    /// Its code; with method sms and no code, a code is texted first (202).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// With method webauthn: the answer to the options a first call without it returned (202),
    /// a WebAuthnCredential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub credential: Option<Value>,
}

/// Origin → edge: the step-up is proved, at this time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpProved {
    pub stepped_up_at: u64,
}

/// The 202 of a step-up that needs a second call: a code was texted, or the options of a
/// passkey assertion to answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StepUpPending {
    /// A code was texted (`{"sent": "sms"}`).
    CodeSent { sent: Factor },
    /// The options of a passkey assertion.
    Passkey {
        #[cfg_attr(feature = "openapi", schema(value_type = Object))]
        public_key: Value,
        expires_in: u64,
    },
}

/// The 200 of a step-up.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteppedUp {
    /// Always true.
    pub stepped_up: bool,
    /// Seconds the step-up covers sensitive changes.
    pub valid_for_secs: u64,
}

/// `POST /api/v1/auth/activate` (forwarded as it is to `/internal/auth/activate`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    pub token: String,
    pub password: String,
}

/// The 200 of an activation.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activated {
    pub user_id: String,
    /// Always true.
    pub activated: bool,
}

/// `POST /api/v1/auth/password/forgot`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    pub email: String,
}

/// The 202 of a reset request, the same whether or not an account has the address.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRequested {
    /// Always `accepted`.
    pub status: String,
    pub detail: String,
}

/// `POST /api/v1/auth/password/reset`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    pub code: String,
    pub new_password: String,
}

/// Origin → edge: whose password was reset (the edge then ends their sessions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordResetDone {
    pub user_id: String,
    pub reset: bool,
}

/// The 200 of a password reset.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordReset {
    /// Always true.
    pub reset: bool,
    /// How many sessions of the account ended.
    pub sessions_ended: u64,
}

/// `POST /api/v1/auth/email/verify`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    pub code: String,
}

/// The 200 of an email verification.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailVerified {
    pub user_id: String,
    /// Always true.
    pub email_verified: bool,
}

/// Origin → edge: the signed no-op `/internal/ping` that `GET /health` probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    pub status: String,
    pub version: String,
    pub time_ms: u64,
}

/// `GET /health`: the edge's version and whether the origin answered a signed call.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The edge's version.
    pub version: String,
    pub origin: OriginHealth,
}

/// The origin as `GET /health` saw it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginHealth {
    pub reachable: bool,
    /// How long the signed call took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// The origin's version, when it said.
    #[serde(default)]
    pub version: Option<String>,
}

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037 OKP).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// A retired key's end (seconds since the epoch): tokens it signed are refused from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified() -> LoginVerified {
        serde_json::from_value(serde_json::json!({
            "user_id": "usr_1", "tier": "free", "role": "user", "version": 3,
            "session_timeout_minutes": 60, "session_absolute_ms": 1000, "device_token": "dt1.a.b",
            "risk": { "score": 0.0, "signals": [] }, "org": null, "org_at": 5,
        }))
        .unwrap()
    }

    #[test]
    fn a_login_answer_names_the_org_only_for_a_member() {
        let pair = TokenPair {
            access_token: "a".into(),
            refresh_token: "r".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            session_id: "s".into(),
        };
        let answer = serde_json::to_value(LoginAnswer::new(pair, &verified(), Tier::Free)).unwrap();
        assert!(answer.get("org").is_none());
        assert_eq!(answer["device_token"], "dt1.a.b");
        assert_eq!(answer["tier"], "free");
    }

    #[test]
    fn a_sign_in_flattens_its_credentials() {
        let body: SignInRequest<PasswordCredentials> =
            serde_json::from_str(r#"{"email":"a@b.c","password":"p","device_token":"dt1.x.y","extra":1}"#)
                .unwrap();
        let forwarded = SignIn {
            credentials: body.credentials,
            device_token: body.device_token,
            context: ClientContext::default(),
        };
        let v = serde_json::to_value(&forwarded).unwrap();
        assert_eq!(v["email"], "a@b.c");
        assert_eq!(v["device_token"], "dt1.x.y");
        let back: SignIn<PasswordCredentials> = serde_json::from_value(v).unwrap();
        assert_eq!(back.credentials.password, "p");
    }

    #[test]
    fn a_step_up_refuses_unknown_fields_and_pending_answers_parse() {
        assert!(serde_json::from_str::<StepUpRequest>(r#"{"step_up_at":1}"#).is_err());
        let sms: StepUpPending = serde_json::from_str(r#"{"sent":"sms"}"#).unwrap();
        assert_eq!(sms, StepUpPending::CodeSent { sent: Factor::Sms });
        let passkey: StepUpPending = serde_json::from_str(r#"{"public_key":{},"expires_in":300}"#).unwrap();
        assert!(matches!(passkey, StepUpPending::Passkey { .. }));
    }
}
