//! The integration hub (issue 15): connecting a user's account at the services of
//! `domain::integrations::CATALOGUE`. The rules (which tier may connect what, the `state`'s
//! checks, refresh timing) are `domain::integrations`; this module gathers, seals and stores.
//!
//! - Connect: the tier's grant is checked (a refusal is a 403 naming the rule), then for an
//!   OAuth service a random `state` (kept hashed in `auth_state` for 10 minutes with the user,
//!   the service, the hash of a browser binding the edge sets as a `__Host-` cookie, and the
//!   PKCE verifier sealed) and the provider's authorize URL; for a local one (Ableton Live,
//!   Logic Pro, FL Studio) a scoped API key, shown once, stored as its keyed hash.
//! - Callback: the state is taken once (`state_take`), checked, the code exchanged, the
//!   account's name read, and the tokens sealed with the user's data key (`crypto`), bound to
//!   the row. Tokens are never answered and never logged.
//! - Disconnect: revoked at the provider where it has a revocation endpoint, then deleted.
//! - A tier change disables (keeps, but stops using) what the new tier does not allow.
//! - Jobs (`jobs::integrations`): refresh before expiry, and the music sync.

pub mod connector;
pub mod providers;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use domain::identity::{Actor, UserId};
use domain::integrations::{self, AuthKind, PendingAuthorization, Service, Status};
use domain::messages::Template;
use domain::problem::{Problem, ProblemKind};
use domain::tier::Tier;
use domain::time::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crypto::{random_16, DataKey};
use domain::wire::integrations::{
    CallbackRequest, ConnectAnswer, Integration, IntegrationAuthorization, IntegrationConnected,
    IntegrationList, IntegrationRemoved, LocalIntegrationKey,
};

use crate::errors::ApiError;
use crate::extract::ApiJson;
use crate::store::{IntegrationRow, LocalKeyRow};
use crate::users::{authorize, rfc3339, Account, Accounts};
use crate::AppState;
use connector::{ConnectorError, Granted, Tokens};

/// The signed internal routes of the hub, merged into the origin's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users/{id}/integrations", get(list_handler))
        .route("/users/{id}/integrations/{service}", post(connect_handler).delete(disconnect_handler))
        .route("/integrations/{service}/callback", post(callback_handler))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| ApiError::client(ProblemKind::NotFound, format!("no user {raw}")))
}

fn service(raw: &str) -> Result<&'static Service, ApiError> {
    integrations::find(raw)
        .ok_or_else(|| ApiError::client(ProblemKind::NotFound, format!("no integration {raw}")))
}

async fn list_handler(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<IntegrationList>, ApiError> {
    Ok(Json(list(&state, &actor, &user_id(&id)?).await?))
}

async fn connect_handler(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, svc)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ConnectAnswer>), ApiError> {
    let answer = connect(&state, &actor, &user_id(&id)?, service(&svc)?, state.clock.now()).await?;
    let status = match answer {
        ConnectAnswer::Key(_) => StatusCode::CREATED,
        ConnectAnswer::Authorize(_) => StatusCode::OK,
    };
    Ok((status, Json(answer)))
}

async fn disconnect_handler(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, svc)): Path<(String, String)>,
) -> Result<Json<IntegrationRemoved>, ApiError> {
    Ok(Json(disconnect(&state, &actor, &user_id(&id)?, service(&svc)?, state.clock.now()).await?))
}

async fn callback_handler(
    State(state): State<AppState>,
    Path(svc): Path<String>,
    ApiJson(request): ApiJson<CallbackRequest>,
) -> Result<Json<IntegrationConnected>, ApiError> {
    Ok(Json(callback(&state, service(&svc)?, request, state.clock.now()).await?))
}

