//! The account endpoints: signup, profile read and update, tier change, insights, login.
//! Each handler authenticates, authorises, makes one origin call or cache read, and records
//! what the origin acknowledged in the user's gate and in KV before answering.

use domain::identity::{Actor, UserId};
use domain::problem::ProblemKind;
use domain::tier::Tier;
use domain::wire::users::{ApiRequests, UpdateUser, Usage};
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response};

use crate::auth::Caller;
use crate::events::Events;
use crate::gate::{GateAnswer, GateClient, GateRecord};
use crate::http::{self, forward, JSON, MERGE_PATCH_JSON};
use crate::problem::EdgeError;
use crate::profile_cache::{self, CachedProfile};
use domain::wire::event::{EventKind, ProfileChangeData};

/// Which source answered a profile read; tests and operators read it from `x-profile-source`.
const SOURCE_HEADER: &str = "x-profile-source";

fn authorize(caller: &Caller, target: &UserId) -> Result<(), EdgeError> {
    if caller.actor().may_act_on(target) {
        Ok(())
    } else {
        Err(EdgeError::new(ProblemKind::Forbidden, "you may only act on your own account"))
    }
}

/// What the edge itself reads of the origin's user view (`domain::wire::users::User`); the
/// rest it caches and serves as the origin wrote it, so the wasm carries no code for the whole
/// view.
#[derive(Deserialize)]
struct Facts {
    id: String,
    version: u64,
    tier: Tier,
    security_settings: SecurityFacts,
}

#[derive(Deserialize)]
struct SecurityFacts {
    session_timeout_minutes: u32,
}

/// The user view of an origin answer, and what the edge reads of it.
fn user_view(answer: &crate::origin_client::OriginResponse) -> Result<(Value, Facts), EdgeError> {
    let view = http::origin_json(answer)?;
    let facts = Facts::deserialize(&view).map_err(|_| EdgeError::OriginFailed { status: answer.status })?;
    Ok((view, facts))
}

/// Records an acknowledged state of the profile: first in the gate (strongly consistent, so
/// the next read knows which version it must at least return), then in KV (the cache).
async fn remember(env: &Env, view: &Value, facts: &Facts) -> Result<u64, EdgeError> {
    let record = GateRecord {
        profile_version: facts.version,
        tier: facts.tier,
        idle_timeout_minutes: Some(facts.security_settings.session_timeout_minutes),
    };
    GateClient::for_user(env, &facts.id)?.record(&record).await?;
    profile_cache::put(env, &facts.id, &CachedProfile { version: facts.version, profile: view.clone() })
        .await?;
    Ok(facts.version)
}

pub async fn create(mut req: Request, env: &Env, caller: Option<Caller>) -> Result<Response, EdgeError> {
    let actor = caller.map_or(Actor::Anonymous, |c| c.actor());
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer = forward(env, &actor, Method::Post, "/internal/users", Some(&body)).await?;
    // A child's signup waits for a parent's consent (202): nothing to cache, no session to open.
    if answer.status == 202 {
        return http::relay(202, &answer);
    }
    let (view, facts) = user_view(&answer)?;
    let version = remember(env, &view, &facts).await?;
    let mut response = http::json(201, &view, Some(version))?;
    response.headers_mut().set("location", &format!("/api/v1/users/{}", facts.id))?;
    Ok(response)
}

/// The cache entry a profile read fetched while its gate answered (a read of one's own
/// profile): `None` when none was fetched.
pub type Prefetched = Option<worker::Result<Option<profile_cache::CachedText>>>;

pub async fn read(
    _req: Request,
    env: &Env,
    caller: Caller,
    gate: GateAnswer,
    id: UserId,
    prefetched: Prefetched,
) -> Result<Response, EdgeError> {
    let id = &id;
    authorize(&caller, id)?;
    // The caller's own gate answered with the request's admission; an admin reading someone
    // else asks that user's gate for the version it must at least serve.
    let required = if caller.id == *id {
        gate.profile_version
    } else {
        GateClient::for_user(env, id.as_str())?.peek().await?.profile_version
    };
    // KV is served only when the gate vouches that it is not behind an acknowledged write (the
    // entry carries its version, so one read while the gate answered is checked the same way).
    if let Some(required) = required {
        let cached = match prefetched {
            Some(entry) => entry?,
            None => profile_cache::get(env, id.as_str()).await?,
        };
        if let Some(cached) = cached {
            if cached.version >= required {
                let version = cached.version;
                let mut response =
                    http::json_text(200, String::from(Box::<str>::from(cached.profile)), Some(version))?;
                response.headers_mut().set(SOURCE_HEADER, "cache")?;
                crate::metrics::profile_read(true);
                return Ok(response);
            }
        }
    }
    let answer = forward(env, &caller.actor(), Method::Get, &format!("/internal/users/{id}"), None).await?;
    let (view, facts) = user_view(&answer)?;
    let version = remember(env, &view, &facts).await?;
    let mut response = http::json(200, &view, Some(version))?;
    response.headers_mut().set(SOURCE_HEADER, "origin")?;
    crate::metrics::profile_read(false);
    Ok(response)
}

