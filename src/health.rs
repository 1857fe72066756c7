//! `GET /health`: the edge's version and whether the origin answered a signed call.

use domain::identity::Actor;
use domain::problem::{Problem, ProblemKind};
use serde_json::json;
use worker::{Env, Method, Response, Result};

use crate::bindings::OriginConfig;
use crate::origin_client::{now, OriginClient};
use crate::problem;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn handle(env: &Env) -> Result<Response> {
    let unavailable = |detail: String, origin: serde_json::Value| {
        problem::respond(
            &Problem::new(ProblemKind::OriginUnavailable, detail)
                .with("version", VERSION)
                .with("origin", origin),
        )
    };
    let config = match OriginConfig::from_env(env) {
        Ok(c) => c,
        Err(e) => return unavailable(e.to_string(), json!({ "reachable": false, "error": e.to_string() })),
    };
    let started = now();
    let answer = OriginClient::new(config).send_as(&Actor::System, Method::Get, "/internal/ping", b"").await;
    let latency_ms = now().0.saturating_sub(started.0);
    match answer {
        Ok(r) if r.status == 200 => {
            let origin_version = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.get("version").cloned());
            let mut response = Response::from_json(&json!({
                "status": "ok",
                "version": VERSION,
                "origin": { "reachable": true, "latency_ms": latency_ms, "version": origin_version },
            }))?;
            response.headers_mut().set("cache-control", "no-store")?;
            Ok(response)
        }
        Ok(r) => {
            let detail = format!("the origin refused the edge's signed call with status {}", r.status);
            unavailable(
                detail.clone(),
                json!({ "reachable": false, "status": r.status, "latency_ms": latency_ms, "error": detail }),
            )
        }
        Err(e) => unavailable(
            format!("the origin did not answer a signed call: {e}"),
            json!({ "reachable": false, "latency_ms": latency_ms, "error": e.to_string() }),
        ),
    }
}
