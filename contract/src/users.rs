//! The users operations: signup, the profile (read, update), the tier change, insights, the
//! session list, password and email changes, TOTP and SMS enrolment, security events, the
//! audit log, and an admin's disable and enable.
//!
//! Every operation under `/api/v1/users/{id}` answers 404 for an id that is not well formed,
//! 401 without a valid token, 403 on another user's account (unless the caller is an admin),
//! 429 when the caller's quota is spent, and 502/503 when the origin does not answer; one that
//! takes a body answers 400, 413 and 415 for a bad, too large or non-JSON one.

use domain::analytics::{Components, Engagement, Recommendation};
use domain::problem::Problem;
use domain::profile::{AiPreferences, MfaMethod, PersonalizationLevel, SecuritySettings};
use domain::tier::Limits;
use domain::wire::users::{
    ApiRequests, AuditEntry, AuditLog, ChangePassword, Churn, ChurnFactor, Code, CreateUser,
    EmailChangeStarted, EnrolSms, FactorEnrolled, Insights, PasswordChanged, PasswordProof, PendingSignup,
    ProfilePatch, SecurityEvent, SecurityEvents, Session, SessionList, SmsEnrolment, StartEmailChange,
    StatusChanged, TotpEnrolment, UpgradeRequest, Upgraded, Usage, User, VerificationSent,
};
use utoipa::openapi::response::Response;
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, OpenApi, ToResponse};

use crate::common::{self, BadRequest, Forbidden, NotFound, Unauthenticated};

/// A user's id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct UserPath {
    /// The user's id.
    #[param(pattern = "^usr_[0-9a-f]{32}$")]
    id: String,
}

/// A user's id and one of their sessions in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct SessionPath {
    /// The user's id.
    #[param(pattern = "^usr_[0-9a-f]{32}$")]
    id: String,
    /// The session's id.
    sid: String,
}

/// 412: the account changed since the version the request names (`If-Match`), or while the
/// request was processed.
pub struct PreconditionFailed;

impl<'s> ToResponse<'s> for PreconditionFailed {
    fn response() -> (&'s str, RefOr<Response>) {
        (
            "PreconditionFailed",
            RefOr::T(
                common::problem(
                    "The profile is at another version than If-Match names (current_version says which); read it again and retry",
                )
                .build(),
            ),
        )
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "createUser",
    summary = "Create a user (public signup: free tier; admin: any tier)",
    description = "Without a token, a public signup: the free tier and the user role only, limited per client address. With an admin's token, any tier and role, counted against the admin's quota.",
    security((), ("bearerAuth" = [])),
    request_body(content = CreateUser, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = User, headers(
            ("ETag" = String, description = "The profile's version, as a strong validator"),
            ("Location" = String, description = "The new user's URL"),
        )),
        (status = 202, description = "Under 13: created disabled until a parent consents (the link went to parent_email)", body = PendingSignup),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "A paid tier or admin role without being admin, or a feature the tier lacks", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The email is taken (also by a look-alike of it: case, width, Unicode domain or Punycode)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn create_user() {}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    operation_id = "readUser",
    summary = "Read a profile",
    description = "Served from the edge's cache when the user's gate vouches that it is not behind an acknowledged write (`x-profile-source: cache`), from the origin otherwise.",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "The profile", body = User, headers(
            ("ETag" = String, description = "The profile's version, as a strong validator"),
        )),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub fn read_user() {}

#[utoipa::path(
    put,
    path = "/api/v1/users/{id}",
    operation_id = "updateUser",
    summary = "Update the fields the caller may change (merge semantics)",
    security(("bearerAuth" = [])),
    params(UserPath, ("If-Match" = Option<String>, Header, description = "The ETag of the version the change applies to")),
    request_body(content = ProfilePatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated profile", body = User, headers(
            ("ETag" = String, description = "The profile's version, as a strong validator"),
        )),
        (status = 400, description = "Unknown field or bad value (each listed in errors), or a malformed If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "Not your account, a field you may not change, or a security setting below your tier's or role's floor (forbidden; errors name the rule); or step-up-required: weakening security_settings needs a step-up in the last 5 minutes, and the problem lists the weakened fields", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
    )
)]
pub fn update_user() {}

