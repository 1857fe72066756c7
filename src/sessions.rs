//! Login, refresh, logout, the session list, and password change: everything that creates or
//! ends a session. Sessions live in the user's gate (see `gate::sessions`); the origin verifies
//! passwords and owns them.

use domain::identity::{Actor, UserId};
use domain::problem::ProblemKind;
use domain::tier::Tier;
use domain::wire::event::EventKind;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response};

use crate::auth::{self, Caller};
use crate::events::Events;
use crate::gate::sessions::{user_of, NewSession, RefreshFailure};
use crate::gate::{GateClient, GateRecord};
use crate::http::{self, forward, origin_json, JSON};
use crate::limits::client_ip;
use crate::problem::EdgeError;

/// The longest device token the edge forwards (the origin's are 101 characters).
const MAX_DEVICE_TOKEN: usize = 256;

pub(crate) fn authorize(caller: &Caller, target: &UserId) -> Result<(), EdgeError> {
    if caller.actor().may_act_on(target) {
        Ok(())
    } else {
        Err(EdgeError::new(ProblemKind::Forbidden, "you may only act on your own account"))
    }
}

/// What the edge saw of a login request: who, from where. The device is known only through
/// a device token the origin issued at an earlier login (a client-chosen id proves nothing).
pub(crate) struct ClientContext {
    pub(crate) device_token: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) ip: String,
    pub(crate) country: Option<String>,
}

impl ClientContext {
    pub(crate) fn of(req: &Request, body: &Value) -> Result<Self, EdgeError> {
        Ok(Self {
            device_token: body
                .get("device_token")
                .and_then(Value::as_str)
                .filter(|d| d.len() <= MAX_DEVICE_TOKEN)
                .map(str::to_owned),
            user_agent: req.headers().get("user-agent")?,
            ip: client_ip(req),
            country: req.cf().and_then(|cf| cf.country()),
        })
    }
}

/// Opens a session for a login the origin accepted (its answer: id, tier, role, version,
/// session timeout) and answers the token pair.
pub(crate) async fn open_session(
    env: &Env,
    client: &ClientContext,
    verified: &Value,
    status: u16,
    events: &Events,
    kind: EventKind,
) -> Result<Response, EdgeError> {
    let text = |name: &str| verified.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(user_id), Some(tier), Some(role), Some(version)) = (
        text("user_id"),
        text("tier").and_then(|t| t.parse::<Tier>().ok()),
        text("role"),
        verified.get("version").and_then(Value::as_u64),
    ) else {
        return Err(EdgeError::OriginFailed { status });
    };
    let timeout = verified.get("session_timeout_minutes").and_then(Value::as_u64).unwrap_or(1440);
    let absolute_ms = verified.get("session_absolute_ms").and_then(Value::as_u64);
    let device_token = text("device_token");
    // The session lists the device by the id inside its token (`dt1.<id>.<mac>`).
    let device_id = device_token.as_deref().and_then(|t| t.split('.').nth(1)).map(str::to_owned);
    let gate = GateClient::for_user(env, &user_id)?;
    // The member's organization, as the origin answered the login: the gate records it with
    // the session, and the token names it.
    let org: Option<domain::org::OrgGrant> =
        verified.get("org").cloned().and_then(|g| serde_json::from_value(g).ok());
    let org_at = verified.get("org_at").and_then(Value::as_u64);
    // The gate learns the tier the origin holds, so the edge enforces it from now on.
    let idle_timeout_minutes = Some(u32::try_from(timeout).unwrap_or(u32::MAX));
    let created = gate
        .create_session(&NewSession {
            record: Some(GateRecord { profile_version: version, tier, idle_timeout_minutes }),
            user_id: user_id.clone(),
            role: role.clone(),
            tier,
            idle_timeout_minutes: u32::try_from(timeout).unwrap_or(u32::MAX),
            absolute_ms,
            device_id,
            user_agent: client.user_agent.clone(),
            ip: Some(client.ip.clone()),
            // A password alone opens a `login_success`; an MFA completion or a passkey (with
            // user verification) signs in with a second factor.
            second_factor: kind != EventKind::LoginSuccess,
            org: org.clone(),
            org_at,
        })
        .await?;
    let risk = verified.get("risk").and_then(|r| r.get("score")).cloned().unwrap_or(Value::Null);
    // A withdrawn `analytics` consent: the login is not a usage event either (the origin keeps
    // its own login history and security events).
    if created.collects_events {
        events.push(kind, Some(&user_id), None, json!({ "risk_score": risk, "tier": tier }));
    }
    // The origin records each as a security event the user can read.
    for sid in &created.evicted {
        events.push(
            EventKind::SessionEvicted,
            Some(&user_id),
            None,
            json!({ "session_id": sid, "reason": "session limit" }),
        );
    }
    let mut answer = serde_json::to_value(&created.pair)?;
    if let Some(o) = answer.as_object_mut() {
        o.insert("user_id".into(), json!(user_id));
        o.insert("tier".into(), json!(domain::org::effective_tier(tier, org.as_ref().map(|g| g.tier))));
        if let Some(grant) = &org {
            o.insert("org".into(), json!({ "id": grant.org, "role": grant.role }));
        }
        o.insert("role".into(), json!(role));
        if let Some(token) = device_token {
            o.insert("device_token".into(), json!(token));
        }
        if let Some(risk) = verified.get("risk") {
            o.insert("risk".into(), risk.clone());
        }
    }
    http::json(200, &answer, None)
}

