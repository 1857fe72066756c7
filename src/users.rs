//! The account endpoints: signup, profile read and update, tier change, insights, login.
//! Each handler authenticates, authorises, makes one origin call or cache read, and records
//! what the origin acknowledged in the user's gate and in KV before answering.

use domain::identity::{Actor, UserId};
use domain::problem::ProblemKind;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response};

use domain::tier::Tier;
use domain::wire::event::{EventKind, ProfileChangeData};

use crate::auth::Caller;
use crate::events::Events;
use crate::gate::{GateAnswer, GateClient, GateRecord};
use crate::http::{self, forward, origin_json, JSON, MERGE_PATCH_JSON};
use crate::problem::EdgeError;
use crate::profile_cache::{self, CachedProfile};

/// Which source answered a profile read; tests and operators read it from `x-profile-source`.
const SOURCE_HEADER: &str = "x-profile-source";

fn authorize(caller: &Caller, target: &UserId) -> Result<(), EdgeError> {
    if caller.actor().may_act_on(target) {
        Ok(())
    } else {
        Err(EdgeError::new(ProblemKind::Forbidden, "you may only act on your own account"))
    }
}

/// The id, version and tier of a user view the origin returned.
fn view_keys(view: &Value) -> Result<(String, u64, Tier), EdgeError> {
    let id = view.get("id").and_then(Value::as_str);
    let version = view.get("version").and_then(Value::as_u64);
    let tier = view.get("tier").and_then(Value::as_str).and_then(|t| t.parse::<Tier>().ok());
    match (id, version, tier) {
        (Some(id), Some(version), Some(tier)) => Ok((id.to_owned(), version, tier)),
        _ => Err(EdgeError::OriginFailed { status: 200 }),
    }
}

/// Records an acknowledged state of the profile: first in the gate (strongly consistent, so
/// the next read knows which version it must at least return), then in KV (the cache).
async fn remember(env: &Env, view: &Value) -> Result<u64, EdgeError> {
    let (id, version, tier) = view_keys(view)?;
    let idle_timeout_minutes = view
        .pointer("/security_settings/session_timeout_minutes")
        .and_then(Value::as_u64)
        .and_then(|m| u32::try_from(m).ok());
    let record = GateRecord { profile_version: version, tier, idle_timeout_minutes };
    GateClient::for_user(env, &id)?.record(&record).await?;
    profile_cache::put(env, &id, &CachedProfile { version, profile: view.clone() }).await?;
    Ok(version)
}

/// Forwards a write (a POST with the caller's JSON body) and records the view the origin
/// answers, as [`remember`] does.
async fn post_write(
    req: &mut Request,
    env: &Env,
    caller: &Caller,
    path: &str,
) -> Result<(Value, u64), EdgeError> {
    let body = http::read_json(req, &[JSON]).await?;
    let answer = forward(env, &caller.actor(), Method::Post, path, Some(&body)).await?;
    let view = origin_json(&answer)?;
    let version = remember(env, &view).await?;
    Ok((view, version))
}

pub async fn create(mut req: Request, env: &Env, caller: Option<Caller>) -> Result<Response, EdgeError> {
    let actor = caller.map_or(Actor::Anonymous, |c| c.actor());
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer = forward(env, &actor, Method::Post, "/internal/users", Some(&body)).await?;
    let view = origin_json(&answer)?;
    // A child's signup waits for a parent's consent: nothing to cache, no session to open.
    if answer.status == 202 {
        return http::json(202, &view, None);
    }
    let version = remember(env, &view).await?;
    let mut response = http::json(201, &view, Some(version))?;
    if let Some(id) = view.get("id").and_then(Value::as_str) {
        response.headers_mut().set("location", &format!("/api/v1/users/{id}"))?;
    }
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
    let view = origin_json(&answer)?;
    let version = remember(env, &view).await?;
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
    let body = json!({ "patch": patch, "if_match": if_match, "step_up_at": stepped_up_at });
    let answer =
        forward(env, &caller.actor(), Method::Patch, &format!("/internal/users/{id}"), Some(&body)).await?;
    let view = origin_json(&answer)?;
    let version = remember(env, &view).await?;
    // Which fields changed, never their values: events carry no personal data.
    let fields: Vec<String> = patch.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
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
    let view = origin_json(&answer)?;
    let (_, version, _) = view_keys(&view)?;
    // The origin answers a change to the tier the account already has with its current view,
    // unchanged. A version the gate has already acknowledged means exactly that: nothing was
    // written, so nothing is recorded (gate, KV) and no tier-change event is sent.
    let acknowledged = if caller.id == *id {
        gate.profile_version
    } else {
        GateClient::for_user(env, id.as_str())?.peek().await?.profile_version
    };
    if acknowledged.is_some_and(|known| version <= known) {
        return http::json(200, &view, Some(version));
    }
    // What a downgrade disabled is said once, here, and not cached as part of the profile.
    let mut view = view;
    let disabled = view.as_object_mut().and_then(|o| o.remove("integrations_disabled"));
    let version = remember(env, &view).await?;
    if let (Some(d), Some(o)) = (disabled, view.as_object_mut()) {
        o.insert("integrations_disabled".into(), d);
    }
    events.push(
        EventKind::TierChange,
        Some(id.as_str()),
        None,
        json!({ "tier": view.get("tier"), "by": caller.actor().to_string() }),
    );
    http::json(200, &view, Some(version))
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
    http::json(202, &origin_json(&answer)?, None)
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
    let path = format!("/internal/users/{id}/email/confirm");
    let (view, version) = post_write(&mut req, env, &caller, &path).await?;
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
    let mut insights = origin_json(&answer)?;
    // The origin knows the account; the gate knows the traffic. API usage is the gate's exact
    // count of the user's current window (for their own insights; an admin's view of another
    // user asks that user's gate without counting).
    let limit = if caller.id == *id {
        gate.limit
    } else {
        GateClient::for_user(env, id.as_str())?.peek().await?.limit
    };
    if let Some(object) = insights.as_object_mut() {
        object.insert(
            "usage".into(),
            json!({ "api_requests": {
                "used": limit.limit.map(|l| l.saturating_sub(limit.remaining)),
                "limit": limit.limit,
                "window_secs": limit.window_secs,
            }}),
        );
    }
    http::json(200, &insights, None)
}

/// Confirms the signup address with the code sent to it. The origin answers the new view,
/// which is recorded in the gate and KV like any write; the caller, who proved only that they
/// read the mailbox, is told no more than that the address is verified.
pub async fn verify_email(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/email/verify", Some(&body)).await?;
    let view = origin_json(&answer)?;
    remember(env, &view).await?;
    let id = view.get("id").cloned().unwrap_or(Value::Null);
    http::json(200, &json!({ "user_id": id, "email_verified": true }), None)
}

/// Sends a new verification code to the account's address.
pub async fn resend_verification(env: &Env, caller: Caller, id: UserId) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let path = format!("/internal/users/{id}/email/verification");
    let answer = forward(env, &caller.actor(), Method::Post, &path, Some(&json!({}))).await?;
    http::json(202, &origin_json(&answer)?, None)
}