#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    operation_id = "patchUser",
    summary = "JSON merge patch (RFC 7396) of the fields the caller may change",
    security(("bearerAuth" = [])),
    params(UserPath, ("If-Match" = Option<String>, Header, description = "The ETag of the version the patch applies to")),
    request_body(content(
        (ProfilePatch = "application/merge-patch+json"),
        (ProfilePatch = "application/json"),
    )),
    responses(
        (status = 200, description = "The updated profile", body = User, headers(
            ("ETag" = String, description = "The profile's version, as a strong validator"),
        )),
        (status = 400, description = "Unknown field or bad value (each listed in errors), or a malformed If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "Not your account, a field you may not change, or a security setting below your tier's or role's floor (forbidden; errors name the rule); or step-up-required: weakening security_settings needs a step-up in the last 5 minutes, and the problem lists the weakened fields", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
    )
)]
pub fn patch_user() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/upgrade",
    operation_id = "upgradeUser",
    summary = "Change tier (user: free and premium; admin: any)",
    description = "A tier change never spends the general quota; it counts against the caller's tier changes per rolling hour (policy `tier-change`; admins are not limited). A downgrade disables the connected integrations the new tier does not allow and names them once, in this answer.",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = UpgradeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The profile with its new tier and limits, and the integrations a downgrade disabled", body = Upgraded, headers(
            ("ETag" = String, description = "The profile's version, as a strong validator"),
        )),
        (status = 400, description = "Bad tier", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "Not your account, or a move only an admin can make", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
    )
)]
pub fn upgrade_user() {}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/insights",
    operation_id = "userInsights",
    summary = "Analytics for a user",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "Insights", body = Insights),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub fn user_insights() {}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/sessions",
    operation_id = "listSessions",
    summary = "Active sessions",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "Sessions", body = SessionList),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub fn list_sessions() {}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}/sessions/{sid}",
    operation_id = "deleteSession",
    summary = "End a session (effective on its next request)",
    security(("bearerAuth" = [])),
    params(SessionPath),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, description = "No such user or no such active session", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn delete_session() {}

