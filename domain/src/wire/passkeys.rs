//! passkeys: the wire types of this area (see `wire`): the account's passkeys (list entry,
//! registration, rename, removal) and the options envelopes of the WebAuthn ceremonies (a
//! passwordless sign-in, a login's second factor, a registration).
//!
//! The WebAuthn options and the authenticator's answers are webauthn-rs / WebAuthn JSON: they
//! stay opaque JSON values here (documented as objects), inside typed envelopes; the origin (the
//! relying party) is the only one to read them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::passkey::PasskeyKind;
use crate::wire::Factor;

/// A stored credential as its owner sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passkey {
    /// The credential id, base64url.
    pub id: String,
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub label: String,
    /// passkey: discoverable (passwordless sign-in and second factor); security_key: a roaming
    /// key used as second factor.
    pub kind: PasskeyKind,
    /// The authenticator model (the authenticator's claim without attestation).
    pub aaguid: String,
    pub backup_eligible: bool,
    /// Synced to other devices (a password manager).
    pub backup_state: bool,
    /// Transports the authenticator named (internal, usb, nfc, ble, hybrid), as it named them.
    #[serde(default)]
    pub transports: Value,
    pub counter: u32,
    /// RFC 3339.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// RFC 3339; null before the first use.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub last_used_at: Option<String>,
}

/// `GET /api/v1/users/{id}/passkeys`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyList {
    pub passkeys: Vec<Passkey>,
}

/// `POST /api/v1/users/{id}/passkeys/options`: the recent authentication a registration needs
/// (the current password, or nothing when the session stepped up in the last five minutes) and
/// the kind of authenticator asked for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationOptionsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    #[serde(default)]
    pub kind: PasskeyKind,
}

/// Edge → origin: a registration's start, with the session's step-up the edge vouches for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationStart {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up_at: Option<u64>,
    #[serde(default)]
    pub kind: PasskeyKind,
}

impl RegistrationStart {
    /// The public request, with the step-up the edge saw on the session (never the client's).
    pub fn new(request: RegistrationOptionsRequest, step_up_at: Option<u64>) -> Self {
        Self { current_password: request.current_password, step_up_at, kind: request.kind }
    }
}

/// The 200 of `POST /api/v1/users/{id}/passkeys/options`: the options for
/// `navigator.credentials.create`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationOptions {
    /// Send it back with the authenticator's answer.
    pub ceremony_id: String,
    /// PublicKeyCredentialCreationOptions in their JSON form (base64url); user verification
    /// required; a passkey asks for a resident key.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub public_key: Value,
    /// Seconds the ceremony stays open (300).
    pub expires_in: u64,
}

/// `POST /api/v1/users/{id}/passkeys`: the authenticator's answer to a registration (forwarded
/// as it is to the origin).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPasskeyRequest {
    pub ceremony_id: String,
    /// The authenticator's answer in its JSON form (PublicKeyCredential.toJSON(), base64url
    /// fields), a WebAuthnCredential.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub credential: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub label: Option<String>,
}

/// `PATCH /api/v1/users/{id}/passkeys/{credential}`: a new label.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenamePasskeyRequest {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub label: String,
}

/// `DELETE /api/v1/users/{id}/passkeys/{credential}` (optional body): a fresh proof for a
/// sensitive change, the current password and, when a factor is enrolled, a code from it; or
/// nothing when the session stepped up (POST /api/v1/auth/step-up) in the last 5 minutes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorProof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Factor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// With method webauthn: the authenticator's answer (a WebAuthnCredential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub credential: Option<Value>,
}

/// Edge → origin: a proof for a sensitive change, with the session's step-up the edge vouches
/// for (never the client's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VouchedProof {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Factor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up_at: Option<u64>,
}

impl VouchedProof {
    pub fn new(proof: FactorProof, step_up_at: Option<u64>) -> Self {
        Self {
            current_password: proof.current_password,
            method: proof.method,
            code: proof.code,
            credential: proof.credential,
            step_up_at,
        }
    }
}

/// How a passwordless sign-in's options are meant to be used.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mediation {
    /// Also offered as the browser's passkey autofill.
    Conditional,
}

/// The 200 of `POST /api/v1/auth/passkey/options`: options for a discoverable credential.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyLoginOptions {
    /// Send it back with the authenticator's answer (POST /api/v1/auth/passkey).
    pub ceremony_id: String,
    /// PublicKeyCredentialRequestOptions in their JSON form (base64url), for
    /// navigator.credentials.get.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub public_key: Value,
    pub mediation: Mediation,
    /// Seconds the ceremony stays open (300).
    pub expires_in: u64,
}

/// The options of an assertion by one of the account's credentials (a login's second factor,
/// a step-up): for navigator.credentials.get.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = WebAuthnRequestOptions))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionOptions {
    /// PublicKeyCredentialRequestOptions in their JSON form (base64url), for
    /// navigator.credentials.get (e.g. @simplewebauthn/browser's startAuthentication
    /// optionsJSON).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub public_key: Value,
    /// Seconds the ceremony stays open (300).
    pub expires_in: u64,
}

/// `POST /api/v1/auth/mfa/webauthn`: the login challenge whose passkey assertion to start.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaWebauthnRequest {
    pub challenge_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_step_up_is_never_forwarded() {
        let request: Result<RegistrationOptionsRequest, _> =
            serde_json::from_str(r#"{"current_password":"x","step_up_at":1}"#);
        assert!(request.is_err());
        let start = RegistrationStart::new(RegistrationOptionsRequest::default(), None);
        assert_eq!(serde_json::to_value(start).ok(), Some(serde_json::json!({ "kind": "passkey" })));
    }

    #[test]
    fn a_passkey_without_use_says_null() {
        let value = serde_json::json!({
            "id": "abc", "label": "Passkey", "kind": "security_key", "aaguid": "0",
            "backup_eligible": false, "backup_state": false, "transports": null, "counter": 0,
            "created_at": "2026-01-01T00:00:00Z", "last_used_at": null,
        });
        let passkey: Passkey = serde_json::from_value(value.clone()).expect("a passkey");
        assert_eq!(serde_json::to_value(passkey).ok(), Some(value));
    }
}
