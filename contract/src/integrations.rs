//! The integration hub's operations: the catalogue (answered by the edge from the tier
//! templates), a user's connected services, connecting (OAuth 2.0 with PKCE, Last.fm, or a
//! local integration's key), the provider's callback, and disconnecting.

use domain::integrations::{AuthKind, Category, Grant, Status};
use domain::problem::Problem;
use domain::wire::integrations::{
    CatalogueEntry, Integration, IntegrationAuthorization, IntegrationCatalogue, IntegrationConnected,
    IntegrationList, IntegrationRemoved, LocalIntegrationKey, TierGrant,
};
use utoipa::OpenApi;

use crate::common;

#[derive(OpenApi)]
#[openapi(
    paths(catalogue, list, connect, disconnect, callback),
    components(schemas(
        IntegrationCatalogue,
        CatalogueEntry,
        TierGrant,
        Category,
        AuthKind,
        Grant,
        Status,
        IntegrationList,
        Integration,
        IntegrationAuthorization,
        LocalIntegrationKey,
        IntegrationConnected,
        IntegrationRemoved,
        ServiceId,
    ))
)]
pub struct Api;

/// The 17 services of the hub, as a path parameter.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_camel_case_types)]
enum ServiceId {
    spotify,
    apple_music,
    youtube_music,
    amazon_music,
    lastfm,
    discord,
    twitter,
    instagram,
    slack,
    notion,
    google_calendar,
    salesforce,
    microsoft_365,
    jira,
    ableton_live,
    logic_pro,
    fl_studio,
}

/// The integration catalogue: the 17 services, their category and auth kind, which tiers may connect each (with the scopes of the grant: basic or full), and the caller's own grant. Answered by the edge from the tier templates.
#[utoipa::path(
    get,
    path = "/api/v1/integrations",
    operation_id = "integrationCatalogue",
    tag = "integrations",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The catalogue", body = IntegrationCatalogue),
        (status = 401, response = common::Unauthenticated),
    )
)]
pub fn catalogue() {}

/// The user's connected services (owner or admin): status (active, disabled by a downgrade, needs_reconnect), scopes, account name, connected at, token expiry, last sync, last error. Never a token.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/integrations",
    operation_id = "listIntegrations",
    tag = "integrations",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id")),
    responses(
        (status = 200, description = "Connected services", body = IntegrationList),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
        (status = 404, response = common::NotFound),
    )
)]
pub fn list() {}

/// Connect a service. OAuth services and Last.fm: the provider's authorize URL with a single-use state (10 minutes, bound to the user and to the browser by the __Host-um-integration cookie this answer sets; PKCE S256 where the provider supports it). Local integrations (Ableton Live, Logic Pro, FL Studio): a scoped API key for the desktop plug-in, shown once (201). A tier that does not allow the service: 403 naming the rule (tier_integrations).
#[utoipa::path(
    post,
    path = "/api/v1/users/{id}/integrations/{service}",
    operation_id = "connectIntegration",
    tag = "integrations",
    security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id"),
        ("service" = ServiceId, Path, description = "The service"),
    ),
    responses(
        (status = 200, description = "Send the browser to authorize_url", body = IntegrationAuthorization,
            headers(("Set-Cookie" = String, description = "__Host-um-integration: the browser binding of the state"))),
        (status = 201, description = "A local integration's new API key (shown once; it replaces an earlier one)", body = LocalIntegrationKey),
        (status = 401, response = common::Unauthenticated),
        (status = 403, description = "Another user's account, or the tier does not allow the service (rule tier_integrations; tier, service and allowed in the problem)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user or service", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The service is not configured on this deployment, or the account is being erased", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn connect() {}

/// Disconnect a service: its tokens are revoked at the provider where it has a revocation endpoint (revoked_at_provider says), then deleted; a local integration's keys are revoked.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}/integrations/{service}",
    operation_id = "disconnectIntegration",
    tag = "integrations",
    security(("bearerAuth" = [])),
    params(
        ("id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The user's id"),
        ("service" = ServiceId, Path, description = "The service"),
    ),
    responses(
        (status = 200, description = "Disconnected", body = IntegrationRemoved),
        (status = 401, response = common::Unauthenticated),
        (status = 403, response = common::Forbidden),
        (status = 404, description = "No such user or service, or the service is not connected", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn disconnect() {}

/// The provider's redirect (the redirect URI registered at the provider). The state is taken once and must come from the browser that asked (cookie __Host-um-integration); the code is exchanged (with the PKCE verifier) and the tokens stored sealed under the user's data key. Limited per address.
#[utoipa::path(
    get,
    path = "/api/v1/integrations/{service}/callback",
    operation_id = "integrationCallback",
    tag = "integrations",
    params(
        ("service" = ServiceId, Path, description = "The service"),
        ("state" = String, Query, max_length = 256, description = "The state the connection started with"),
        ("code" = Option<String>, Query, description = "OAuth 2.0 authorization code"),
        ("token" = Option<String>, Query, description = "Last.fm's token"),
        ("error" = Option<String>, Query, description = "The provider's error (access_denied when the user declined)"),
    ),
    responses(
        (status = 200, description = "Connected", body = IntegrationConnected),
        (status = 400, description = "No state, an unknown, used, expired or other browser's state, the provider's error, or a code the provider refused", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such service", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The service is not configured on this deployment", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn callback() {}
