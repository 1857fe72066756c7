//! Entitlements and metering (issue 19): service clients (OAuth 2.0 client credentials),
//! the check behind the edge's token endpoint, usage reports and the entitlements view. The
//! rules are `domain::entitlements` and `domain::oauth`; this module gathers the facts,
//! authorises the signed actor and stores.
//!
//! - A service client's secret is 256 random bits shown once at creation and stored as a
//!   keyed hash (HMAC-SHA256 under a key derived from the master key, like recovery codes).
//!   A slow hash (argon2) protects secrets people choose; this one cannot be guessed, and a
//!   token request costs one HMAC rather than 20 ms of a hashing pool shared with logins.
//! - The edge checked a service token's scope; the origin checks the client again (it still
//!   exists, is not revoked, has the scope), so a revocation takes effect at once here.
//! - A usage report is applied by the store in one transaction (see `EntitlementStore`):
//!   exact under concurrency, and idempotent per (client, key) for 24 hours.

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use domain::entitlements::{self, Facts, Resource, Usage};
use domain::identity::{Actor, UserId};
use domain::oauth::{self, ClientId, Scope};
use domain::problem::{Problem, ProblemKind};
use domain::rights;
use domain::tier::Tier;
use domain::time::UnixMillis;
use domain::wire::entitlements::{
    ClientCheck, ClientGranted, NewServiceClient, ServiceClient, ServiceClients, UsageAnswer,
    UserEntitlements,
};
use serde_json::Value;

use crate::crypto::random_16;
use crate::errors::ApiError;
use crate::extract::ApiJson;
use crate::store::{ServiceClientRow, UsageApplied, UsageChange, UsageReportRow};
use crate::users::{authorize, not_found, rfc3339, Accounts};
use crate::AppState;

/// The label of the keyed hash service client secrets are stored under.
const SECRET_PURPOSE: &str = "service-client-secret";

/// The internal routes of this module (merged under the edge signature check).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/service-clients", post(create_client).get(list_clients))
        .route("/service-clients/{client_id}", delete(revoke_client))
        .route("/oauth/token", post(check_client))
        .route("/users/{id}/entitlements", get(read_entitlements))
        .route("/users/{id}/usage", post(report_usage))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| ApiError::client(ProblemKind::NotFound, format!("no user {raw}")))
}

fn client_view(row: &ServiceClientRow) -> Result<ServiceClient, ApiError> {
    Ok(ServiceClient {
        client_id: ClientId::parse(&row.id)
            .ok_or_else(|| ApiError::Internal(format!("stored client id {:?}", row.id)))?,
        name: row.name.clone(),
        scopes: row.scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        created_at: rfc3339(row.created_at),
        revoked_at: row.revoked_at.map(rfc3339),
        client_secret: None,
    })
}

fn require_admin(actor: &Actor) -> Result<(), ApiError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(ApiError::client(ProblemKind::Forbidden, "service clients are managed by admins"))
    }
}

/// Compares two byte strings in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A refusal as RFC 6749 §5.2 says it, inside a problem.
fn oauth_refusal(code: oauth::ErrorCode, description: &str) -> ApiError {
    ApiError::Client(Problem::from(oauth::TokenError { code, description: description.to_owned() }))
}

/// A service's call without the scope it needs (RFC 6750 §3.1 `insufficient_scope`).
fn insufficient_scope(scope: Scope) -> ApiError {
    ApiError::Client(
        Problem::new(
            ProblemKind::Forbidden,
            format!("this service client lacks the {} scope", scope.as_str()),
        )
        .with("error", "insufficient_scope")
        .with("scope", scope.as_str()),
    )
}

