//! Entitlements and metering at the edge (issue 19): the OAuth 2.0 token endpoint of
//! platform services (client credentials, checked by the origin, the token signed here),
//! service clients (admins), usage reports (services with `usage:write`) and the
//! entitlements view (the user, an admin, or a service with `entitlements:read`).
//!
//! A service token is accepted only on the routes its scope allows, and each service client
//! is limited per rolling minute in a gate of its own (`svc:<client id>`).
//!
//! Entitlements are served like profiles: from KV when the user's gate vouches for the entry.
//! The gate's `entitlements_epoch` moves with every change the edge acknowledges that they
//! depend on (a usage report, a tier, a consent); an entry is stored with the epoch the gate
//! answered before the origin was read, and served only while the epoch is still that one, so
//! a writer's next read never gets a view older than its write.

use domain::entitlements::SERVICE_REQUESTS_PER_MINUTE;
use domain::identity::{Actor, UserId};
use domain::oauth::{self, Scope};
use domain::problem::{Problem, ProblemKind};
use domain::wire::entitlements::{ClientCheck, ClientGranted, ServiceClient, ServiceToken};
use worker::{Env, Method, Request, Response};

use crate::auth::{self, Caller, ServiceCaller};
use crate::events::Events;
use crate::gate::{GateAnswer, GateClient};
use crate::http::{self, forward, origin_json, JSON};
use crate::limits::{self, Admission, IpClass};
use crate::problem::EdgeError;
use crate::routes::{not_allowed, only, user_id, user_route};

/// Which source answered an entitlements read: `cache` or `origin`.
const SOURCE_HEADER: &str = "x-entitlements-source";
/// The media type of a token request (RFC 6749 §4.4.2).
const FORM: &str = "application/x-www-form-urlencoded";
/// The throttle class (and `RateLimit-Policy` name) of service clients.
const SERVICE_CLASS: &str = "service";

/// The operations of this module.
pub enum Op {
    Token,
    CreateClient,
    ListClients,
    RevokeClient(String),
    Entitlements(UserId),
    Usage(UserId),
}

/// The routes of this module; `None` for a path that is not one of them.
pub fn route(method: &Method, segments: &[&str]) -> Option<Result<Op, EdgeError>> {
    Some(match segments {
        ["api", "v1", "oauth", "token"] => only(method, &[Method::Post]).map(|()| Op::Token),
        ["api", "v1", "service-clients"] => match method {
            Method::Get => Ok(Op::ListClients),
            Method::Post => Ok(Op::CreateClient),
            _ => Err(not_allowed(&[Method::Get, Method::Post])),
        },
        ["api", "v1", "service-clients", client] => {
            only(method, &[Method::Delete]).map(|()| Op::RevokeClient((*client).to_owned()))
        }
        ["api", "v1", "users", id, "entitlements"] => {
            only(method, &[Method::Get]).and_then(|()| user_id(id)).map(Op::Entitlements)
        }
        ["api", "v1", "users", id, "usage"] => {
            only(method, &[Method::Post]).and_then(|()| user_id(id)).map(Op::Usage)
        }
        _ => return None,
    })
}

pub async fn handle(
    op: Op,
    req: Request,
    env: &Env,
    path: &str,
    events: &Events,
    class: &str,
) -> Result<Response, EdgeError> {
    match op {
        // Client authentication: limited per address like the logins it stands for.
        Op::Token => match limits::admit_ip(&req, env, IpClass::Login).await? {
            Admission::Refused(r) => Ok(r),
            Admission::Admitted(limit) => limits::finish(token(req, env).await, &limit, "ip-login", path),
        },
        Op::CreateClient => {
            user_route(req, env, path, true, events, class, move |req, caller, _| {
                create_client(req, env, caller)
            })
            .await
        }
        Op::ListClients => {
            user_route(req, env, path, true, events, class, move |_, caller, _| list_clients(env, caller))
                .await
        }
        Op::RevokeClient(client) => {
            user_route(req, env, path, true, events, class, move |_, caller, _| {
                revoke_client(env, caller, client)
            })
            .await
        }
        Op::Entitlements(id) => {
            if presents_service_token(&req)? {
                read_as_service(req, env, path, id).await
            } else {
                user_route(req, env, path, true, events, class, move |_, caller, gate| {
                    read_as_user(env, caller, gate, id)
                })
                .await
            }
        }
        Op::Usage(id) => report_usage(req, env, path, id).await,
    }
}

