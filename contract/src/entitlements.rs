//! Entitlements and metering: what a user may do now, usage reports from platform services,
//! the service clients admins manage, and the OAuth 2.0 token endpoint those clients use.

use domain::entitlements::{
    AiFeatures, Entitlements, Integrations, OrgGrant, Playlists, RequestQuota, Resource, Storage,
};
use domain::problem::Problem;
use domain::wire::entitlements::{
    NewServiceClient, ServiceClient, ServiceClients, ServiceToken, UsageAnswer, UsageReportBody,
    UserEntitlements,
};
use utoipa::OpenApi;

use crate::common;

#[derive(OpenApi)]
#[openapi(
    paths(
        service_token,
        list_service_clients,
        create_service_client,
        revoke_service_client,
        read_entitlements,
        report_usage
    ),
    components(schemas(
        UserEntitlements,
        Entitlements,
        OrgGrant,
        RequestQuota,
        Playlists,
        Storage,
        Integrations,
        AiFeatures,
        Resource,
        UsageReportBody,
        UsageAnswer,
        NewServiceClient,
        ServiceClient,
        ServiceClients,
        ServiceToken,
        TokenForm,
    ))
)]
pub struct Api;

/// The token request (RFC 6749 §4.4.2), as a form.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct TokenForm {
    /// `client_credentials`.
    grant_type: String,
    /// Space-delimited subset of the client's scopes (usage:write, entitlements:read); all of them when absent.
    scope: Option<String>,
    /// client_secret_post only.
    #[schema(pattern = "^svc_[0-9a-f]{32}$")]
    client_id: Option<String>,
    /// client_secret_post only.
    client_secret: Option<String>,
}

/// OAuth 2.0 client credentials (RFC 6749 §4.4): a platform service's client id and secret (HTTP Basic, or client_id/client_secret in the form) for a short-lived service access token (EdDSA JWT, typ `service`, with `scope` and `sub` = the client id). Limited per address like logins. Errors are problems that also carry RFC 6749 §5.2 `error` and `error_description`.
#[utoipa::path(
    post,
    path = "/api/v1/oauth/token",
    operation_id = "serviceToken",
    tag = "entitlements",
    security(("clientBasic" = []), ()),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A service access token; `Cache-Control: no-store`", body = ServiceToken),
        (status = 400, description = "invalid_request (a parameter twice, both authentication methods, no grant_type), unsupported_grant_type or invalid_scope (a scope the client does not have), or a body that is not a form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "invalid_client: unknown client, wrong secret or revoked client (one answer for all three); `WWW-Authenticate: Basic` when Basic was tried", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"oauth\"` when the client tried HTTP Basic"))),
        (status = 415, description = "The body is not application/x-www-form-urlencoded", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn service_token() {}

/// The service clients (admins), without their secrets
#[utoipa::path(
    get,
    path = "/api/v1/service-clients",
    operation_id = "listServiceClients",
    tag = "entitlements",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "Every client, oldest first", body = ServiceClients),
        (status = 401, response = common::Unauthenticated),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn list_service_clients() {}

/// Create a service client (admins): its id and secret, the secret shown only in this answer and stored as a keyed hash
#[utoipa::path(
    post,
    path = "/api/v1/service-clients",
    operation_id = "createServiceClient",
    tag = "entitlements",
    security(("bearerAuth" = [])),
    request_body(content = NewServiceClient, content_type = "application/json"),
    responses(
        (status = 201, description = "The client with its secret (once)", body = ServiceClient,
            headers(("Location" = String, description = "/api/v1/service-clients/{client_id}"))),
        (status = 400, description = "A name that is empty or over 100 characters, an unknown scope or none (validation-failed), or a body that is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = common::Unauthenticated),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn create_service_client() {}

/// Revoke a service client (admins): no new token, and its tokens are refused by the origin at once
#[utoipa::path(
    delete,
    path = "/api/v1/service-clients/{client_id}",
    operation_id = "revokeServiceClient",
    tag = "entitlements",
    security(("bearerAuth" = [])),
    params(("client_id" = String, Path, pattern = r"^svc_[0-9a-f]{32}$", description = "The client")),
    responses(
        (status = 200, description = "The revoked client", body = ServiceClient),
        (status = 401, response = common::Unauthenticated),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such active client", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn revoke_service_client() {}

/// What the user may do now, from tier, consents (and organization): request quota, playlists and storage (limit, used, read-only after a downgrade), integrations, AI features, support. The user, an admin, or a service token with entitlements:read. Served from KV while the user's gate vouches for it (`X-Entitlements-Source`).
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/entitlements",
    operation_id = "readEntitlements",
    tag = "entitlements",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id")),
    responses(
        (status = 200, description = "The entitlements", body = UserEntitlements,
            headers(("X-Entitlements-Source" = String, description = "`cache` (KV, epoch current) or `origin`"))),
        (status = 401, description = "No valid token, or a revoked service client", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's entitlements, or a service token without entitlements:read (`error`: insufficient_scope)", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = common::NotFound),
    )
)]
pub fn read_entitlements() {}

/// Report usage (a service token with usage:write): a signed delta of playlists or storage bytes. Atomic and exact under concurrency; idempotent per idempotency key for 24 h (a retry gets the first answer, `replayed: true`, counted once). A positive delta beyond the limit is refused (403 entitlement-exceeded naming it); a negative one is always admitted.
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/usage",
    operation_id = "reportUsage",
    tag = "entitlements",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id")),
    request_body(content = UsageReportBody, content_type = "application/json"),
    responses(
        (status = 200, description = "Counted: the new state of the resource", body = UsageAnswer),
        (status = 400, description = "A field is missing or invalid (validation-failed, each in errors), or the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid service token (a user's token is refused), or a revoked client", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "entitlement-exceeded: beyond the limit (`resource`, `limit`, `used`, `delta`); or forbidden with `error` insufficient_scope: the token lacks usage:write", body = Problem, content_type = "application/problem+json"),
        (status = 404, response = common::NotFound),
        (status = 409, description = "The idempotency key was used for another report", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn report_usage() {}