impl Accounts {
    /// Creates a service client; its secret is in this answer only.
    pub async fn create_service_client(
        &self,
        actor: &Actor,
        request: NewServiceClient,
        now: UnixMillis,
    ) -> Result<ServiceClient, ApiError> {
        require_admin(actor)?;
        let name = request.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(crate::users::invalid_field(
                "name",
                "length",
                "1 to 100 characters, no control characters".into(),
            ));
        }
        let scopes = oauth::parse_scopes(&request.scopes.join(" ")).map_err(|unknown| {
            crate::users::invalid_field(
                "scopes",
                "known",
                format!("unknown scope {unknown:?} (usage:write, entitlements:read)"),
            )
        })?;
        if scopes.is_empty() {
            return Err(crate::users::invalid_field("scopes", "required", "at least one scope".into()));
        }
        let id = ClientId::from_random(random_16());
        let mut bytes = [0u8; 32];
        for (slot, byte) in bytes.iter_mut().zip(random_16().into_iter().chain(random_16())) {
            *slot = byte;
        }
        let secret = oauth::client_secret(bytes);
        let row = ServiceClientRow {
            id: id.to_string(),
            name: name.to_owned(),
            secret_hash: hex::encode(
                self.keyring.secret_mac(SECRET_PURPOSE, format!("{id}:{secret}").as_bytes()),
            ),
            scopes: oauth::scope_string(&scopes),
            created_at: now,
            revoked_at: None,
        };
        self.store.insert_service_client(&row).await?;
        tracing::info!(client = %id, by = %actor, scopes = %row.scopes, "service client created");
        Ok(ServiceClient { client_secret: Some(secret), ..client_view(&row)? })
    }

    pub async fn list_service_clients(&self, actor: &Actor) -> Result<ServiceClients, ApiError> {
        require_admin(actor)?;
        let clients =
            self.store.service_clients().await?.iter().map(client_view).collect::<Result<_, _>>()?;
        Ok(ServiceClients { clients })
    }

    /// Revokes a client: no new token, and its current tokens are refused here at once.
    pub async fn revoke_service_client(
        &self,
        actor: &Actor,
        id: &str,
        now: UnixMillis,
    ) -> Result<ServiceClient, ApiError> {
        require_admin(actor)?;
        let unknown = || ApiError::client(ProblemKind::NotFound, format!("no active service client {id}"));
        if ClientId::parse(id).is_none() || !self.store.revoke_service_client(id, now).await? {
            return Err(unknown());
        }
        tracing::info!(client = %id, by = %actor, "service client revoked");
        let row = self.store.service_client(id).await?.ok_or_else(unknown)?;
        client_view(&row)
    }

    /// The token endpoint's check: the client exists, is active, its secret is right; the
    /// scopes it asked for are among its own. Answers the client id and the granted scope.
    pub async fn check_service_client(&self, check: ClientCheck) -> Result<ClientGranted, ApiError> {
        let id = check.client_id.as_str();
        let candidates =
            self.keyring.secret_macs(SECRET_PURPOSE, format!("{id}:{}", check.client_secret).as_bytes());
        let row = self.store.service_client(id).await?;
        let matches = row.as_ref().is_some_and(|r| {
            candidates
                .iter()
                .fold(false, |found, c| found | same(hex::encode(c).as_bytes(), r.secret_hash.as_bytes()))
        });
        let row = match row {
            Some(row) if matches && row.revoked_at.is_none() => row,
            // One answer for an unknown client, a wrong secret and a revoked client.
            _ => {
                return Err(oauth_refusal(
                    oauth::ErrorCode::InvalidClient,
                    "the client credentials are not valid",
                ))
            }
        };
        let has = oauth::parse_scopes(&row.scopes)
            .map_err(|s| ApiError::Internal(format!("client {id} has an unknown scope {s:?}")))?;
        let granted =
            oauth::grant_scopes(check.scopes.as_deref(), &has).map_err(|e| ApiError::Client(e.into()))?;
        Ok(ClientGranted { client_id: check.client_id.clone(), scope: oauth::scope_string(&granted) })
    }

    /// The client behind a service actor, if it is active and has `scope`.
    async fn service_with(&self, client_id: &ClientId, scope: Scope) -> Result<(), ApiError> {
        let row = self.store.service_client(client_id.as_str()).await?;
        match row {
            Some(r) if r.revoked_at.is_none() => {
                let has = oauth::parse_scopes(&r.scopes).unwrap_or_default();
                if has.contains(&scope) {
                    Ok(())
                } else {
                    Err(insufficient_scope(scope))
                }
            }
            _ => Err(ApiError::client(
                ProblemKind::Unauthenticated,
                "the service client is revoked or unknown",
            )),
        }
    }

    /// The user's organization as the entitlements see it: its tier (a member's while they
    /// belong to it) and the integrations its policies allow.
    async fn organization_of(&self, user_id: &str) -> Result<Option<entitlements::OrgGrant>, ApiError> {
        let Some((org, _)) = self.store.membership(user_id).await? else { return Ok(None) };
        let tier: Tier = org.tier.parse().map_err(ApiError::Internal)?;
        let policies: domain::org::OrgPolicies =
            serde_json::from_str(&org.policies).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Some(entitlements::OrgGrant { id: org.id, tier, integrations: policies.allowed_integrations }))
    }

    /// What the user may do now (the user, an admin, or a service with `entitlements:read`).
    pub async fn entitlements(&self, actor: &Actor, id: &UserId) -> Result<UserEntitlements, ApiError> {
        match actor {
            Actor::Service { client_id } => self.service_with(client_id, Scope::EntitlementsRead).await?,
            other => authorize(other, id)?,
        }
        let row = self.store.user_by_id(id.as_str()).await?.ok_or_else(|| not_found(id.as_str()))?;
        let tier: Tier = row.tier.parse().map_err(ApiError::Internal)?;
        let consents = rights::effective(&self.store.consents(id.as_str()).await?, row.created_at, false);
        let mut usage = Usage::default();
        for (resource, used, _) in self.store.usage(id.as_str()).await? {
            match Resource::parse(&resource) {
                Some(Resource::Playlists) => usage.playlists = used,
                Some(Resource::StorageBytes) => usage.storage_bytes = used,
                None => {}
            }
        }
        let organization = self.organization_of(id.as_str()).await?;
        let computed = entitlements::compute(&Facts {
            tier,
            consents: &consents,
            usage,
            organization: organization.as_ref(),
        });
        Ok(UserEntitlements { user_id: id.to_string(), entitlements: computed })
    }

    /// Applies a usage report from a service with `usage:write`: 200 with the new state, or
    /// 403 `entitlement-exceeded` naming the limit; a retry with the same key gets the same.
    pub async fn report_usage(
        &self,
        actor: &Actor,
        id: &UserId,
        body: &Value,
        now: UnixMillis,
    ) -> Result<UsageAnswer, ApiError> {
        let Actor::Service { client_id } = actor else {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                "usage is reported by platform services only",
            ));
        };
        self.service_with(client_id, Scope::UsageWrite).await?;
        let report = entitlements::parse_report(body).map_err(|errors| {
            let detail =
                errors.iter().map(|e| format!("{}: {}", e.field, e.detail)).collect::<Vec<_>>().join("; ");
            ApiError::Client(
                Problem::new(ProblemKind::ValidationFailed, detail)
                    .with("errors", serde_json::to_value(&errors).unwrap_or(Value::Null)),
            )
        })?;
        let row = self.store.user_by_id(id.as_str()).await?.ok_or_else(|| not_found(id.as_str()))?;
        // A member's limits are their organization's tier's.
        let own: Tier = row.tier.parse().map_err(ApiError::Internal)?;
        let tier = self.organization_of(id.as_str()).await?.map_or(own, |o| o.tier);
        let change = UsageChange {
            client_id: client_id.as_str(),
            idempotency_key: &report.idempotency_key,
            user_id: id.as_str(),
            resource: report.resource.as_str(),
            delta: report.delta,
            limit: report.resource.limit(tier),
            now,
            forget_before: now.saturating_sub_ms(entitlements::IDEMPOTENCY_RETENTION_MS),
        };
        let (stored, replayed) = match self.store.apply_usage(&change).await? {
            UsageApplied::NoUser => return Err(not_found(id.as_str())),
            UsageApplied::New(stored) => (stored, false),
            UsageApplied::Replayed(stored) => (stored, true),
        };
        if stored.user_id != id.as_str() || stored.resource != change.resource || stored.delta != change.delta
        {
            return Err(ApiError::Client(
                Problem::new(
                    ProblemKind::Conflict,
                    "this idempotency key was used for another report; use a new key for each report",
                )
                .with("idempotency_key", report.idempotency_key.clone()),
            ));
        }
        usage_answer(&stored, replayed)
    }
}