/// Whether the bearer token says it is a service token (unverified: it only chooses which
/// validation runs, and each checks the type again).
fn presents_service_token(req: &Request) -> Result<bool, EdgeError> {
    Ok(auth::bearer(req)?
        .is_some_and(|t| domain::token::claimed_type(&t).as_deref() == Some(domain::token::SERVICE_TYP)))
}

/// An RFC 6749 §5.2 error as a problem; a client that tried HTTP Basic is told the scheme
/// (§5.2: `invalid_client` with Basic is a 401 with `WWW-Authenticate`).
fn oauth_error(problem: &Problem, basic: bool) -> Result<Response, EdgeError> {
    let mut response = crate::problem::respond(problem)?;
    if problem.status == 401 {
        let scheme = if basic { "Basic realm=\"oauth\"" } else { "Bearer" };
        response.headers_mut().set("www-authenticate", scheme)?;
    }
    Ok(response)
}

/// `POST /api/v1/oauth/token`: client credentials → a service access token.
async fn token(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let content_type = req.headers().get("content-type")?.unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media_type != FORM {
        return Err(EdgeError::new(
            ProblemKind::UnsupportedMediaType,
            format!("send the token request as {FORM} (got {content_type:?})"),
        ));
    }
    let bytes = req.bytes().await?;
    if bytes.len() > http::MAX_BODY_BYTES {
        return Err(EdgeError::new(
            ProblemKind::PayloadTooLarge,
            format!("the body is {} bytes; the limit is {}", bytes.len(), http::MAX_BODY_BYTES),
        ));
    }
    let authorization = req.headers().get("authorization")?;
    let basic = authorization.is_some();
    let request = match oauth::parse_token_request(&bytes, authorization.as_deref()) {
        Ok(request) => request,
        Err(e) => return oauth_error(&Problem::from(e), basic),
    };
    let body = serde_json::to_value(ClientCheck {
        client_id: request.client_id,
        client_secret: request.client_secret,
        scopes: request.scopes,
    })?;
    let granted: ClientGranted =
        match forward(env, &Actor::Anonymous, Method::Post, "/internal/oauth/token", Some(&body)).await {
            Ok(answer) => http::origin_as(&answer)?,
            Err(EdgeError::Problem(problem)) if problem.status < 500 => return oauth_error(&problem, basic),
            Err(e) => return Err(e),
        };
    let issued = auth::issue_service_token(env, granted.client_id.as_str(), &granted.scope).await?;
    let token = ServiceToken {
        access_token: issued.token,
        token_type: "Bearer".into(),
        expires_in: issued.expires_in,
        scope: granted.scope,
    };
    let mut response = http::reply(200, &token)?;
    response.headers_mut().set("pragma", "no-cache")?;
    Ok(response)
}

fn require_admin(caller: &Caller) -> Result<(), EdgeError> {
    if caller.actor().is_admin() {
        Ok(())
    } else {
        Err(EdgeError::new(ProblemKind::Forbidden, "service clients are managed by admins"))
    }
}

async fn create_client(mut req: Request, env: &Env, caller: Caller) -> Result<Response, EdgeError> {
    require_admin(&caller)?;
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &caller.actor(), Method::Post, "/internal/service-clients", Some(&body)).await?;
    let created: ServiceClient = http::origin_as(&answer)?;
    let mut response = http::reply(201, &created)?;
    response
        .headers_mut()
        .set("location", &format!("/api/v1/service-clients/{}", created.client_id.as_str()))?;
    Ok(response)
}