pub async fn update(
    mut req: Request,
    env: &Env,
    caller: Caller,
    id: UserId,
    stepped_up_at: Option<u64>,
    events: &Events,
) -> Result<Response, EdgeError> {
    let id = &id;
    authorize(&caller, id)?;
    let accepted: &[&str] = if req.method() == Method::Patch { &[MERGE_PATCH_JSON, JSON] } else { &[JSON] };
    let if_match = http::if_match(&req)?;
    let patch = http::read_json(&mut req, accepted).await?;
    // The session's recent step-up travels with the change: weakening the security settings
    // needs one (the origin decides, the signature vouches for the value).
    let fields: Vec<String> = patch.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    let body = UpdateUser { patch, if_match, step_up_at: stepped_up_at };
    let answer = forward(
        env,
        &caller.actor(),
        Method::Patch,
        &format!("/internal/users/{id}"),
        Some(&http::to_origin(&body)?),
    )
    .await?;
    let (view, facts) = user_view(&answer)?;
    let version = remember(env, &view, &facts).await?;
    // Which fields changed, never their values: events carry no personal data.
    events.record(EventKind::ProfileChange, Some(id.as_str()), None, &ProfileChangeData { version, fields });
    http::json(200, &view, Some(version))
}

pub async fn upgrade(
    mut req: Request,
    env: &Env,
    caller: Caller,
    gate: GateAnswer,
    id: UserId,
    events: &Events,
) -> Result<Response, EdgeError> {
    let id = &id;
    authorize(&caller, id)?;
    let body = http::read_json(&mut req, &[JSON]).await?;
    let path = format!("/internal/users/{id}/tier");
    let answer = forward(env, &caller.actor(), Method::Post, &path, Some(&body)).await?;
    // The user view, and what a downgrade disabled (said once, here, and not cached).
    let (upgraded, facts) = user_view(&answer)?;
    let version = facts.version;
    // The origin answers a change to the tier the account already has with its current view,
    // unchanged. A version the gate has already acknowledged means exactly that: nothing was
    // written, so nothing is recorded (gate, KV) and no tier-change event is sent.
    let acknowledged = if caller.id == *id {
        gate.profile_version
    } else {
        GateClient::for_user(env, id.as_str())?.peek().await?.profile_version
    };
    if acknowledged.is_some_and(|known| version <= known) {
        return http::json(200, &upgraded, Some(version));
    }
    let mut user = upgraded.clone();
    if let Some(object) = user.as_object_mut() {
        object.remove("integrations_disabled");
    }
    let version = remember(env, &user, &facts).await?;
    events.push(
        EventKind::TierChange,
        Some(id.as_str()),
        None,
        json!({ "tier": facts.tier, "by": caller.actor().to_string() }),
    );
    http::json(200, &upgraded, Some(version))
}

/// Starts an email change. The origin checks the current password and the new address and
/// sends a code there; nothing changes until the code comes back.
pub async fn start_email_change(
    mut req: Request,
    env: &Env,
    caller: Caller,
    id: UserId,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let body = http::read_json(&mut req, &[JSON]).await?;
    let path = format!("/internal/users/{id}/email");
    let answer = forward(env, &caller.actor(), Method::Post, &path, Some(&body)).await?;
    http::relay(202, &answer)
}

/// Completes an email change with the code; the new view is recorded like any other write.
pub async fn confirm_email_change(
    mut req: Request,
    env: &Env,
    caller: Caller,
    id: UserId,
    events: &Events,
) -> Result<Response, EdgeError> {
    let id = &id;
    authorize(&caller, id)?;
    let body = http::read_json(&mut req, &[JSON]).await?;
    let path = format!("/internal/users/{id}/email/confirm");
    let answer = forward(env, &caller.actor(), Method::Post, &path, Some(&body)).await?;
    let (view, facts) = user_view(&answer)?;
    let version = remember(env, &view, &facts).await?;
    let fields = vec!["email".to_owned()];
    events.record(EventKind::ProfileChange, Some(id.as_str()), None, &ProfileChangeData { version, fields });
    http::json(200, &view, Some(version))
}

pub async fn insights(
    env: &Env,
    caller: Caller,
    gate: GateAnswer,
    id: UserId,
) -> Result<Response, EdgeError> {
    let id = &id;
    authorize(&caller, id)?;
    let path = format!("/internal/users/{id}/insights");
    let answer = forward(env, &caller.actor(), Method::Get, &path, None).await?;
    let mut insights = http::origin_object(&answer)?;
    // The origin knows the account; the gate knows the traffic. API usage is the gate's exact
    // count of the user's current window (for their own insights; an admin's view of another
    // user asks that user's gate without counting).
    let limit = if caller.id == *id {
        gate.limit
    } else {
        GateClient::for_user(env, id.as_str())?.peek().await?.limit
    };
    let usage = Usage {
        api_requests: ApiRequests {
            used: limit.limit.map(|l| l.saturating_sub(limit.remaining)),
            limit: limit.limit,
            window_secs: limit.window_secs,
        },
    };
    insights.insert("usage".into(), http::to_origin(&usage)?);
    http::json(200, &Value::Object(insights), None)
}

/// Confirms the signup address with the code sent to it. The origin answers the new view,
/// which is recorded in the gate and KV like any write; the caller, who proved only that they
/// read the mailbox, is told no more than that the address is verified.
pub async fn verify_email(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let path = "/internal/auth/email/verify";
    let answer = forward(env, &Actor::Anonymous, Method::Post, path, Some(&body)).await?;
    let (view, facts) = user_view(&answer)?;
    remember(env, &view, &facts).await?;
    http::reply(200, &domain::wire::auth::EmailVerified { user_id: facts.id, email_verified: true })
}

/// Sends a new verification code to the account's address.
pub async fn resend_verification(env: &Env, caller: Caller, id: UserId) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let path = format!("/internal/users/{id}/email/verification");
    let answer = forward(env, &caller.actor(), Method::Post, &path, Some(&json!({}))).await?;
    http::relay(202, &answer)
}