/// The answer to a report, the same for its first try and its retries (`replayed` aside).
fn usage_answer(stored: &UsageReportRow, replayed: bool) -> Result<UsageAnswer, ApiError> {
    if !stored.admitted {
        let limit = stored.limit.unwrap_or(0);
        return Err(ApiError::Client(
            Problem::new(
                ProblemKind::EntitlementExceeded,
                format!(
                    "the limit of {} is {limit}: {} used, so a delta of {:+} is refused",
                    stored.resource, stored.used, stored.delta
                ),
            )
            .with("resource", stored.resource.clone())
            .with("limit", limit)
            .with("used", stored.used)
            .with("delta", stored.delta)
            .with("replayed", replayed),
        ));
    }
    Ok(UsageAnswer {
        user_id: stored.user_id.clone(),
        resource: Resource::parse(&stored.resource)
            .ok_or_else(|| ApiError::Internal(format!("stored resource {:?}", stored.resource)))?,
        delta: stored.delta,
        admitted: true,
        used: stored.used,
        limit: stored.limit,
        remaining: stored.limit.map(|l| l.saturating_sub(stored.used)),
        read_only: entitlements::read_only(stored.used, stored.limit),
        replayed,
    })
}

async fn create_client(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(request): ApiJson<NewServiceClient>,
) -> Result<(StatusCode, Json<ServiceClient>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.accounts.create_service_client(&actor, request, state.clock.now()).await?),
    ))
}