async fn list_clients(env: &Env, caller: Caller) -> Result<Response, EdgeError> {
    require_admin(&caller)?;
    let answer = forward(env, &caller.actor(), Method::Get, "/internal/service-clients", None).await?;
    http::relay(200, &answer)
}

async fn revoke_client(env: &Env, caller: Caller, client: String) -> Result<Response, EdgeError> {
    require_admin(&caller)?;
    if oauth::ClientId::parse(&client).is_none() {
        return Err(EdgeError::new(ProblemKind::NotFound, format!("no service client {client}")));
    }
    let path = format!("/internal/service-clients/{client}");
    let answer = forward(env, &caller.actor(), Method::Delete, &path, None).await?;
    http::relay(200, &answer)
}

/// Authenticates a service and counts the request against its client's per-minute limit.
async fn admit_service(
    req: &Request,
    env: &Env,
) -> Result<(ServiceCaller, Admission<crate::gate::LimitAnswer>), EdgeError> {
    let token = auth::bearer(req)?.ok_or_else(|| {
        crate::metrics::token_failure("missing");
        auth::unauthenticated("a service access token is required")
    })?;
    if domain::token::claimed_type(&token).as_deref() != Some(domain::token::SERVICE_TYP) {
        return Err(auth::unauthenticated(
            "this operation takes a service access token (client credentials)",
        ));
    }
    let service = auth::service(env, &token).await?;
    let gate = GateClient::for_user(env, &format!("svc:{}", service.client_id))?;
    let limit = gate.throttle(SERVICE_CLASS, 60, SERVICE_REQUESTS_PER_MINUTE).await?;
    if limit.admitted {
        Ok((service, Admission::Admitted(limit)))
    } else {
        let detail =
            format!("a service client may make {SERVICE_REQUESTS_PER_MINUTE} requests per rolling minute");
        Ok((service, Admission::Refused(limits::refusal(&limit, SERVICE_CLASS, detail)?)))
    }
}

/// Refuses a service token without `scope` (RFC 6750 §3.1).
fn require_scope(service: &ServiceCaller, scope: Scope) -> Result<(), EdgeError> {
    if service.scopes.contains(&scope) {
        return Ok(());
    }
    Err(EdgeError::Problem(
        Problem::new(
            ProblemKind::Forbidden,
            format!("this token's scope does not include {}", scope.as_str()),
        )
        .with("error", "insufficient_scope")
        .with("scope", scope.as_str()),
    ))
}

/// `POST /api/v1/users/{id}/usage`: the origin applies the report; an admitted one (or its
/// retry) moves the user's entitlements epoch before the answer.
async fn report_usage(mut req: Request, env: &Env, path: &str, id: UserId) -> Result<Response, EdgeError> {
    let (service, admission) = admit_service(&req, env).await?;
    let limit = match admission {
        Admission::Refused(response) => return Ok(response),
        Admission::Admitted(limit) => limit,
    };
    let answer = async {
        require_scope(&service, Scope::UsageWrite)?;
        let body = http::read_json(&mut req, &[JSON]).await?;
        let path = format!("/internal/users/{id}/usage");
        let answer = origin_json(&forward(env, &service.actor(), Method::Post, &path, Some(&body)).await?)?;
        GateClient::for_user(env, id.as_str())?.touch_entitlements().await?;
        http::json(200, &answer, None)
    }
    .await;
    limits::finish(answer, &limit, SERVICE_CLASS, path)
}

fn authorize(caller: &Caller, target: &UserId) -> Result<(), EdgeError> {
    if caller.actor().may_act_on(target) {
        Ok(())
    } else {
        Err(EdgeError::new(ProblemKind::Forbidden, "you may only read your own entitlements"))
    }
}

async fn read_as_user(
    env: &Env,
    caller: Caller,
    gate: GateAnswer,
    id: UserId,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    // The caller's own gate answered with the admission; anyone else's is asked, uncounted.
    let epoch = if caller.id == id {
        gate.entitlements_epoch
    } else {
        GateClient::for_user(env, id.as_str())?.peek().await?.entitlements_epoch
    };
    serve(env, &caller.actor(), &id, epoch).await
}

