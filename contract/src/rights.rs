//! The data-rights operations: consents, the export archive, erasure and its cancellation, and
//! a parent's consent to a child's signup. The bearer operations are the caller's own (or an
//! admin's); the edge admits them through the user's gate (429) and forwards them to the
//! origin (502/503). Cancelling an erasure and a parent's answer need no token: the edge
//! limits them per address (429).

use domain::problem::Problem;
use domain::rights::{Purpose, Source};
use domain::wire::rights::{
    CancelErasure, ConsentView, Consents, ConsentsUpdate, ErasureCancelled, ErasureDone, ErasureRequest,
    ErasureScheduled, ExportPending, ExportRequest, ExportStarted, ExportState, ParentalAnswer,
    ParentalDecision, ParentalOutcome,
};
use utoipa::OpenApi;

use crate::common;

#[derive(OpenApi)]
#[openapi(
    paths(
        erase_user,
        start_export,
        download_export,
        cancel_erasure,
        read_consents,
        put_consents,
        parental_consent
    ),
    components(schemas(
        ConsentView,
        Consents,
        ConsentsUpdate,
        Purpose,
        Source,
        ExportRequest,
        ExportStarted,
        ExportPending,
        ExportState,
        ErasureRequest,
        ErasureScheduled,
        ErasureDone,
        CancelErasure,
        ErasureCancelled,
        ParentalAnswer,
        ParentalDecision,
        ParentalOutcome,
    ))
)]
pub struct Api;

/// Erase the account. The owner (current password, and a code when a factor is enrolled) schedules it after the grace period (default 14 days): every session ends at once, login is refused with an erasure-pending problem, an email says how to cancel. An admin may erase at once with {"immediately": true}: every row, the data key, the KV entry and the Durable Object's storage go; an erasure record without personal data remains.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    operation_id = "eraseUser",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id")),
    request_body(content = Option<ErasureRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Erased at once (admins)", body = ErasureDone),
        (status = 202, description = "Scheduled", body = ErasureScheduled),
        (status = 400, response = common::BadRequest),
        (status = 401, description = "No valid token, or the password or code is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's account (forbidden), a proof is missing (step-up-required), or an owner asked for an immediate erasure", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user (or erased already)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn erase_user() {}

/// Start an export of everything the account holds (the owner with a step-up in the last 5 minutes, or the password and a code in the body; or an admin). A request while one is being built returns that one.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/export",
    operation_id = "startExport",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id")),
    request_body(content = Option<ExportRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "The export job", body = ExportStarted,
            headers(("Location" = String, description = "The export's URL"))),
        (status = 400, response = common::BadRequest),
        (status = 401, description = "No valid token, or a wrong password or code", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's account, or no fresh proof (step-up-required)", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = common::NotFound),
    )
)]
pub fn start_export() {}

/// The export: 202 while it is built, then the ZIP (manifest.json with format version, generation time, and each section's file, count, bytes and SHA-256; one JSON file per section). It can be downloaded 3 times within 24 hours; each download is audited.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/exports/{export_id}",
    operation_id = "downloadExport",
    security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id"),
        ("export_id" = String, Path, description = "The export's id (from startExport)"),
    ),
    responses(
        (status = 200, description = "The archive", body = String, content_type = "application/zip"),
        (status = 202, description = "Not ready yet (Retry-After)", body = ExportPending,
            headers(("Retry-After" = i64, description = "Seconds to wait before asking again"))),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
        (status = 404, description = "No such export for this user", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Expired, downloaded 3 times already, or its job stopped: request a new one", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn download_export() {}

/// Cancel a scheduled erasure with the account's password (no token: logging in is refused until then). Counted like a login attempt.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/erasure/cancel",
    operation_id = "cancelErasure",
    params(("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id")),
    request_body(content = CancelErasure, content_type = "application/json"),
    responses(
        (status = 200, description = "Cancelled", body = ErasureCancelled),
        (status = 400, response = common::BadRequest),
        (status = 401, description = "Wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = common::NotFound),
        (status = 409, description = "No erasure is scheduled", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts (per address, or the account's softlock)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "Password checks at capacity, or the origin unavailable (Retry-After)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = i64, description = "Seconds to wait before retrying"))),
    )
)]
pub fn cancel_erasure() {}

/// The consents (owner or admin), every purpose with its state, time, source and policy version
///
/// A `Sec-GPC: 1` header (Global Privacy Control) withdraws marketing and third-party sharing, recorded with source `gpc`.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/consents",
    operation_id = "readConsents",
    security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id"),
        ("Sec-GPC" = Option<String>, Header, description = "`1`: the browser asks not to sell or share"),
    ),
    responses(
        (status = 200, description = "Every purpose's state", body = Consents),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
        (status = 404, response = common::NotFound),
    )
)]
pub fn read_consents() {}

/// Set consents: {"consents": {"analytics": false}}; purposes not named keep their state; each change is audited. Withdrawing analytics stops usage events from the next request.
///
/// With `Sec-GPC: 1`, an opt-in to marketing or third-party sharing is ignored on that request.
#[utoipa::path(
    put,
    path = "/api/v1/users/{id}/consents",
    operation_id = "putConsents",
    security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id"),
        ("Sec-GPC" = Option<String>, Header, description = "`1`: the browser asks not to sell or share"),
    ),
    request_body(content = ConsentsUpdate, content_type = "application/json"),
    responses(
        (status = 200, description = "Every purpose's state", body = Consents),
        (status = 400, description = "Malformed body, or an unknown purpose or a value that is not a boolean (validation-failed, each in errors)", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
        (status = 404, response = common::NotFound),
    )
)]
pub fn put_consents() {}

/// A parent's answer to a child's signup, with the token of the emailed link (single use, 72 hours): grant enables the account (recorded with its method, email_link), refuse erases it. Unanswered links expire and the weekly cleanup erases the account.
#[utoipa::path(
    post,
    path = "/api/v1/auth/parental-consent",
    operation_id = "parentalConsent",
    request_body(content = ParentalAnswer, content_type = "application/json"),
    responses(
        (status = 200, description = "Done", body = ParentalOutcome),
        (status = 400, description = "Malformed body or an unknown decision", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The link is unknown, used or expired", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account changed meanwhile", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn parental_consent() {}