async fn list_clients(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<ServiceClients>, ApiError> {
    Ok(Json(state.accounts.list_service_clients(&actor).await?))
}

async fn revoke_client(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(client_id): Path<String>,
) -> Result<Json<ServiceClient>, ApiError> {
    Ok(Json(state.accounts.revoke_service_client(&actor, &client_id, state.clock.now()).await?))
}

async fn check_client(
    State(state): State<AppState>,
    ApiJson(check): ApiJson<ClientCheck>,
) -> Result<Json<ClientGranted>, ApiError> {
    Ok(Json(state.accounts.check_service_client(check).await?))
}

async fn read_entitlements(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<UserEntitlements>, ApiError> {
    Ok(Json(state.accounts.entitlements(&actor, &user_id(&id)?).await?))
}

async fn report_usage(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<UsageAnswer>, ApiError> {
    Ok(Json(state.accounts.report_usage(&actor, &user_id(&id)?, &body, state.clock.now()).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestOrigin;
    use crate::users::CreateUser;

    const NOW: UnixMillis = UnixMillis(1_764_000_000_000);

    async fn free_user(origin: &TestOrigin, email: &str) -> UserId {
        let request = CreateUser {
            email: email.to_owned(),
            password: "a long enough passphrase 42".to_owned(),
            tier: None,
            role: None,
            profile: None,
            birth_date: None,
            parent_email: None,
        };
        let view = origin.state.accounts.create(&Actor::System, request, NOW).await.unwrap();
        view.id().parse().unwrap()
    }

    async fn client(origin: &TestOrigin, scopes: &[&str]) -> (Actor, String) {
        let request =
            NewServiceClient { name: "svc".into(), scopes: scopes.iter().map(|s| (*s).to_owned()).collect() };
        let created =
            origin.state.accounts.create_service_client(&Actor::System, request, NOW).await.unwrap();
        (Actor::Service { client_id: created.client_id }, created.client_secret.unwrap())
    }

    fn body(resource: &str, delta: i64, key: &str) -> Value {
        serde_json::json!({ "resource": resource, "delta": delta, "idempotency_key": key })
    }

    #[tokio::test]
    async fn concurrent_reports_admit_exactly_the_room_left_and_retries_count_once() {
        let origin = TestOrigin::start().await;
        let accounts = std::sync::Arc::clone(&origin.state.accounts);
        let user = free_user(&origin, "meter@example.com").await;
        let (service, _) = client(&origin, &["usage:write"]).await;
        accounts.report_usage(&service, &user, &body("playlists", 8, "k0"), NOW).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let (accounts, service, user) =
                    (std::sync::Arc::clone(&accounts), service.clone(), user.clone());
                tokio::spawn(async move {
                    accounts
                        .report_usage(
                            &service,
                            &user,
                            &body("playlists", 1, &format!("k{}", i % 10 + 1)),
                            NOW,
                        )
                        .await
                })
            })
            .collect();
        let mut admitted = std::collections::BTreeSet::new();
        for task in tasks {
            if let Ok(answer) = task.await.unwrap() {
                admitted.insert(answer.used);
            }
        }
        // Ten keys sent twice each: two are admitted (used 9, then 10), retries get the same.
        assert_eq!(admitted, [9, 10].into_iter().collect());
        let seen = accounts.entitlements(&Actor::System, &user).await.unwrap();
        let playlists = &seen.entitlements.playlists;
        assert_eq!(
            (playlists.limit, playlists.used, playlists.remaining, playlists.read_only),
            (Some(10), 10, Some(0), false)
        );
        let refused =
            accounts.report_usage(&service, &user, &body("playlists", 1, "k99"), NOW).await.unwrap_err();
        let ApiError::Client(problem) = refused else { panic!("not a refusal") };
        assert_eq!((problem.status, problem.extensions["limit"].as_u64()), (403, Some(10)));
        // Deleting is admitted.
        let freed =
            accounts.report_usage(&service, &user, &body("playlists", -3, "k100"), NOW).await.unwrap();
        assert_eq!(freed.used, 7);
    }

    #[tokio::test]
    async fn secrets_are_checked_and_scopes_enforced() {
        let origin = TestOrigin::start().await;
        let accounts = &origin.state.accounts;
        let (reader, secret) = client(&origin, &["entitlements:read"]).await;
        let Actor::Service { client_id } = &reader else { unreachable!() };
        let check = |secret: &str, scopes: Option<Vec<Scope>>| ClientCheck {
            client_id: client_id.clone(),
            client_secret: secret.to_owned(),
            scopes,
        };
        let granted = accounts.check_service_client(check(&secret, None)).await.unwrap();
        assert_eq!(granted.scope, "entitlements:read");
        let wrong = accounts.check_service_client(check("svs_wrong", None)).await.unwrap_err();
        assert!(matches!(wrong, ApiError::Client(ref p) if p.extensions["error"] == "invalid_client"));
        let beyond =
            accounts.check_service_client(check(&secret, Some(vec![Scope::UsageWrite]))).await.unwrap_err();
        assert!(matches!(beyond, ApiError::Client(ref p) if p.extensions["error"] == "invalid_scope"));
        // The stored hash is not the secret.
        let row = accounts.store.service_client(client_id.as_str()).await.unwrap().unwrap();
        assert!(!row.secret_hash.contains(&secret) && row.secret_hash.len() == 64);

        let user = free_user(&origin, "scoped@example.com").await;
        let refused =
            accounts.report_usage(&reader, &user, &body("playlists", 1, "k"), NOW).await.unwrap_err();
        assert!(matches!(refused, ApiError::Client(ref p) if p.extensions["error"] == "insufficient_scope"));
        assert!(accounts.entitlements(&reader, &user).await.is_ok());
        accounts.revoke_service_client(&Actor::System, client_id.as_str(), NOW).await.unwrap();
        assert!(accounts.check_service_client(check(&secret, None)).await.is_err());
        assert!(accounts.entitlements(&reader, &user).await.is_err());
    }
}
