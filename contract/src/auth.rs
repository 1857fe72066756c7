//! The auth operations: sign-in (password, second factor), the token's introspection, refresh,
//! logout, step-up, activation and recovery (`/api/v1/auth/*`), and the public documents
//! (`/health`, `/.well-known/jwks.json`, `/api/v1/openapi.json`).
//!
//! The statuses are what the edge (`src/routes.rs`, `src/sessions.rs`) and the origin
//! (`origin/src/protection.rs`, `recovery.rs`) can answer: a body is read as JSON (415, 413,
//! 400), the unauthenticated operations are limited per client address (429), the origin's
//! refusals pass through, and an unreachable or failing origin is a 502 or 503.

use domain::problem::Problem;
use domain::risk::{Assessment, Signal};
use domain::token::AccessClaims;
use domain::wire::auth::{
    ActivateRequest, Activated, CodeSent, EmailVerified, ForgotPasswordRequest, Health, Jwk, Jwks,
    LoginAnswer, LoginRequest, MfaChallenge, MfaRequest, MfaSendRequest, OrgMembership, OriginHealth,
    PasswordReset, RefreshRequest, ResetPasswordRequest, ResetRequested, StepUpPending, StepUpRequest,
    SteppedUp, TokenPair, VerifyEmailRequest,
};
use utoipa::OpenApi;

use crate::common::BadRequest;

#[derive(OpenApi)]
#[openapi(
    paths(
        health,
        jwks,
        openapi,
        login,
        introspect_token,
        refresh,
        logout,
        complete_mfa,
        send_mfa_code,
        activate,
        step_up,
        forgot_password,
        reset_password,
        verify_email,
    ),
    components(schemas(
        LoginRequest,
        LoginAnswer,
        OrgMembership,
        TokenPair,
        MfaChallenge,
        MfaRequest,
        MfaSendRequest,
        CodeSent,
        RefreshRequest,
        StepUpRequest,
        StepUpPending,
        SteppedUp,
        ActivateRequest,
        Activated,
        ForgotPasswordRequest,
        ResetRequested,
        ResetPasswordRequest,
        PasswordReset,
        VerifyEmailRequest,
        EmailVerified,
        Health,
        OriginHealth,
        Jwks,
        Jwk,
        AccessClaims,
        Assessment,
        Signal,
    ))
)]
pub struct Api;

/// Edge health and origin reachability (cached for 5 s per isolate, limited per address)
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    responses(
        (status = 200, description = "The origin answered a signed call", body = Health,
            headers(
                ("X-Health-Cache" = String, description = "`miss`: this answer probed the origin; `hit`: it is a probe's outcome less than 5 s old"),
                ("RateLimit-Policy" = String, description = "draft-ietf-httpapi-ratelimit-headers: \"<policy>\";q=<quota>;w=<window seconds> (absent for unlimited tiers)"),
                ("RateLimit" = String, description = "\"<policy>\";r=<remaining>;t=<seconds until remaining grows>"),
            )
        ),
        (status = 429, description = "Rate limited: the per-address quota of health probes (IP_HEALTH_PER_MINUTE, default 60 per minute; IPv6 per /64)",
            body = Problem, content_type = "application/problem+json",
            headers(
                ("RateLimit-Policy" = String, description = "draft-ietf-httpapi-ratelimit-headers: \"<policy>\";q=<quota>;w=<window seconds> (absent for unlimited tiers)"),
                ("RateLimit" = String, description = "\"<policy>\";r=<remaining>;t=<seconds until remaining grows>"),
                ("Retry-After" = i64, description = "Seconds after which a retry is admitted"),
            )
        ),
        (status = 503, description = "The origin did not answer (the body says only that, with `version` and `origin.reachable` false; the cause is logged at the edge)",
            body = Problem, content_type = "application/problem+json",
            headers(
                ("X-Health-Cache" = String, description = "`miss`: this answer probed the origin; `hit`: it is a probe's outcome less than 5 s old"),
            )
        ),
    )
)]
pub fn health() {}

/// Public keys that verify access tokens
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    responses(
        (status = 200, description = "The key set", body = Jwks),
    )
)]
pub fn jwks() {}

/// This document
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    responses(
        (status = 200, description = "OpenAPI 3.1", body = inline(Object), content_type = "application/json"),
    )
)]
pub fn openapi() {}

/// Email and password → access token
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "login",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Tokens (with `org` when the user is a member of an organization)", body = LoginAnswer,
            headers(
                ("RateLimit-Policy" = String, description = "draft-ietf-httpapi-ratelimit-headers: \"<policy>\";q=<quota>;w=<window seconds> (absent for unlimited tiers)"),
                ("RateLimit" = String, description = "\"<policy>\";r=<remaining>;t=<seconds until remaining grows>"),
            )
        ),
        (status = 400, response = BadRequest),
        (status = 401, description = "Wrong email or password (one answer for both); or mfa-required with challenge_id and methods only (see MfaChallenge; nothing about the risk assessment, which the user reads afterwards in their security events); or login-refused",
            body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account is scheduled for erasure (erasure-pending, with erasure_due_at and the cancel path)",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited: the per-address quota of login and signup; or the account's softlock after failed logins",
            body = Problem, content_type = "application/problem+json",
            headers(
                ("RateLimit-Policy" = String, description = "draft-ietf-httpapi-ratelimit-headers: \"<policy>\";q=<quota>;w=<window seconds> (absent for unlimited tiers)"),
                ("RateLimit" = String, description = "\"<policy>\";r=<remaining>;t=<seconds until remaining grows>"),
                ("Retry-After" = i64, description = "Seconds after which a retry is admitted"),
            )
        ),
        (status = 503, description = "overloaded: too many password checks at once; retry after Retry-After (or the origin is unavailable)",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds to wait before retrying"))),
    )
)]
pub fn login() {}