async fn read_as_service(req: Request, env: &Env, path: &str, id: UserId) -> Result<Response, EdgeError> {
    let (service, admission) = admit_service(&req, env).await?;
    let limit = match admission {
        Admission::Refused(response) => return Ok(response),
        Admission::Admitted(limit) => limit,
    };
    let answer = async {
        require_scope(&service, Scope::EntitlementsRead)?;
        let epoch = GateClient::for_user(env, id.as_str())?.peek().await?.entitlements_epoch;
        serve(env, &service.actor(), &id, epoch).await
    }
    .await;
    limits::finish(answer, &limit, SERVICE_CLASS, path)
}

/// The cached view if the gate's epoch is still the one it was stored under, else the origin's
/// (then cached under `epoch`, the gate's answer from before the origin was read).
async fn serve(env: &Env, actor: &Actor, id: &UserId, epoch: u64) -> Result<Response, EdgeError> {
    if let Some(cached) = cache::get(env, id.as_str()).await? {
        if cached.epoch == epoch {
            let mut response = http::json_text(200, String::from(Box::<str>::from(cached.view)), None)?;
            response.headers_mut().set(SOURCE_HEADER, "cache")?;
            return Ok(response);
        }
    }
    let path = format!("/internal/users/{id}/entitlements");
    let view = origin_json(&forward(env, actor, Method::Get, &path, None).await?)?;
    cache::put(env, id.as_str(), &cache::Entry { epoch, view: view.clone() }).await?;
    let mut response = http::json(200, &view, None)?;
    response.headers_mut().set(SOURCE_HEADER, "origin")?;
    Ok(response)
}

/// Removes a user's cached entitlements (their erasure).
pub async fn forget(env: &Env, user_id: &str) -> Result<(), EdgeError> {
    cache::delete(env, user_id).await.map_err(EdgeError::from)
}

/// The KV cache of entitlements, beside the profiles: `entitlements:<keyed hash of the id>` →
/// `{"epoch": n, "view": {...}}` (the key names no user, as in `profile_cache`).
mod cache {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;
    use worker::Env;

    use crate::bindings::{OriginConfig, KV_PROFILES};

    /// An hour: usage moves often, and a miss costs one origin read.
    const TTL_SECS: u64 = 3600;

    #[derive(Debug, Serialize)]
    pub struct Entry {
        pub epoch: u64,
        pub view: Value,
    }

    #[derive(Debug, Deserialize)]
    pub struct CachedText {
        pub epoch: u64,
        pub view: Box<serde_json::value::RawValue>,
    }

    fn key(env: &Env, user_id: &str) -> worker::Result<String> {
        static SECRET: std::sync::OnceLock<domain::signing::SharedSecret> = std::sync::OnceLock::new();
        let secret = match SECRET.get() {
            Some(secret) => secret,
            None => {
                let config =
                    OriginConfig::from_env(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
                SECRET.get_or_init(|| config.secret)
            }
        };
        Ok(format!("entitlements:{}", secret.hmac_hex(format!("kv-entitlements-key\0{user_id}").as_bytes())))
    }

    pub async fn get(env: &Env, user_id: &str) -> worker::Result<Option<CachedText>> {
        let text = env.kv(KV_PROFILES)?.get(&key(env, user_id)?).text().await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    pub async fn put(env: &Env, user_id: &str, entry: &Entry) -> worker::Result<()> {
        let text = serde_json::to_string(entry)?;
        env.kv(KV_PROFILES)?
            .put_bytes(&key(env, user_id)?, text.as_bytes())?
            .expiration_ttl(TTL_SECS)
            .execute()
            .await?;
        Ok(())
    }

    pub async fn delete(env: &Env, user_id: &str) -> worker::Result<()> {
        env.kv(KV_PROFILES)?.delete(&key(env, user_id)?).await?;
        Ok(())
    }
}
