//! The passkeys operations: the passwordless sign-in (options, then the authenticator's
//! answer), the assertion options of a login's second factor, and the account's passkeys
//! (list, register, rename, remove). The WebAuthn options and answers are WebAuthn JSON, opaque
//! objects inside typed envelopes. The public sign-in operations are admitted through the
//! per-address gate of sign-ins (429); the account's through the user's gate.

use domain::problem::Problem;
use domain::wire::auth::LoginAnswer;
use domain::wire::passkeys::{
    AssertionOptions, FactorProof, Mediation, MfaWebauthnRequest, Passkey, PasskeyKind, PasskeyList,
    PasskeyLoginOptions, RegisterPasskeyRequest, RegistrationOptions, RegistrationOptionsRequest,
    RenamePasskeyRequest,
};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::users::UserPath;

#[derive(OpenApi)]
#[openapi(
    paths(
        passkey_login_options,
        passkey_login,
        mfa_webauthn_options,
        list_passkeys,
        register_passkey,
        passkey_registration_options,
        rename_passkey,
        remove_passkey,
    ),
    components(schemas(
        AssertionOptions,
        FactorProof,
        Mediation,
        MfaWebauthnRequest,
        Passkey,
        PasskeyKind,
        PasskeyList,
        PasskeyLoginOptions,
        PasskeySignIn,
        RegisterPasskeyRequest,
        RegistrationOptions,
        RegistrationOptionsRequest,
        RenamePasskeyRequest,
    ))
)]
pub struct Api;

/// `POST /api/v1/auth/passkey`'s body (the edge reads it as
/// `domain::wire::auth::SignInRequest<PasskeyCredentials>`, a generic this document cannot
/// derive).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PasskeySignIn {
    /// The ceremony of POST /api/v1/auth/passkey/options.
    ceremony_id: String,
    /// The authenticator's answer in its JSON form (PublicKeyCredential.toJSON(), base64url
    /// fields), a WebAuthnCredential.
    #[schema(value_type = Object)]
    credential: (),
    /// The device_token a previous successful login answered.
    device_token: Option<String>,
}

/// A user's id and one of their credentials in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct CredentialPath {
    /// The user's id.
    #[param(pattern = "^usr_[0-9a-f]{32}$")]
    id: String,
    /// The credential id (base64url).
    credential: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/passkey/options",
    operation_id = "passkeyLoginOptions",
    summary = "Start a passwordless sign-in: options for a discoverable credential (mediation conditional: passkey autofill)",
    responses(
        (status = 200, description = "Options", body = PasskeyLoginOptions),
    )
)]
pub fn passkey_login_options() {}

#[utoipa::path(
    post,
    path = "/api/v1/auth/passkey",
    operation_id = "passkeyLogin",
    summary = "Complete a passwordless sign-in with a passkey (user verification required): tokens and a session, as after a password login",
    request_body(content = PasskeySignIn, content_type = "application/json"),
    responses(
        (status = 200, description = "Signed in", body = LoginAnswer),
        (status = 400, description = "Malformed body or credential", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown or used ceremony, unknown passkey, signature not verified, a disabled account, or the passkey refused (reason passkey_counter_regressed or passkey_backup_eligibility_changed: recorded as a security event)",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn passkey_login() {}

#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/webauthn",
    operation_id = "mfaWebauthnOptions",
    summary = "Options of a passkey assertion for a login challenge that offers webauthn; answer them with POST /api/v1/auth/mfa (method webauthn, credential)",
    request_body(content = MfaWebauthnRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Options", body = AssertionOptions),
        (status = 400, description = "Malformed body, or the challenge does not offer webauthn", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown or expired challenge", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account has no passkey", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn mfa_webauthn_options() {}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/passkeys",
    operation_id = "listPasskeys",
    summary = "List the account's passkeys and security keys",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "The passkeys", body = PasskeyList),
        (status = 401, description = "Missing, invalid or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn list_passkeys() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/passkeys",
    operation_id = "registerPasskey",
    summary = "Complete a registration with the authenticator's answer",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = RegisterPasskeyRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Registered", body = Passkey),
        (status = 400, description = "Malformed body or credential (bad-request), or the answer does not verify or the label is invalid (validation-failed)",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or revoked token; or the ceremony is unknown, used or expired",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your account, or the authenticator model is not allowed on this tier (recorded as a security event)",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Registered already, or the account holds 20 passkeys", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn register_passkey() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/passkeys/options",
    operation_id = "passkeyRegistrationOptions",
    summary = "Start registering a passkey or security key: needs a recent authentication (the current password, or this session's step-up in the last 5 minutes)",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = RegistrationOptionsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Options for navigator.credentials.create", body = RegistrationOptions),
        (status = 400, description = "Malformed body, or a field is unknown", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong current password, or missing/invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "20 passkeys already, or the tier accepts only attested hardware keys and none can be attested here",
            body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded: too many password checks at once; retry after Retry-After (or the origin is unavailable)",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds to wait before retrying"))),
    )
)]
pub fn passkey_registration_options() {}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}/passkeys/{credential}",
    operation_id = "renamePasskey",
    summary = "Rename a passkey",
    security(("bearerAuth" = [])),
    params(CredentialPath),
    request_body(content(
        (RenamePasskeyRequest = "application/json"),
        (RenamePasskeyRequest = "application/merge-patch+json"),
    )),
    responses(
        (status = 200, description = "Renamed", body = Passkey),
        (status = 400, description = "Malformed body, or an invalid label (validation-failed)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not your account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such passkey", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn rename_passkey() {}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}/passkeys/{credential}",
    operation_id = "removePasskey",
    summary = "Remove a passkey: a sensitive change (a step-up of this session in the last 5 minutes, or the current password and a second factor in the body)",
    security(("bearerAuth" = [])),
    params(CredentialPath),
    request_body(content = Option<FactorProof>, content_type = "application/json"),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed body or credential", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong password or factor; or missing, invalid or revoked token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "step-up-required (methods listed), or not your account", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such passkey", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn remove_passkey() {}