pub async fn login(req: Request, env: &Env, events: &Events) -> Result<Response, EdgeError> {
    forward_login(
        req,
        env,
        events,
        "/internal/auth/verify",
        &["email", "password"],
        login_refused,
        EventKind::LoginSuccess,
    )
    .await
}

/// What a refused password login counts as. Refusals carry no user id: the origin keeps
/// per-account failures in its own security events; this counts them for the business.
fn login_refused(error: &EdgeError) -> Option<(EventKind, Value)> {
    let EdgeError::Problem(problem) = error else { return None };
    let kind = if problem.extensions.contains_key("challenge_id") {
        EventKind::LoginMfaRequired
    } else {
        EventKind::LoginFailure
    };
    Some((kind, json!({ "status": problem.status })))
}

/// A sign-in (password or passkey): the body's `fields` and the client's context go to the
/// origin at `path`; what it accepts opens a session ([`open_session`], event `success`), what
/// it refuses is counted as `refused` says.
pub(crate) async fn forward_login(
    mut req: Request,
    env: &Env,
    events: &Events,
    path: &str,
    fields: &[&str],
    refused: fn(&EdgeError) -> Option<(EventKind, Value)>,
    success: EventKind,
) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let client = ClientContext::of(&req, &body)?;
    let mut forwarded = serde_json::Map::new();
    for field in fields {
        forwarded.insert((*field).to_owned(), body.get(*field).cloned().unwrap_or(Value::Null));
    }
    forwarded.insert("device_token".into(), json!(client.device_token));
    forwarded.insert(
        "context".into(),
        json!({ "ip": client.ip, "country": client.country, "user_agent": client.user_agent }),
    );
    let answer =
        match forward(env, &Actor::Anonymous, Method::Post, path, Some(&Value::Object(forwarded))).await {
            Ok(answer) => answer,
            Err(e) => {
                if let Some((kind, data)) = refused(&e) {
                    events.push(kind, None, None, data);
                }
                return Err(e);
            }
        };
    open_session(env, &client, &origin_json(&answer)?, answer.status, events, success).await
}

/// Completes an MFA challenge (`{challenge_id, method, code}`) and opens the session.
pub async fn complete_mfa(mut req: Request, env: &Env, events: &Events) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let client = ClientContext::of(&req, &body)?;
    let method = body.get("method").cloned().unwrap_or(Value::Null);
    let answer = match forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/mfa", Some(&body)).await
    {
        Ok(answer) => answer,
        Err(e) => {
            events.push(EventKind::MfaFailure, None, None, json!({ "method": method }));
            return Err(e);
        }
    };
    open_session(env, &client, &origin_json(&answer)?, answer.status, events, EventKind::MfaSuccess).await
}

/// Asks for a one-time code by email for a challenge.
pub async fn send_code(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/mfa/send", Some(&body)).await?;
    http::json(202, &origin_json(&answer)?, None)
}