/// The `auth_state` key of a state (its hash: the table never holds a usable state).
fn state_key(state: &str) -> String {
    format!("integration:{}", hex::encode(Sha256::digest(state.as_bytes())))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_hex_32() -> String {
    format!("{}{}", hex::encode(random_16()), hex::encode(random_16()))
}

fn tokens_context(user: &str, service: &str) -> String {
    format!("{user}/integration/{service}/tokens")
}

fn account_context(user: &str, service: &str) -> String {
    format!("{user}/integration/{service}/account")
}

fn verifier_context(user: &str, service: &str) -> String {
    format!("{user}/integration-state/{service}")
}

/// What waits under a state: the pending authorisation and its sealed PKCE verifier.
#[derive(Serialize, Deserialize)]
struct StoredState {
    pending: PendingAuthorization,
    #[serde(default)]
    verifier_sealed: Option<String>,
}

fn tier_of(account: &Account) -> Result<Tier, ApiError> {
    account
        .row
        .tier
        .parse()
        .map_err(|_| ApiError::Internal(format!("user {} has an unknown tier", account.row.id)))
}

fn refusal(r: &integrations::Refusal) -> ApiError {
    ApiError::Client(
        Problem::new(ProblemKind::Forbidden, r.detail.clone())
            .with("rule", r.rule)
            .with("tier", r.tier.as_str())
            .with("service", r.service)
            .with("allowed", r.allowed.clone()),
    )
}

fn not_configured(service: &Service) -> ApiError {
    ApiError::client(
        ProblemKind::Conflict,
        format!(
            "{} is not configured on this deployment (see the README's Integrations section)",
            service.name
        ),
    )
}

fn provider_error(e: &ConnectorError) -> ApiError {
    match e {
        ConnectorError::InvalidGrant => ApiError::client(
            ProblemKind::BadRequest,
            "the provider refused the authorisation code (invalid_grant)",
        ),
        ConnectorError::Refused(code) => {
            ApiError::client(ProblemKind::BadGateway, format!("the provider refused: {code}"))
        }
        ConnectorError::RateLimited { .. } => {
            ApiError::client(ProblemKind::BadGateway, "the provider is rate limiting; try again later")
        }
        ConnectorError::Unreachable(_) => {
            ApiError::client(ProblemKind::BadGateway, "the provider could not be reached")
        }
    }
}

/// The redirect URI registered at every provider: the edge's callback.
fn redirect_uri(state: &AppState, service: &str) -> String {
    format!("{}/api/v1/integrations/{service}/callback", state.config.public_url)
}

fn connector_for(state: &AppState, service: &Service) -> Result<Box<dyn connector::Connector>, ApiError> {
    let provider = state.config.integrations.get(service.id).ok_or_else(|| not_configured(service))?;
    connector::for_provider(provider, redirect_uri(state, service.id)).map_err(|e| provider_error(&e))
}

fn row_view(row: &IntegrationRow, key: &DataKey) -> Integration {
    let account = row
        .account_sealed
        .as_ref()
        .and_then(|s| key.open(s, &account_context(&row.user_id, &row.service)).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let svc = integrations::find(&row.service);
    Integration {
        service: row.service.clone(),
        name: svc.map(|s| s.name.to_owned()),
        category: svc.map(|s| s.category),
        auth: svc.map(|s| s.auth),
        // A status this version does not know reads as needing a new connection.
        status: Status::parse(&row.status).unwrap_or(Status::NeedsReconnect),
        scopes: row.scopes.split_whitespace().map(str::to_owned).collect(),
        account,
        connected_at: rfc3339(row.connected_at),
        expires_at: row.expires_at.map(rfc3339),
        last_sync_at: row.last_sync_at.map(rfc3339),
        last_error: row.last_error.clone(),
        retry_at: row.retry_at.map(rfc3339),
    }
}

/// The connected services of a user (never a token).
pub async fn list(state: &AppState, actor: &Actor, id: &UserId) -> Result<IntegrationList, ApiError> {
    authorize(actor, id)?;
    let account = state.accounts.load(id).await?;
    let rows = state.store.integrations(id.as_str()).await?;
    Ok(IntegrationList { integrations: rows.iter().map(|r| row_view(r, &account.data_key)).collect() })
}

/// The export's `integrations` section: every connected service as the list shows it (no
/// token, no key).
pub(crate) async fn export_section(accounts: &Accounts, account: &Account) -> Result<Value, ApiError> {
    let rows = accounts.store.integrations(&account.row.id).await?;
    let list: Vec<Integration> = rows.iter().map(|r| row_view(r, &account.data_key)).collect();
    serde_json::to_value(list).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Starts a connection: the authorize URL and its state (OAuth, Last.fm), or a new API key
/// (local integrations).
pub async fn connect(
    state: &AppState,
    actor: &Actor,
    id: &UserId,
    service: &'static Service,
    now: UnixMillis,
) -> Result<ConnectAnswer, ApiError> {
    authorize(actor, id)?;
    state.accounts.refuse_if_erasing(id.as_str()).await?;
    let account = state.accounts.load(id).await?;
    let grant = integrations::may_connect(tier_of(&account)?, service).map_err(|r| refusal(&r))?;
    let scopes = grant.scopes(service);
    match service.auth {
        AuthKind::Local => {
            Ok(ConnectAnswer::Key(create_local_key(state, &account, service, scopes, now).await?))
        }
        AuthKind::AppleMusic => Err(not_configured(service)),
        AuthKind::Oauth2 | AuthKind::Oauth2Pkce | AuthKind::Lastfm => {
            let connector = connector_for(state, service)?;
            let state_value = random_hex_32();
            let binding = random_hex_32();
            // A PKCE verifier: 64 hex characters, within RFC 7636's 43–128 unreserved ones.
            let verifier = (service.auth == AuthKind::Oauth2Pkce).then(random_hex_32);
            let url = connector
                .authorize_url(&state_value, scopes, verifier.as_deref())
                .map_err(|e| provider_error(&e))?;
            let stored = StoredState {
                pending: PendingAuthorization {
                    user_id: id.to_string(),
                    service: service.id.to_owned(),
                    created_at: now,
                    binding_hash: sha256_hex(&binding),
                    grant,
                },
                verifier_sealed: verifier.map(|v| {
                    base64::engine::general_purpose::STANDARD.encode(
                        account.data_key.seal(v.as_bytes(), &verifier_context(id.as_str(), service.id)),
                    )
                }),
            };
            let value = serde_json::to_string(&stored).map_err(|e| ApiError::Internal(e.to_string()))?;
            let expires = now.saturating_add_ms(integrations::STATE_TTL_MS);
            state.store.state_put(&state_key(&state_value), &value, expires).await?;
            Ok(ConnectAnswer::Authorize(IntegrationAuthorization {
                service: service.id.to_owned(),
                authorize_url: url,
                state: state_value,
                binding: Some(binding),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                expires_at: rfc3339(expires),
            }))
        }
    }
}

async fn create_local_key(
    state: &AppState,
    account: &Account,
    service: &'static Service,
    scopes: &[&str],
    now: UnixMillis,
) -> Result<LocalIntegrationKey, ApiError> {
    let key = integrations::local_key(service.id, &random_16());
    let key_hash = hex::encode(state.accounts.keyring.secret_mac("integration-key", key.as_bytes()));
    let scopes = scopes.join(" ");
    let uid = account.row.id.clone();
    let row = IntegrationRow {
        user_id: uid.clone(),
        service: service.id.to_owned(),
        status: Status::Active.as_str().to_owned(),
        scopes: scopes.clone(),
        tokens_sealed: None,
        account_sealed: None,
        expires_at: None,
        token_version: 0,
        connected_at: now,
        updated_at: now,
        last_sync_at: None,
        last_error: None,
        sync_cursor: "{}".into(),
        retry_at: None,
    };
    let key_row = LocalKeyRow {
        key_hash,
        user_id: uid,
        service: service.id.to_owned(),
        scopes: scopes.clone(),
        created_at: now,
        revoked_at: None,
    };
    state.store.insert_local_key(&key_row, &row).await?;
    Ok(LocalIntegrationKey {
        service: service.id.to_owned(),
        key,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        created_at: rfc3339(now),
        note: "shown once: only its hash is kept; connecting again replaces it".into(),
    })
}

/// The provider's redirect: takes the state (once), checks it, exchanges the code and stores
/// the sealed tokens.
pub async fn callback(
    state: &AppState,
    service: &'static Service,
    request: CallbackRequest,
    now: UnixMillis,
) -> Result<IntegrationConnected, ApiError> {
    let taken = state.store.state_take(&state_key(&request.state), now).await?;
    let stored: Option<StoredState> = taken.as_deref().and_then(|v| serde_json::from_str(v).ok());
    integrations::check_state(
        stored.as_ref().map(|s| &s.pending),
        service.id,
        &sha256_hex(&request.binding),
        now,
    )
    .map_err(|r| ApiError::client(ProblemKind::BadRequest, format!("invalid state: {}", r.detail())))?;
    let Some(stored) = stored else {
        return Err(ApiError::Internal("a checked state went missing".into()));
    };
    if let Some(error) = request.error {
        let error: String = error.chars().filter(char::is_ascii_graphic).take(64).collect();
        return Err(ApiError::client(ProblemKind::BadRequest, format!("the provider answered {error}")));
    }
    let code = request
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::client(ProblemKind::BadRequest, "the callback carries no code"))?;
    let id = user_id(&stored.pending.user_id)?;
    let account = state.accounts.load(&id).await?;
    let verifier = match &stored.verifier_sealed {
        Some(b64) => {
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let plain = account.data_key.open(&sealed, &verifier_context(id.as_str(), service.id))?;
            Some(String::from_utf8(plain).map_err(|e| ApiError::Internal(e.to_string()))?)
        }
        None => None,
    };
    let connector = connector_for(state, service)?;
    let granted = connector.exchange(&code, verifier.as_deref()).await.map_err(|e| provider_error(&e))?;
    let name = match &granted.account {
        Some(n) => Some(n.clone()),
        // The account's name is a convenience: a provider that will not say still connects.
        None => connector.identity(&granted.tokens).await.unwrap_or_else(|e| {
            tracing::info!(service = service.id, error = %e, "identity call failed");
            None
        }),
    };
    let asked = stored.pending.grant.scopes(service);
    let scopes = granted.scopes.clone().unwrap_or_else(|| asked.iter().map(|s| (*s).to_owned()).collect());
    let row = sealed_row(&account, service.id, &granted, name.as_deref(), &scopes.join(" "), now)?;
    state.store.put_integration(&row).await?;
    Ok(IntegrationConnected {
        service: service.id.to_owned(),
        user_id: id.to_string(),
        status: Status::Active,
        scopes,
        account: name,
        connected_at: rfc3339(now),
    })
}

fn seal_tokens(account: &Account, service: &str, tokens: &Tokens) -> Result<Vec<u8>, ApiError> {
    let json = serde_json::to_vec(tokens).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(account.data_key.seal(&json, &tokens_context(&account.row.id, service)))
}

pub(crate) fn open_tokens(key: &DataKey, row: &IntegrationRow) -> Result<Option<Tokens>, ApiError> {
    let Some(sealed) = &row.tokens_sealed else { return Ok(None) };
    let plain = key.open(sealed, &tokens_context(&row.user_id, &row.service))?;
    serde_json::from_slice(&plain).map(Some).map_err(|e| ApiError::Internal(format!("stored tokens: {e}")))
}

fn sealed_row(
    account: &Account,
    service: &str,
    granted: &Granted,
    name: Option<&str>,
    scopes: &str,
    now: UnixMillis,
) -> Result<IntegrationRow, ApiError> {
    let uid = &account.row.id;
    Ok(IntegrationRow {
        user_id: uid.clone(),
        service: service.to_owned(),
        status: Status::Active.as_str().to_owned(),
        scopes: scopes.to_owned(),
        tokens_sealed: Some(seal_tokens(account, service, &granted.tokens)?),
        account_sealed: name.map(|n| account.data_key.seal(n.as_bytes(), &account_context(uid, service))),
        expires_at: integrations::expiry(now, granted.expires_in_secs),
        token_version: 0,
        connected_at: now,
        updated_at: now,
        last_sync_at: None,
        last_error: None,
        sync_cursor: "{}".into(),
        retry_at: None,
    })
}

/// Disconnects: revokes at the provider where it can, then deletes the tokens (and revokes a
/// local integration's keys).
pub async fn disconnect(
    state: &AppState,
    actor: &Actor,
    id: &UserId,
    service: &'static Service,
    now: UnixMillis,
) -> Result<IntegrationRemoved, ApiError> {
    authorize(actor, id)?;
    let account = state.accounts.load(id).await?;
    let row = state.store.integration(id.as_str(), service.id).await?.ok_or_else(|| {
        ApiError::client(ProblemKind::NotFound, format!("{} is not connected", service.name))
    })?;
    let mut revoked = false;
    let mut revoke_error = None;
    if let Some(tokens) = open_tokens(&account.data_key, &row)? {
        match connector_for(state, service) {
            Ok(connector) => match connector.revoke(&tokens).await {
                Ok(r) => revoked = r,
                // The tokens go anyway: the user asked to disconnect, and what is deleted here
                // can no longer be used by this service.
                Err(e) => revoke_error = Some(e.to_string()),
            },
            Err(_) => revoke_error = Some("the provider is no longer configured".into()),
        }
    }
    state.store.delete_integration(id.as_str(), service.id, now).await?;
    Ok(IntegrationRemoved {
        service: service.id.to_owned(),
        removed: true,
        revoked_at_provider: revoked,
        revoke_error,
    })
}

impl Accounts {
    /// After a tier change: disables the user's integrations the new tier does not allow (or
    /// allows with fewer scopes), and answers their ids.
    pub(crate) async fn disable_forbidden_integrations(
        &self,
        user_id: &str,
        tier: Tier,
        now: UnixMillis,
    ) -> Result<Vec<String>, ApiError> {
        let rows = self.store.integrations(user_id).await?;
        let connected: Vec<(String, Vec<String>)> = rows
            .iter()
            .filter(|r| Status::parse(&r.status) != Some(Status::Disabled))
            .map(|r| (r.service.clone(), r.scopes.split_whitespace().map(str::to_owned).collect()))
            .collect();
        let disabled = integrations::disabled_by(tier, &connected);
        if !disabled.is_empty() {
            self.store.disable_integrations(user_id, &disabled, now).await?;
        }
        Ok(disabled)
    }

    /// Marks an integration `needs_reconnect` and queues the user's notice (once).
    pub(crate) async fn integration_needs_reconnect(
        &self,
        row: &IntegrationRow,
        error: &str,
        now: UnixMillis,
    ) -> Result<bool, ApiError> {
        let id = user_id(&row.user_id)?;
        let account = self.load(&id).await?;
        let name = integrations::find(&row.service).map_or(row.service.as_str(), |s| s.name);
        let notice = self.message(
            &account,
            "email",
            &account.email,
            &Template::IntegrationNeedsReconnect { service: name },
            None,
            now,
        )?;
        let marked = self.store.mark_needs_reconnect(&row.user_id, &row.service, error, &notice, now).await?;
        if marked {
            self.deliver_soon(&notice.id, false).await;
        }
        Ok(marked)
    }
}
