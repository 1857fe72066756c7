//! Personalisation at the edge (issue 17): the personalisation context the platform's AI
//! services read (`GET /api/v1/users/{id}/personalization`), served from KV like profiles, and
//! the operations the origin answers (recommendations, personal model training, the federated
//! model and its rounds), forwarded as the caller.
//!
//! The context's KV entry (`personalization:<keyed hash of the id>`) carries the profile version
//! it was built at. It is served only to the user themself, when the gate vouches that no
//! acknowledged write is newer (read-your-writes: turning mood detection off is a profile write,
//! so the next read cannot show the mood) and while it is younger than [`FRESH_MS`] (the taste
//! profile moves with the origin's job, which the gate does not see). A consent change deletes
//! the entry (`forget`).

use domain::identity::UserId;
use domain::problem::ProblemKind;
use domain::wire::personalization::{ContextVersion, FederatedUpdate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{Env, Method, Request, Response};

use crate::auth::Caller;
use crate::bindings::{OriginConfig, KV_PROFILES};
use crate::gate::GateAnswer;
use crate::http::{self, forward, origin_json, JSON};
use crate::problem::EdgeError;

/// How long a cached context is served without asking the origin.
const FRESH_MS: u64 = 5_000;
/// KV's shortest expiry; the entry is no longer served after [`FRESH_MS`] anyway.
const KV_TTL_SECS: u64 = 60;
/// Which source answered; tests and operators read it.
const SOURCE_HEADER: &str = "x-personalization-source";

/// The operations under this module.
pub enum Op {
    Context(UserId),
    Recommendations(UserId),
    TrainModel(UserId),
    FederatedModel,
    FederatedUpdate(String),
}

/// Matches this module's paths; `None` for any other path.
pub fn route(method: &Method, segments: &[&str]) -> Option<Result<Op, EdgeError>> {
    let user = |id: &str| -> Result<UserId, EdgeError> {
        id.parse().map_err(|_| EdgeError::new(ProblemKind::NotFound, format!("no user {id}")))
    };
    let (allowed, op): (Method, Result<Op, EdgeError>) = match segments {
        ["api", "v1", "users", id, "personalization"] => (Method::Get, user(id).map(Op::Context)),
        ["api", "v1", "users", id, "recommendations"] => (Method::Get, user(id).map(Op::Recommendations)),
        ["api", "v1", "users", id, "custom-model"] => (Method::Post, user(id).map(Op::TrainModel)),
        ["api", "v1", "federated", "model"] => (Method::Get, Ok(Op::FederatedModel)),
        ["api", "v1", "federated", "rounds", round, "updates"] => {
            (Method::Post, Ok(Op::FederatedUpdate((*round).to_owned())))
        }
        _ => return None,
    };
    Some(crate::routes::only(method, &[allowed]).and(op))
}

fn authorize(caller: &Caller, target: &UserId) -> Result<(), EdgeError> {
    if caller.actor().may_act_on(target) {
        Ok(())
    } else {
        Err(EdgeError::new(ProblemKind::Forbidden, "you may only act on your own account"))
    }
}

pub async fn handle(
    mut req: Request,
    env: &Env,
    caller: Caller,
    gate: GateAnswer,
    op: Op,
) -> Result<Response, EdgeError> {
    match op {
        Op::Context(id) => context(env, caller, gate, id).await,
        Op::Recommendations(id) => {
            authorize(&caller, &id)?;
            let query = Some(http::raw_query(&req))
                .filter(|q| !q.is_empty())
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            let path = format!("/internal/users/{id}/recommendations{query}");
            relay(200, forward(env, &caller.actor(), Method::Get, &path, None).await?)
        }
        Op::TrainModel(id) => {
            authorize(&caller, &id)?;
            let path = format!("/internal/users/{id}/custom-model");
            relay(201, forward(env, &caller.actor(), Method::Post, &path, None).await?)
        }
        Op::FederatedModel => {
            relay(200, forward(env, &caller.actor(), Method::Get, "/internal/federated/model", None).await?)
        }
        Op::FederatedUpdate(round) => {
            if round.is_empty() || round.len() > 19 || !round.bytes().all(|b| b.is_ascii_digit()) {
                return Err(EdgeError::new(ProblemKind::NotFound, format!("no round {round}")));
            }
            let body = http::read_json(&mut req, &[JSON]).await?;
            // Checked here so a malformed update costs no origin call.
            let _: FederatedUpdate = serde_json::from_value(body.clone())
                .map_err(|e| EdgeError::new(ProblemKind::BadRequest, format!("invalid body: {e}")))?;
            let path = format!("/internal/federated/rounds/{round}/updates");
            relay(202, forward(env, &caller.actor(), Method::Post, &path, Some(&body)).await?)
        }
    }
}

fn relay(status: u16, answer: crate::origin_client::OriginResponse) -> Result<Response, EdgeError> {
    http::relay(status, &answer)
}

#[derive(Serialize, Deserialize)]
struct Cached {
    version: u64,
    cached_at: u64,
    context: Box<serde_json::value::RawValue>,
}

fn key(env: &Env, user_id: &str) -> Result<String, EdgeError> {
    let config = OriginConfig::from_env(env)
        .map_err(|e| EdgeError::Runtime(worker::Error::RustError(e.to_string())))?;
    // A label of its own keeps this use of the secret apart from the profile keys and signing.
    Ok(format!(
        "personalization:{}",
        config.secret.hmac_hex(format!("kv-personalization-key\0{user_id}").as_bytes())
    ))
}

async fn context(env: &Env, caller: Caller, gate: GateAnswer, id: UserId) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let own = caller.id == id;
    let now = crate::origin_client::now().0;
    let kv = env.kv(KV_PROFILES)?;
    let key = key(env, id.as_str())?;
    if let (true, Some(required)) = (own, gate.profile_version) {
        let text = kv.get(&key).text().await?;
        if let Some(entry) = text.and_then(|t| serde_json::from_str::<Cached>(&t).ok()) {
            if entry.version >= required && now.saturating_sub(entry.cached_at) < FRESH_MS {
                let mut response = http::json_text(200, String::from(Box::<str>::from(entry.context)), None)?;
                response.headers_mut().set(SOURCE_HEADER, "cache")?;
                return Ok(response);
            }
        }
    }
    let answer =
        forward(env, &caller.actor(), Method::Get, &format!("/internal/users/{id}/personalization"), None)
            .await?;
    let body: Value = origin_json(&answer)?;
    if own {
        let ContextVersion { profile_version: version } = serde_json::from_value(body.clone())?;
        let context = serde_json::value::to_raw_value(&body)?;
        let entry = serde_json::to_string(&Cached { version, cached_at: now, context })?;
        kv.put_bytes(&key, entry.as_bytes())?.expiration_ttl(KV_TTL_SECS).execute().await?;
    }
    let mut response = http::json(200, &body, None)?;
    response.headers_mut().set(SOURCE_HEADER, "origin")?;
    Ok(response)
}

/// Deletes the user's cached context (a consent changed: what the AI may do changed with it).
pub async fn forget(env: &Env, user_id: &str) -> Result<(), EdgeError> {
    env.kv(KV_PROFILES)?.delete(&key(env, user_id)?).await?;
    Ok(())
}
