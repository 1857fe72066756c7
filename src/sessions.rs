//! Login, refresh, logout, the session list, and password change: everything that creates or
//! ends a session. Sessions live in the user's gate (see `gate::sessions`); the origin verifies
//! passwords and owns them.

use domain::identity::{Actor, UserId};
use domain::problem::ProblemKind;
use domain::wire::auth::{
    LoginAnswer, LoginVerified, MfaRequest, PasswordReset, PasswordResetDone, RefreshRequest, SteppedUp,
};
use domain::wire::event::EventKind;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response};

use crate::auth::{self, Caller};
use crate::events::Events;
use crate::gate::sessions::{user_of, NewSession, RefreshFailure};
use crate::gate::{GateClient, GateRecord};
use crate::http::{self, forward, JSON};
use crate::limits::client_ip;
use crate::problem::EdgeError;
use domain::wire::users::{AccountStatus, PasswordChanged, SessionList, StatusChanged};

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
    pub(crate) fn of(req: &Request, device_token: Option<String>) -> Result<Self, EdgeError> {
        Ok(Self {
            device_token: device_token.filter(|d| d.len() <= MAX_DEVICE_TOKEN),
            user_agent: req.headers().get("user-agent")?,
            ip: client_ip(req),
            country: req.cf().and_then(|cf| cf.country()),
        })
    }

    /// What the origin is told of the client.
    fn wire(&self) -> domain::wire::auth::ClientContext {
        domain::wire::auth::ClientContext {
            ip: Some(self.ip.clone()),
            country: self.country.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// Opens a session for a login the origin accepted (its answer: id, tier, role, version,
/// session timeout, organization) and answers the token pair.
pub(crate) async fn open_session(
    env: &Env,
    client: &ClientContext,
    verified: &LoginVerified,
    events: &Events,
    kind: EventKind,
) -> Result<Response, EdgeError> {
    let user_id = verified.user_id.clone();
    let tier = verified.tier;
    let timeout = verified.session_timeout_minutes;
    // The session lists the device by the id inside its token (`dt1.<id>.<mac>`).
    let device_id = verified.device_token.as_deref().and_then(|t| t.split('.').nth(1)).map(str::to_owned);
    let gate = GateClient::for_user(env, &user_id)?;
    // The member's organization, as the origin answered the login: the gate records it with
    // the session, and the token names it.
    let org = verified.org.clone();
    // The gate learns the tier the origin holds, so the edge enforces it from now on.
    let idle_timeout_minutes = Some(u32::try_from(timeout).unwrap_or(u32::MAX));
    let created = gate
        .create_session(&NewSession {
            record: Some(GateRecord { profile_version: verified.version, tier, idle_timeout_minutes }),
            user_id: user_id.clone(),
            role: verified.role.as_str().to_owned(),
            tier,
            idle_timeout_minutes: u32::try_from(timeout).unwrap_or(u32::MAX),
            absolute_ms: verified.session_absolute_ms,
            device_id,
            user_agent: client.user_agent.clone(),
            ip: Some(client.ip.clone()),
            // A password alone opens a `login_success`; an MFA completion or a passkey (with
            // user verification) signs in with a second factor.
            second_factor: kind != EventKind::LoginSuccess,
            org: org.clone(),
            org_at: verified.org_at,
        })
        .await?;
    let risk = verified.risk.as_ref().map(|r| r.score);
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
    let effective = domain::org::effective_tier(tier, org.as_ref().map(|g| g.tier));
    http::reply(200, &LoginAnswer::new(created.pair, verified, effective))
}

pub async fn login(req: Request, env: &Env, events: &Events) -> Result<Response, EdgeError> {
    forward_login(req, env, events, "/internal/auth/verify", login_refused, EventKind::LoginSuccess).await
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

/// A sign-in (password or passkey): the body's credentials and the client's context go to the
/// origin at `path` (`domain::wire::auth::SignIn`: the credentials as the client sent them,
/// which the origin reads and names what is wrong with), what it accepts opens a session
/// ([`open_session`], event `success`), what it refuses is counted as `refused` says.
pub(crate) async fn forward_login(
    mut req: Request,
    env: &Env,
    events: &Events,
    path: &str,
    refused: fn(&EdgeError) -> Option<(EventKind, Value)>,
    success: EventKind,
) -> Result<Response, EdgeError> {
    let mut body = http::read_json(&mut req, &[JSON]).await?;
    let Some(object) = body.as_object_mut() else {
        return Err(EdgeError::new(ProblemKind::BadRequest, "the body must be a JSON object"));
    };
    let device_token = match object.remove("device_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token),
        Some(_) => {
            return Err(EdgeError::new(
                ProblemKind::BadRequest,
                "invalid body at `device_token`: expected a string",
            ))
        }
    };
    let client = ClientContext::of(&req, device_token)?;
    if let Some(token) = &client.device_token {
        object.insert("device_token".into(), Value::String(token.clone()));
    }
    object.insert("context".into(), http::to_origin(&client.wire())?);
    verify_and_open(env, events, path, &body, &client, refused, success).await
}

/// The part of [`forward_login`] that does not depend on the credentials' type, compiled once
/// (the wasm's size): the origin verifies `forwarded`, and what it accepts opens a session.
async fn verify_and_open(
    env: &Env,
    events: &Events,
    path: &str,
    forwarded: &Value,
    client: &ClientContext,
    refused: fn(&EdgeError) -> Option<(EventKind, Value)>,
    success: EventKind,
) -> Result<Response, EdgeError> {
    let answer = match forward(env, &Actor::Anonymous, Method::Post, path, Some(forwarded)).await {
        Ok(answer) => answer,
        Err(e) => {
            if let Some((kind, data)) = refused(&e) {
                events.push(kind, None, None, data);
            }
            return Err(e);
        }
    };
    open_session(env, client, &http::origin_as(&answer)?, events, success).await
}

/// Completes an MFA challenge (`{challenge_id, method, code}`) and opens the session.
pub async fn complete_mfa(mut req: Request, env: &Env, events: &Events) -> Result<Response, EdgeError> {
    let body: MfaRequest = http::read_body(&mut req, &[JSON]).await?;
    let client = ClientContext::of(&req, None)?;
    let method = body.method;
    let forwarded = http::to_origin(&body)?;
    let answer =
        match forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/mfa", Some(&forwarded)).await {
            Ok(answer) => answer,
            Err(e) => {
                events.push(EventKind::MfaFailure, None, None, json!({ "method": method }));
                return Err(e);
            }
        };
    open_session(env, &client, &http::origin_as(&answer)?, events, EventKind::MfaSuccess).await
}

/// Asks for a one-time code by email or SMS for a challenge.
pub async fn send_code(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/mfa/send", Some(&body)).await?;
    http::relay(202, &answer)
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
    let actor = caller.actor();
    let base = format!("/internal/users/{id}");
    match op {
        SecurityOp::EnrolTotp => {
            let body = http::read_json(&mut req, &[JSON]).await?;
            let answer = forward(env, &actor, Method::Post, &format!("{base}/mfa/totp"), Some(&body)).await?;
            http::relay(201, &answer)
        }
        SecurityOp::ConfirmTotp => {
            let body = http::read_json(&mut req, &[JSON]).await?;
            let path = format!("{base}/mfa/totp/confirm");
            let answer = forward(env, &actor, Method::Post, &path, Some(&body)).await?;
            http::relay(200, &answer)
        }
        SecurityOp::EnrolSms => {
            let body = http::read_json(&mut req, &[JSON]).await?;
            let answer = forward(env, &actor, Method::Post, &format!("{base}/mfa/sms"), Some(&body)).await?;
            http::relay(202, &answer)
        }
        SecurityOp::ConfirmSms => {
            let body = http::read_json(&mut req, &[JSON]).await?;
            let path = format!("{base}/mfa/sms/confirm");
            let answer = forward(env, &actor, Method::Post, &path, Some(&body)).await?;
            http::relay(200, &answer)
        }
        SecurityOp::RemoveTotp | SecurityOp::RemoveSms => {
            let factor = if matches!(op, SecurityOp::RemoveTotp) { "totp" } else { "sms" };
            // The proof (a password, a code) is the auth area's `Proof`, passed on as it came;
            // the session's recent step-up is added to it as one more.
            let mut body = http::read_json(&mut req, &[JSON]).await?;
            http::vouch_step_up(&mut body, stepped_up_at);
            forward(env, &actor, Method::Delete, &format!("{base}/mfa/{factor}"), Some(&body)).await?;
            Ok(Response::empty()?.with_status(204))
        }
        SecurityOp::Events => {
            let answer = forward(env, &actor, Method::Get, &format!("{base}/security-events"), None).await?;
            http::relay(200, &answer)
        }
        SecurityOp::Audit => {
            let answer = forward(env, &actor, Method::Get, &format!("{base}/audit"), None).await?;
            http::relay(200, &answer)
        }
    }
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
        return http::relay(202, &answer);
    }
    if !GateClient::for_user(env, caller.id.as_str())?.step_up(&sid).await? {
        return Err(EdgeError::new(ProblemKind::Unauthenticated, "the session ended"));
    }
    let valid_for_secs = domain::security::STEP_UP_MAX_AGE_MS / 1000;
    http::reply(200, &SteppedUp { stepped_up: true, valid_for_secs })
}

pub async fn refresh(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body: RefreshRequest = http::read_body(&mut req, &[JSON]).await?;
    let token = body.refresh_token.as_str();
    let refused = |detail: &str| EdgeError::new(ProblemKind::Unauthenticated, detail.to_owned());
    let Some((user_id, _)) = user_of(token) else {
        return Err(refused("the refresh token is malformed"));
    };
    let user_id: UserId = user_id.parse().map_err(|_| refused("the refresh token is malformed"))?;
    match GateClient::for_user(env, user_id.as_str())?.refresh(user_id.as_str(), token).await? {
        Ok(pair) => http::reply(200, &pair),
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
    let mut sessions = GateClient::for_user(env, id.as_str())?.sessions().await?;
    for session in &mut sessions {
        session.current = caller.sid.as_deref() == Some(session.id.as_str());
    }
    http::reply(200, &SessionList { sessions })
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
    http::reply(200, &PasswordChanged { sessions_ended: u32::try_from(ended).unwrap_or(u32::MAX) })
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
    let request = AccountStatus { disabled };
    let answer =
        forward(env, &caller.actor(), Method::Post, &path, Some(&http::to_origin(&request)?)).await?;
    let mut changed: StatusChanged = http::origin_as(&answer)?;
    if disabled {
        let ended = GateClient::for_user(env, id.as_str())?.revoke(None, None, "account disabled").await?;
        changed.sessions_ended = Some(u32::try_from(ended).unwrap_or(u32::MAX));
    }
    http::reply(200, &changed)
}

/// Activates a provisioned account: its activation token and a first password.
pub async fn activate(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/activate", Some(&body)).await?;
    http::relay(200, &answer)
}

/// Asks for a password-reset code by email. The origin answers 202 whatever the address.
pub async fn forgot_password(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let path = "/internal/auth/password/forgot";
    let answer = forward(env, &Actor::Anonymous, Method::Post, path, Some(&body)).await?;
    http::relay(202, &answer)
}

/// Sets a new password with a reset code, then ends every session of the account in its gate
/// (the origin has ended its pending challenges and cleared its softlock).
pub async fn reset_password(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let path = "/internal/auth/password/reset";
    let answer = forward(env, &Actor::Anonymous, Method::Post, path, Some(&body)).await?;
    let done: PasswordResetDone = http::origin_as(&answer)?;
    let ended = GateClient::for_user(env, &done.user_id)?.revoke(None, None, "password reset").await?;
    http::reply(200, &PasswordReset { reset: true, sessions_ended: u64::try_from(ended).unwrap_or(u64::MAX) })
}