/// TOTP enrolment, confirmation and removal, and the security events: forwarded as the caller.
pub async fn account_security(
    mut req: Request,
    env: &Env,
    caller: Caller,
    id: UserId,
    op: SecurityOp,
    stepped_up_at: Option<u64>,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let (method, path, status) = match op {
        SecurityOp::EnrolTotp => (Method::Post, format!("/internal/users/{id}/mfa/totp"), 201),
        SecurityOp::ConfirmTotp => (Method::Post, format!("/internal/users/{id}/mfa/totp/confirm"), 200),
        SecurityOp::RemoveTotp => (Method::Delete, format!("/internal/users/{id}/mfa/totp"), 204),
        SecurityOp::EnrolSms => (Method::Post, format!("/internal/users/{id}/mfa/sms"), 202),
        SecurityOp::ConfirmSms => (Method::Post, format!("/internal/users/{id}/mfa/sms/confirm"), 200),
        SecurityOp::RemoveSms => (Method::Delete, format!("/internal/users/{id}/mfa/sms"), 204),
        SecurityOp::Events => (Method::Get, format!("/internal/users/{id}/security-events"), 200),
        SecurityOp::Audit => (Method::Get, format!("/internal/users/{id}/audit"), 200),
    };
    let mut body = if method == Method::Get { None } else { Some(http::read_json(&mut req, &[JSON]).await?) };
    // Removing a factor accepts the session's recent step-up as its proof.
    if matches!(op, SecurityOp::RemoveTotp | SecurityOp::RemoveSms) {
        if let (Some(Value::Object(o)), Some(at)) = (body.as_mut(), stepped_up_at) {
            o.insert("step_up_at".into(), json!(at));
        }
    }
    let answer = forward(env, &caller.actor(), method, &path, body.as_ref()).await?;
    if status == 204 {
        return Ok(Response::empty()?.with_status(204));
    }
    http::json(status, &origin_json(&answer)?, None)
}

#[derive(Debug, Clone, Copy)]
pub enum SecurityOp {
    EnrolTotp,
    ConfirmTotp,
    RemoveTotp,
    EnrolSms,
    ConfirmSms,
    RemoveSms,
    Events,
    Audit,
}

/// A step-up: the caller proves again who they are (current password, and a code from their
/// second factor when one is enrolled); the session may then make sensitive changes for five
/// minutes. With `method: "sms"` and no code, the origin texts one first (202).
pub async fn step_up(mut req: Request, env: &Env, caller: Caller) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let Some(sid) = caller.sid.clone() else {
        return Err(EdgeError::new(ProblemKind::Unauthenticated, "a step-up needs a session"));
    };
    let path = format!("/internal/users/{}/step-up", caller.id);
    let answer = forward(env, &caller.actor(), Method::Post, &path, Some(&body)).await?;
    if answer.status == 202 {
        return http::json(202, &origin_json(&answer)?, None);
    }
    if !GateClient::for_user(env, caller.id.as_str())?.step_up(&sid).await? {
        return Err(EdgeError::new(ProblemKind::Unauthenticated, "the session ended"));
    }
    let valid_for = domain::security::STEP_UP_MAX_AGE_MS / 1000;
    http::json(200, &json!({ "stepped_up": true, "valid_for_secs": valid_for }), None)
}

pub async fn refresh(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let token = body.get("refresh_token").and_then(Value::as_str).unwrap_or_default();
    let refused = |detail: &str| EdgeError::new(ProblemKind::Unauthenticated, detail.to_owned());
    let Some((user_id, _)) = user_of(token) else {
        return Err(refused("the refresh token is malformed"));
    };
    let user_id: UserId = user_id.parse().map_err(|_| refused("the refresh token is malformed"))?;
    match GateClient::for_user(env, user_id.as_str())?.refresh(user_id.as_str(), token).await? {
        Ok(pair) => http::json(200, &serde_json::to_value(&pair)?, None),
        Err(RefreshFailure::Unknown) => Err(refused("the refresh token is not valid")),
        Err(RefreshFailure::Reused) => Err(refused(
            "the refresh token was already used; the session has been ended to protect the account",
        )),
        Err(RefreshFailure::Inactive(reason)) => Err(refused(&reason)),
    }
}

