//! The integration hub at the edge (issue 15). The catalogue and its tier rules are answered
//! here from `domain::integrations` (no origin call); the tier rule is also applied here to a
//! connection request, with the tier the gate enforces, before the origin (which decides
//! again) is asked. Everything else is forwarded as the caller; the provider's redirect to the
//! callback is forwarded anonymously, with the browser binding from the `__Host-` cookie the
//! authorize answer set (so a state only works in the browser that asked for it).

use domain::identity::{Actor, UserId};
use domain::integrations::{self, Service, CATALOGUE};
use domain::problem::{Problem, ProblemKind};
use domain::tier::Tier;
use domain::wire::integrations::{
    CallbackRequest, CatalogueEntry, ConnectAnswer, IntegrationCatalogue, TierGrant,
};
use worker::{Env, Method, Request, Response};

use crate::auth::Caller;
use crate::http::{self, forward};
use crate::problem::EdgeError;

/// The cookie binding an authorisation to the browser that started it.
const BINDING_COOKIE: &str = "__Host-um-integration";

/// An operation of the hub.
pub enum Op {
    Catalogue,
    List(UserId),
    Connect(UserId, &'static Service),
    Disconnect(UserId, &'static Service),
    Callback(&'static Service),
}

fn service(raw: &str) -> Result<&'static Service, EdgeError> {
    integrations::find(raw)
        .ok_or_else(|| EdgeError::new(ProblemKind::NotFound, format!("no integration {raw}")))
}

/// The hub's routes: `segments` is the path after the leading `/`. `None` when the path is
/// not one of them.
pub fn route(
    method: &Method,
    segments: &[&str],
    only: impl Fn(&[Method]) -> Result<(), EdgeError>,
    user_id: impl Fn(&str) -> Result<UserId, EdgeError>,
) -> Option<Result<Op, EdgeError>> {
    Some(match segments {
        ["api", "v1", "integrations"] => only(&[Method::Get]).map(|()| Op::Catalogue),
        ["api", "v1", "integrations", svc, "callback"] => {
            only(&[Method::Get]).and_then(|()| service(svc)).map(Op::Callback)
        }
        ["api", "v1", "users", id, "integrations"] => {
            only(&[Method::Get]).and_then(|()| user_id(id)).map(Op::List)
        }
        ["api", "v1", "users", id, "integrations", svc] => {
            only(&[Method::Post, Method::Delete]).and_then(|()| Ok((user_id(id)?, service(svc)?))).map(
                |(id, svc)| {
                    if *method == Method::Post {
                        Op::Connect(id, svc)
                    } else {
                        Op::Disconnect(id, svc)
                    }
                },
            )
        }
        _ => return None,
    })
}

fn authorize(caller: &Caller, target: &UserId) -> Result<(), EdgeError> {
    if caller.actor().may_act_on(target) {
        Ok(())
    } else {
        Err(EdgeError::new(ProblemKind::Forbidden, "you may only act on your own account"))
    }
}

/// The catalogue: every service with the tiers that may connect it, and the caller's grant.
pub fn catalogue(tier: Tier) -> Result<Response, EdgeError> {
    let owned = |scopes: &[&str]| scopes.iter().map(|s| (*s).to_owned()).collect();
    let list: Vec<CatalogueEntry> = CATALOGUE
        .iter()
        .map(|s| CatalogueEntry {
            service: s.id.to_owned(),
            name: s.name.to_owned(),
            category: s.category,
            auth: s.auth,
            tiers: integrations::tiers_for(s)
                .into_iter()
                .map(|(tier, grant)| TierGrant { tier, grant, scopes: owned(grant.scopes(s)) })
                .collect(),
            yours: integrations::grant(tier, s),
        })
        .collect();
    http::reply(200, &IntegrationCatalogue { count: list.len(), integrations: list })
}

/// The caller's connected services, as the origin lists them.
pub async fn list(env: &Env, caller: Caller, id: UserId) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let answer =
        forward(env, &caller.actor(), Method::Get, &format!("/internal/users/{id}/integrations"), None)
            .await?;
    http::relay(200, &answer)
}

/// Starts a connection. The tier rule is checked against the gate's tier first; the origin's
/// answer's browser binding becomes a `__Host-` cookie (10 minutes) and leaves the body.
pub async fn connect(
    env: &Env,
    caller: Caller,
    tier: Tier,
    id: UserId,
    svc: &'static Service,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    if caller.id == id {
        if let Err(r) = integrations::may_connect(tier, svc) {
            return Err(EdgeError::Problem(
                Problem::new(ProblemKind::Forbidden, r.detail)
                    .with("rule", r.rule)
                    .with("tier", r.tier.as_str())
                    .with("service", r.service)
                    .with("allowed", r.allowed),
            ));
        }
    }
    let path = format!("/internal/users/{id}/integrations/{}", svc.id);
    let answer = forward(env, &caller.actor(), Method::Post, &path, None).await?;
    let mut body: ConnectAnswer = http::origin_as(&answer)?;
    let binding = match &mut body {
        ConnectAnswer::Authorize(a) => a.binding.take(),
        ConnectAnswer::Key(_) => None,
    };
    let mut response = http::reply(answer.status, &body)?;
    if let Some(b) = binding {
        response.headers_mut().set(
            "set-cookie",
            &format!("{BINDING_COOKIE}={b}; Path=/; Max-Age=600; Secure; HttpOnly; SameSite=Lax"),
        )?;
    }
    Ok(response)
}

/// Disconnects: the origin revokes at the provider and deletes the tokens.
pub async fn disconnect(
    env: &Env,
    caller: Caller,
    id: UserId,
    svc: &'static Service,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let path = format!("/internal/users/{id}/integrations/{}", svc.id);
    let answer = forward(env, &caller.actor(), Method::Delete, &path, None).await?;
    http::relay(200, &answer)
}

fn cookie(req: &Request, name: &str) -> Result<String, EdgeError> {
    let header = req.headers().get("cookie")?.unwrap_or_default();
    Ok(header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default())
}

/// The provider's redirect: `code` (OAuth 2.0) or `token` (Last.fm), `state`, or `error`.
pub async fn callback(req: Request, env: &Env, svc: &'static Service) -> Result<Response, EdgeError> {
    let query = http::raw_query(&req);
    let param = |name: &str| {
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    };
    let state = param("state")
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or_else(|| EdgeError::new(ProblemKind::BadRequest, "the callback carries no state"))?;
    let body = serde_json::to_value(CallbackRequest {
        state,
        code: param("code").or_else(|| param("token")),
        error: param("error"),
        binding: cookie(&req, BINDING_COOKIE)?,
    })?;
    let path = format!("/internal/integrations/{}/callback", svc.id);
    let answer = forward(env, &Actor::Anonymous, Method::Post, &path, Some(&body)).await?;
    let mut response = http::relay(200, &answer)?;
    // The binding served its one use.
    response.headers_mut().set(
        "set-cookie",
        &format!("{BINDING_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"),
    )?;
    Ok(response)
}
