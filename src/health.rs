//! `GET /health`: the edge's version and whether the origin answered a signed call.
//!
//! The answer is kept for [`CACHE_MS`] per isolate, so a flood of probes costs the origin at
//! most one signed call per isolate every few seconds (the route is also limited per client
//! address, see `routes.rs`). A 503 says only that the origin is unavailable: what failed
//! (an address, a TLS or DNS error, a status) goes to the log, never to the public.

use std::cell::RefCell;

use domain::identity::Actor;
use domain::problem::{Problem, ProblemKind};
use serde_json::json;
use worker::{console_error, Env, Method, Response, Result};

use crate::bindings::OriginConfig;
use crate::origin_client::{now, OriginClient};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long one probe's outcome answers `GET /health` in an isolate.
pub const CACHE_MS: u64 = 5_000;

/// Whether an answer was served from the isolate's cache (`hit`) or probed the origin (`miss`).
pub const CACHE_HEADER: &str = "x-health-cache";

/// A probe's outcome: when it was made, its status and its body.
#[derive(Clone)]
struct Outcome {
    at_ms: u64,
    status: u16,
    body: String,
}

thread_local! {
    // A Worker isolate runs one thread; its requests share this.
    static LAST: RefCell<Option<Outcome>> = const { RefCell::new(None) };
}

pub async fn handle(env: &Env) -> Result<Response> {
    let started = now();
    let cached =
        LAST.with(|last| last.borrow().clone()).filter(|o| started.0.saturating_sub(o.at_ms) < CACHE_MS);
    let (outcome, hit) = match cached {
        Some(outcome) => (outcome, "hit"),
        None => {
            let outcome = probe(env).await;
            LAST.with(|last| *last.borrow_mut() = Some(outcome.clone()));
            (outcome, "miss")
        }
    };
    let content_type = if outcome.status == 200 { "application/json" } else { domain::problem::CONTENT_TYPE };
    let mut response = Response::ok(outcome.body)?.with_status(outcome.status);
    let headers = response.headers_mut();
    headers.set("content-type", content_type)?;
    headers.set("cache-control", "no-store")?;
    headers.set(CACHE_HEADER, hit)?;
    Ok(response)
}

/// Makes the signed call and turns its outcome into the public answer.
async fn probe(env: &Env) -> Outcome {
    let started = now();
    let unavailable = |cause: String| {
        console_error!("/health: {cause}");
        let problem = Problem::new(ProblemKind::OriginUnavailable, "the origin service is unavailable")
            .with("version", VERSION)
            .with("origin", json!({ "reachable": false }));
        Outcome { at_ms: started.0, status: problem.status, body: problem.to_json() }
    };
    let config = match OriginConfig::from_env(env) {
        Ok(c) => c,
        Err(e) => return unavailable(e.to_string()),
    };
    let answer = OriginClient::new(config).send_as(&Actor::System, Method::Get, "/internal/ping", b"").await;
    let latency_ms = now().0.saturating_sub(started.0);
    match answer {
        Ok(r) if r.status == 200 => {
            let origin_version = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| serde_json::from_value::<domain::wire::auth::Ping>(v).ok())
                .map(|p| p.version);
            let body = domain::wire::auth::Health {
                status: "ok".into(),
                version: VERSION.into(),
                origin: domain::wire::auth::OriginHealth {
                    reachable: true,
                    latency_ms: Some(latency_ms),
                    version: origin_version,
                },
            };
            let body = serde_json::to_string(&body).unwrap_or_default();
            Outcome { at_ms: started.0, status: 200, body }
        }
        Ok(r) => unavailable(format!("the origin refused the edge's signed call with status {}", r.status)),
        Err(e) => unavailable(format!("the origin did not answer a signed call: {e}")),
    }
}