pub async fn logout(env: &Env, caller: Caller) -> Result<Response, EdgeError> {
    if let Some(sid) = &caller.sid {
        GateClient::for_user(env, caller.id.as_str())?.revoke(Some(sid), None, "logout").await?;
    }
    Ok(Response::empty()?.with_status(204))
}

pub async fn list(env: &Env, caller: Caller, id: UserId) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let sessions = GateClient::for_user(env, id.as_str())?.sessions().await?;
    let current = caller.sid.clone();
    let listed: Vec<Value> = sessions
        .into_iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("current".into(), json!(current.as_deref() == Some(s.id.as_str())));
            }
            v
        })
        .collect();
    http::json(200, &json!({ "sessions": listed }), None)
}

pub async fn delete(env: &Env, caller: Caller, id: UserId, sid: String) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    if GateClient::for_user(env, id.as_str())?.revoke(Some(&sid), None, "deleted").await? == 0 {
        return Err(EdgeError::new(ProblemKind::NotFound, format!("no active session {sid}")));
    }
    Ok(Response::empty()?.with_status(204))
}

/// Changes the password (the current one is the recent authentication it requires), then
/// ends every other session of the account at once.
pub async fn change_password(
    mut req: Request,
    env: &Env,
    caller: Caller,
    id: UserId,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let body = http::read_json(&mut req, &[JSON]).await?;
    let path = format!("/internal/users/{id}/password");
    forward(env, &caller.actor(), Method::Post, &path, Some(&body)).await?;
    // The caller's own session survives only when they change their own password.
    let keep = if caller.id == id { caller.sid.as_deref() } else { None };
    let ended = GateClient::for_user(env, id.as_str())?.revoke(None, keep, "password changed").await?;
    http::json(200, &json!({ "sessions_ended": ended }), None)
}

/// The access token's claims for its holder, as validated when the request was admitted (kept
/// here with the other token endpoints' helpers for discoverability).
pub fn introspect(caller: &auth::Caller) -> Result<Response, EdgeError> {
    http::json(200, &serde_json::to_value(&caller.claims)?, None)
}

/// Disables (or re-enables) an account, admins only: the origin refuses its logins from now
/// on, and every session of it ends at once.
pub async fn set_disabled(
    env: &Env,
    caller: Caller,
    id: UserId,
    disabled: bool,
) -> Result<Response, EdgeError> {
    if !caller.actor().is_admin() {
        return Err(EdgeError::new(ProblemKind::Forbidden, "only an admin can disable or enable an account"));
    }
    let path = format!("/internal/users/{id}/status");
    let answer =
        forward(env, &caller.actor(), Method::Post, &path, Some(&json!({ "disabled": disabled }))).await?;
    let mut body = origin_json(&answer)?;
    if disabled {
        let ended = GateClient::for_user(env, id.as_str())?.revoke(None, None, "account disabled").await?;
        if let Some(o) = body.as_object_mut() {
            o.insert("sessions_ended".into(), json!(ended));
        }
    }
    http::json(200, &body, None)
}

/// Activates a provisioned account: its activation token and a first password.
pub async fn activate(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/activate", Some(&body)).await?;
    http::json(200, &origin_json(&answer)?, None)
}

/// Asks for a password-reset code by email. The origin answers 202 whatever the address.
pub async fn forgot_password(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/password/forgot", Some(&body)).await?;
    http::json(202, &origin_json(&answer)?, None)
}

/// Sets a new password with a reset code, then ends every session of the account in its gate
/// (the origin has ended its pending challenges and cleared its softlock).
pub async fn reset_password(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/password/reset", Some(&body)).await?;
    let done = origin_json(&answer)?;
    let id = done
        .get("user_id")
        .and_then(Value::as_str)
        .ok_or_else(|| EdgeError::new(ProblemKind::Internal, "the origin's reset answer names no user"))?;
    let ended = GateClient::for_user(env, id)?.revoke(None, None, "password reset").await?;
    http::json(200, &json!({ "reset": true, "sessions_ended": ended }), None)
}