#[utoipa::path(
    put,
    path = "/api/v1/users/{id}/password",
    operation_id = "changePassword",
    summary = "Change the password (current one required); ends every other session",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = ChangePassword, content_type = "application/json"),
    responses(
        (status = 200, description = "Changed", body = PasswordChanged),
        (status = 400, description = "The new password breaks the policy (the rule is named), or a bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong current password, or no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 429, description = "The caller's quota, or too many wrong current passwords for this account (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn change_password() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/email",
    operation_id = "startEmailChange",
    summary = "Start an email change: the current password is required; a code goes to the new address and a notice to the old one. Nothing changes until the code is confirmed.",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = StartEmailChange, content_type = "application/json"),
    responses(
        (status = 202, description = "Code sent to the new address", body = EmailChangeStarted),
        (status = 400, description = "The address is invalid (the rule is named), or a bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong current password, or no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The address is taken, or already the account's", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn start_email_change() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/email/confirm",
    operation_id = "confirmEmailChange",
    summary = "Complete an email change with the code sent to the new address (5 tries, 10 minutes); the address becomes verified",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = Code, content_type = "application/json"),
    responses(
        (status = 200, description = "The profile", body = User, headers(
            ("ETag" = String, description = "The profile's version, as a strong validator"),
        )),
        (status = 400, description = "Wrong code (the tries left are named), or a bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "No change is pending, or the address was taken meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 412, response = PreconditionFailed),
    )
)]
pub fn confirm_email_change() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/mfa/totp",
    operation_id = "enrolTotp",
    summary = "Start TOTP enrolment (current password required)",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = PasswordProof, content_type = "application/json"),
    responses(
        (status = 201, description = "Secret and otpauth URI", body = TotpEnrolment),
        (status = 400, response = BadRequest),
        (status = 401, description = "Missing or wrong current password, or no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "Already enrolled", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller's quota, or too many wrong current passwords for this account (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn enrol_totp() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/mfa/totp/confirm",
    operation_id = "confirmTotp",
    summary = "Confirm with a first code; answers ten single-use recovery codes",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = Code, content_type = "application/json"),
    responses(
        (status = 200, description = "Enrolled", body = FactorEnrolled),
        (status = 400, description = "Wrong code, or a bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "Nothing pending", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn confirm_totp() {}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}/mfa/totp",
    operation_id = "removeTotp",
    summary = "Remove the authenticator (a fresh proof: password and a factor code, or a recent step-up)",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = Object, content_type = "application/json", description = "The proof: `current_password` and a factor code (`method`, `code`); empty with a recent step-up"),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, description = "Wrong password or code, or no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's account, or step-up-required: give the current password and a factor code, or step up first", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 429, description = "The caller's quota, or too many wrong passwords or codes (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn remove_totp() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/mfa/sms",
    operation_id = "enrolSms",
    summary = "Start SMS enrolment: the current password and a number in E.164 (+ and country code; spaces, dashes, dots and parentheses are ignored); a code is texted to it",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = EnrolSms, content_type = "application/json"),
    responses(
        (status = 202, description = "Code texted", body = SmsEnrolment),
        (status = 400, description = "The number is invalid (the rule is named), or a bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong current password, or no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, description = "The caller's quota, too many wrong current passwords, or the daily texts per number or account (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn enrol_sms() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/mfa/sms/confirm",
    operation_id = "confirmSms",
    summary = "Confirm the number with the texted code (5 tries, 10 minutes); logins then offer `sms`",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = Code, content_type = "application/json"),
    responses(
        (status = 200, description = "Enrolled", body = FactorEnrolled),
        (status = 400, description = "Wrong code (the tries left are named), or a bad body", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "Nothing pending", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn confirm_sms() {}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}/mfa/sms",
    operation_id = "removeSms",
    summary = "Remove the SMS factor (a fresh proof: password and a factor code, or a recent step-up)",
    security(("bearerAuth" = [])),
    params(UserPath),
    request_body(content = Object, content_type = "application/json", description = "The proof: `current_password` and a factor code (`method`, `code`); empty with a recent step-up"),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, description = "Wrong password or code, or no valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's account, or step-up-required: give the current password and a factor code, or step up first", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 429, description = "The caller's quota, or too many wrong passwords or codes (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn remove_sms() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/email/verification",
    operation_id = "resendVerification",
    summary = "Send a new verification code to the account's address",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 202, description = "A new code is on its way (the earlier ones still work until they expire)", body = VerificationSent),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, description = "The address is verified already", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The caller's quota, or 5 verification emails a day for the account", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn resend_verification() {}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/security-events",
    operation_id = "securityEvents",
    summary = "The account's security events, newest first",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "Events", body = SecurityEvents),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub fn security_events() {}

#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/audit",
    operation_id = "readAudit",
    summary = "The account's audit trail, oldest first (the owner or an admin); names changes, never personal data",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "The entries", body = AuditLog),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub fn read_audit() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/disable",
    operation_id = "disableUser",
    summary = "Disable an account (admin); ends its sessions",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "Done", body = StatusChanged),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
    )
)]
pub fn disable_user() {}

#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/enable",
    operation_id = "enableUser",
    summary = "Re-enable an account (admin)",
    security(("bearerAuth" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "Done", body = StatusChanged),
        (status = 401, response = Unauthenticated),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
    )
)]
pub fn enable_user() {}

#[derive(OpenApi)]
#[openapi(
    paths(
        create_user,
        read_user,
        update_user,
        patch_user,
        upgrade_user,
        user_insights,
        list_sessions,
        delete_session,
        change_password,
        start_email_change,
        confirm_email_change,
        enrol_totp,
        confirm_totp,
        remove_totp,
        enrol_sms,
        confirm_sms,
        remove_sms,
        resend_verification,
        security_events,
        read_audit,
        disable_user,
        enable_user,
    ),
    components(
        schemas(
            User,
            Upgraded,
            UpgradeRequest,
            CreateUser,
            PendingSignup,
            ProfilePatch,
            AiPreferences,
            PersonalizationLevel,
            SecuritySettings,
            MfaMethod,
            Limits,
            Session,
            SessionList,
            ChangePassword,
            PasswordChanged,
            StartEmailChange,
            EmailChangeStarted,
            Code,
            PasswordProof,
            TotpEnrolment,
            FactorEnrolled,
            EnrolSms,
            SmsEnrolment,
            SecurityEvent,
            SecurityEvents,
            AuditEntry,
            AuditLog,
            StatusChanged,
            VerificationSent,
            Insights,
            Usage,
            ApiRequests,
            Churn,
            ChurnFactor,
            Engagement,
            Components,
            Recommendation,
        ),
        responses(PreconditionFailed)
    )
)]
pub struct Api;
