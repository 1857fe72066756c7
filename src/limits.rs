//! Rate limits at the edge: admission of each request (per user through their gate, per
//! client IP for the unauthenticated endpoints) and the header fields every limited answer
//! carries: `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers), and on
//! a refusal a 429 problem with `Retry-After`.
//!
//! Per-IP limits key IPv6 clients by their /64 (`domain::net::client_key`): one subscriber
//! commonly holds a whole /64 and could otherwise take a fresh quota with every address.

use domain::problem::{Problem, ProblemKind};
use worker::{Env, Request, Response};

use crate::auth::{self, Caller};
use crate::bindings::RateLimitConfig;
use crate::gate::{GateAnswer, GateClient, LimitAnswer};
use crate::problem::EdgeError;

/// The outcome of admission.
pub enum Admission<T> {
    Admitted(T),
    /// The 429 answer to send.
    Refused(Response),
}

/// Authenticates the caller and asks their gate, in one call, whether the request is within
/// the quota of the tier the gate enforces. `count: false` checks without counting.
///
/// `also` starts work that needs the caller but not the gate's answer (a profile read's cache
/// lookup): it runs while the gate answers, and its result is used only if admitted.
pub async fn admit_user<T, Fut>(
    req: &Request,
    env: &Env,
    count: bool,
    also: impl FnOnce(&Caller) -> Fut,
) -> Result<(Caller, bool, Admission<(GateAnswer, T)>), EdgeError>
where
    Fut: std::future::Future<Output = T>,
{
    let caller = auth::authenticate(req, env).await?;
    let client = GateClient::for_user(env, caller.id.as_str())?;
    let asked = crate::origin_client::now().0;
    let (gate, extra) = futures_util::future::join(
        client.check(caller.token_tier, count, caller.sid.as_deref()),
        also(&caller),
    )
    .await;
    let gate = gate?;
    let gate_ms = crate::origin_client::now().0.saturating_sub(asked);
    if let Some(reason) = &gate.session_refused {
        crate::metrics::token_failure("session_ended");
        return Err(auth::unauthenticated(reason.clone()));
    }
    // Whether the user's usage events may be collected (their `analytics` consent).
    let collects = gate.collects_events;
    if gate.limit.admitted {
        crate::metrics::admitted(env, gate.tier.as_str(), gate_ms);
        Ok((caller, collects, Admission::Admitted((gate, extra))))
    } else {
        let detail = format!(
            "the {} tier allows {} requests per rolling {} s",
            gate.tier,
            gate.limit.limit.unwrap_or(0),
            gate.limit.window_secs
        );
        crate::metrics::refused(env, gate.tier.as_str(), "tier_quota", gate_ms);
        let refused = refusal(&gate.limit, gate.tier.as_str(), detail)?;
        Ok((caller, collects, Admission::Refused(refused)))
    }
}

pub use domain::rate_limit::IpClass;

/// The client's address as Cloudflare reports it (`CF-Connecting-IP`).
pub fn client_ip(req: &Request) -> String {
    req.headers().get("cf-connecting-ip").ok().flatten().unwrap_or_else(|| "unknown".into())
}

/// The key the client is limited under: its IPv4 address, or its IPv6 /64.
pub fn client_key(req: &Request) -> String {
    domain::net::client_key(&client_ip(req))
}

pub async fn admit_ip(req: &Request, env: &Env, class: IpClass) -> Result<Admission<LimitAnswer>, EdgeError> {
    let config = RateLimitConfig::from_env(env)
        .map_err(|e| EdgeError::Runtime(worker::Error::RustError(e.to_string())))?;
    let (window_secs, quota) = class.window(&config.ip_quotas());
    let asked = crate::origin_client::now().0;
    let limit = GateClient::for_ip(env, &client_key(req))?.throttle(class.name(), window_secs, quota).await?;
    let gate_ms = crate::origin_client::now().0.saturating_sub(asked);
    if limit.admitted {
        crate::metrics::admitted(env, "none", gate_ms);
        Ok(Admission::Admitted(limit))
    } else {
        crate::metrics::refused(env, "none", &class.name().replace('-', "_"), gate_ms);
        let detail =
            format!("at most {quota} requests per {window_secs} s from one address on this endpoint");
        Ok(Admission::Refused(refusal(&limit, class.name(), detail)?))
    }
}

/// The throttle class of tier changes in the user's gate, apart from their general quota.
pub const UPGRADE_CLASS: &str = "tier-change";

/// Counts a tier change against the user's own small hourly limit of tier changes. It is a
/// class of its own, so it spends nothing of the general quota: a free user who used that up
/// must still be able to upgrade.
pub async fn admit_tier_change(
    env: &Env,
    user_id: &str,
    tier: &str,
) -> Result<Admission<LimitAnswer>, EdgeError> {
    let config = RateLimitConfig::from_env(env)
        .map_err(|e| EdgeError::Runtime(worker::Error::RustError(e.to_string())))?;
    let quota = config.tier_changes_per_hour;
    let asked = crate::origin_client::now().0;
    let limit = GateClient::for_user(env, user_id)?.throttle(UPGRADE_CLASS, 3600, quota).await?;
    let gate_ms = crate::origin_client::now().0.saturating_sub(asked);
    if limit.admitted {
        Ok(Admission::Admitted(limit))
    } else {
        crate::metrics::refused(env, tier, "tier_change_limit", gate_ms);
        let detail = format!("at most {quota} tier changes per rolling hour");
        Ok(Admission::Refused(refusal(&limit, UPGRADE_CLASS, detail)?))
    }
}

/// Sets the header fields of a limited answer (none for an unlimited one). An answer that
/// already names a policy keeps it: that is the narrower limit which decided it (a refused
/// tier change names the tier-change limit, not the general quota it did not touch).
pub fn set_headers(response: &mut Response, limit: &LimitAnswer, policy: &str) -> Result<(), EdgeError> {
    let Some(quota) = limit.limit else { return Ok(()) };
    let headers = response.headers_mut();
    if headers.has("ratelimit-policy")? {
        return Ok(());
    }
    headers.set("ratelimit-policy", &format!("\"{policy}\";q={quota};w={}", limit.window_secs))?;
    headers.set("ratelimit", &format!("\"{policy}\";r={};t={}", limit.remaining, limit.reset_secs))?;
    Ok(())
}

pub(crate) fn refusal(limit: &LimitAnswer, policy: &str, detail: String) -> Result<Response, EdgeError> {
    let retry_after = limit.retry_after_secs.unwrap_or(limit.window_secs);
    let problem = Problem::new(ProblemKind::RateLimited, format!("{detail}; retry in {retry_after} s"))
        .with("retry_after", retry_after)
        .with("limit", limit.limit.unwrap_or(0));
    let mut response = crate::problem::respond(&problem)?;
    response.headers_mut().set("retry-after", &retry_after.to_string())?;
    set_headers(&mut response, limit, policy)?;
    Ok(response)
}

/// Turns a handler's result into the answer, with the limit's header fields whatever it was.
pub fn finish(
    result: Result<Response, EdgeError>,
    limit: &LimitAnswer,
    policy: &str,
    path: &str,
) -> Result<Response, EdgeError> {
    let mut response = match result {
        Ok(r) => r,
        Err(e) => e.into_response(path)?,
    };
    set_headers(&mut response, limit, policy)?;
    Ok(response)
}