/// The claims of the caller's access token, if it is valid and its session is still open
#[utoipa::path(
    get,
    path = "/api/v1/auth/token",
    operation_id = "introspectToken",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The token's claims", body = AccessClaims),
        (status = 401, description = "Missing, expired or invalid token, or its session was revoked (logout, password change) or timed out",
            body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn introspect_token() {}

/// Rotate: a new access and refresh token. A token reused after the short grace window ends its whole session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    operation_id = "refresh",
    request_body(content = RefreshRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The new pair (the same pair for concurrent refreshes with one token)", body = TokenPair),
        (status = 400, response = BadRequest),
        (status = 401, description = "Unknown, malformed, reused, revoked or expired", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn refresh() {}

/// End this session (effective on the next request)
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "logout",
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "Invalid token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn logout() {}

/// Complete an MFA challenge
#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa",
    operation_id = "completeMfa",
    request_body(content = MfaRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Tokens", body = LoginAnswer),
        (status = 400, description = "Malformed body, or a method the challenge does not offer", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong, expired or reused code; or the challenge is unknown, expired or ended", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account is scheduled for erasure (erasure-pending)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Per-address limit, or too many wrong second-factor codes for this account (Retry-After)",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds after which a retry is admitted"))),
    )
)]
pub fn complete_mfa() {}

/// Send a one-time code for a challenge by email or SMS (the method must be among the challenge's methods)
#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/send",
    operation_id = "sendMfaCode",
    request_body(content = MfaSendRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Sent", body = CodeSent),
        (status = 400, description = "Malformed body, or the method is not offered or not sent by code", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown challenge", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The phone number was removed since the challenge; log in again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn send_mfa_code() {}

/// Activate a provisioned account with its activation token and a first password
#[utoipa::path(
    post,
    path = "/api/v1/auth/activate",
    operation_id = "activate",
    request_body(content = ActivateRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Activated", body = Activated),
        (status = 400, description = "Malformed body, or the password policy (the rule named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown or expired token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded: too many password checks at once; retry after Retry-After",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds to wait before retrying"))),
    )
)]
pub fn activate() {}

/// Step up: prove your identity again (password, and a second-factor code when one is enrolled). For 5 minutes the session may then weaken its security settings or remove a factor.
#[utoipa::path(
    post,
    path = "/api/v1/auth/step-up",
    operation_id = "stepUp",
    security(("bearerAuth" = [])),
    request_body(content = StepUpRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Stepped up", body = SteppedUp),
        (status = 202, description = "A code was texted (method sms without a code), or, with method webauthn and no credential, the options of a passkey assertion (public_key) to answer in a second call", body = StepUpPending),
        (status = 400, description = "Malformed body or a method that is not one of your factors", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong password or code, or no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "step-up-required: a factor is enrolled and no code was given (the problem lists the methods)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The phone number was removed", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tier's quota, or too many wrong passwords or codes for this account (Retry-After)",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds after which a retry is admitted"))),
        (status = 503, description = "overloaded: password checks saturated; retry after Retry-After",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds to wait before retrying"))),
    )
)]
pub fn step_up() {}

/// Ask for a password-reset code by email
///
/// Always 202 for a well-formed address, with the same body whether or not an account has it; the lookup and the email happen after the answer. The code (single use, 30 minutes) is sent to the account's address, in the profile's language; at most 3 codes per account per hour (further requests are answered the same and send nothing). Limited per client address (IP_RECOVERY_PER_HOUR).
#[utoipa::path(
    post,
    path = "/api/v1/auth/password/forgot",
    operation_id = "forgotPassword",
    request_body(content = ForgotPasswordRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted (whether or not the address has an account)", body = ResetRequested),
        (status = 400, description = "The body is not JSON of this shape, or the address is malformed (validation-failed, the rule named)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn forgot_password() {}

/// Set a new password with a reset code
///
/// The code works once. The new password follows the policy. In one transaction the password is replaced, every reset code of the account voided, the softlock counters cleared, an audit entry and a security event written, and a notice emailed; then every session of the account ends (access and refresh tokens are refused from the next request).
#[utoipa::path(
    post,
    path = "/api/v1/auth/password/reset",
    operation_id = "resetPassword",
    request_body(content = ResetPasswordRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The password is reset and every session ended", body = PasswordReset),
        (status = 400, description = "The body is not JSON of this shape, or the new password breaks the policy (validation-failed, the rule named; the code is not spent)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The code is unknown, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded: too many password hashes at once, or the origin is out of time; retry after Retry-After",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds to wait before retrying"))),
    )
)]
pub fn reset_password() {}

/// Confirm the account's email address with the code sent to it
///
/// Every new account is sent a verification code (single use, 72 hours). Using it marks the address verified: the profile's email_verified becomes true with a new version, which the owner reads at once. The answer tells no more than that, since the code proves only that its holder reads the mailbox.
#[utoipa::path(
    post,
    path = "/api/v1/auth/email/verify",
    operation_id = "verifyEmail",
    request_body(content = VerifyEmailRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The address is verified", body = EmailVerified),
        (status = 400, description = "The body is not JSON of this shape", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The code is unknown, used or expired", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn verify_email() {}
