//! The limits every request runs under: a time limit, and a bound on how many requests the
//! origin handles at once. Beyond the bound a request is refused at once rather than queued:
//! a queue without a bound would turn a burst into memory growth and into latency for every
//! caller, while a quick 503 with `Retry-After` lets the edge (and its clients) back off.
//!
//! Both refusals are `503 application/problem+json` (`origin-unavailable`) with `Retry-After`:
//! from the caller's side the origin is unavailable for this request, and retrying later is the
//! remedy either way. A timed-out request releases its slot, so a stuck handler (a blocked
//! database, say) cannot hold the concurrency limit for ever.

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::response::Response;
use axum::{BoxError, Router};
use domain::problem::{Problem, ProblemKind};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;

use crate::errors::problem_response;

/// How long a refused caller is told to wait, in seconds: load shedding and timeouts are
/// momentary, so a short wait is enough to spread the retries.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The request limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub timeout: Duration,
    pub max_concurrent: usize,
}

impl RequestLimits {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self { timeout: config.request_timeout, max_concurrent: config.max_concurrent_requests }
    }
}

/// `router` with the time limit and the concurrency limit on every route (and the fallback).
/// The concurrency limit is one semaphore shared by all routes (`Router::layer` wraps each
/// route apart, so a per-service limit would bound each route on its own).
pub fn apply(router: Router, limits: RequestLimits) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |error: BoxError| async move { refusal(&error, limits) }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(limits.max_concurrent))
            .timeout(limits.timeout),
    )
}

/// The answer to a request the layers stopped.
fn refusal(error: &BoxError, limits: RequestLimits) -> Response {
    let problem = if error.is::<tower::timeout::error::Elapsed>() {
        tracing::warn!(timeout_secs = limits.timeout.as_secs(), "a request timed out");
        Problem::new(
            ProblemKind::OriginUnavailable,
            format!(
                "the origin did not finish the request within {} s; retry in {RETRY_AFTER_SECS} s",
                limits.timeout.as_secs()
            ),
        )
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        tracing::warn!(max = limits.max_concurrent, "a request was shed: too many at once");
        // At capacity, like a full hashing queue: the edge passes it on with its retry time.
        Problem::new(
            ProblemKind::Overloaded,
            format!(
                "the origin is handling its limit of {} requests at once; retry in {RETRY_AFTER_SECS} s",
                limits.max_concurrent
            ),
        )
    } else {
        tracing::error!(%error, "a request failed in the service layers");
        return problem_response(&Problem::new(
            ProblemKind::Internal,
            "the origin could not complete the request",
        ));
    };
    problem_response(&problem.with("retry_after", RETRY_AFTER_SECS))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use axum::routing::get;
    use serde_json::Value;
    use tokio::sync::{mpsc, oneshot, Mutex};
    use tower::ServiceExt;

    use super::*;

    fn request(path: &str) -> Request<Body> {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    async fn problem(response: Response) -> Value {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_request_past_the_time_limit_is_answered_503_problem_json() {
        let router = Router::new()
            .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(30)).await }))
            .route("/quick", get(|| async { "ok" }));
        let app = apply(router, RequestLimits { timeout: Duration::from_millis(50), max_concurrent: 4 });
        let body = problem(app.clone().oneshot(request("/slow")).await.unwrap()).await;
        assert_eq!(body["type"], "urn:problem-type:user-management:origin-unavailable");
        assert_eq!(body["status"], 503);
        assert_eq!(body["retry_after"], 1);
        assert!(body["detail"].as_str().unwrap().contains("did not finish"), "{body}");
        assert_eq!(app.oneshot(request("/quick")).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn requests_beyond_the_concurrency_limit_are_shed_with_503_not_queued() {
        // The first request holds the only slot until released; the others come meanwhile.
        let (entered_tx, mut entered) = mpsc::channel::<()>(1);
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let release = std::sync::Arc::new(Mutex::new(Some(release_rx)));
        let router = Router::new()
            .route(
                "/hold",
                get(move || {
                    let (entered_tx, release) = (entered_tx.clone(), release.clone());
                    async move {
                        entered_tx.send(()).await.unwrap();
                        let wait = release.lock().await.take().unwrap();
                        wait.await.unwrap();
                        "held"
                    }
                }),
            )
            .route("/other", get(|| async { "ok" }));
        let app = apply(router, RequestLimits { timeout: Duration::from_secs(30), max_concurrent: 1 });
        let held = tokio::spawn(app.clone().oneshot(request("/hold")));
        entered.recv().await.unwrap();

        // Another route shares the limit: refused at once, not after the first one ends.
        let started = std::time::Instant::now();
        let body = problem(app.clone().oneshot(request("/other")).await.unwrap()).await;
        assert!(started.elapsed() < Duration::from_secs(5), "the request waited instead of being shed");
        assert_eq!(body["type"], "urn:problem-type:user-management:overloaded");
        assert!(body["detail"].as_str().unwrap().contains("limit of 1 requests at once"), "{body}");

        release_tx.send(()).unwrap();
        assert_eq!(held.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(app.oneshot(request("/other")).await.unwrap().status(), StatusCode::OK);
    }
}
