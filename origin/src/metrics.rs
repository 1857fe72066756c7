//! The origin's metrics: the `metrics` facade, recorded by `metrics-exporter-prometheus` and
//! served as Prometheus text at `GET /metrics` (bearer `ORIGIN_METRICS_TOKEN`).
//!
//! Counters and histograms move where things happen (HTTP layer, login, jobs, event
//! ingestion); gauges that describe state (users per tier, pool use, the argon2 queue, active
//! users) are read at scrape time, so they are never stale. What only the edge sees arrives as
//! [`EdgeAggregate`]s through the events queue and is added here. Every label value comes from
//! a closed list (route templates, tiers, outcomes), never a user id or an email.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::observe::{bounded, EdgeAggregate, LatencyBuckets, RISK_BOUNDS, RISK_SIGNALS, TIER_LABELS};
use domain::problem::{Problem, ProblemKind};
use domain::time::UnixMillis;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::errors::{problem_response, ApiError};
use crate::AppState;

pub const HTTP_REQUESTS: &str = "um_http_requests_total";
pub const HTTP_DURATION: &str = "um_http_request_duration_seconds";
pub const SIGNUPS: &str = "um_signups_total";
pub const LOGINS: &str = "um_logins_total";
pub const MFA: &str = "um_mfa_verifications_total";
pub const RISK_SCORE: &str = "um_login_risk_score";
pub const RISK_SIGNALS_FIRED: &str = "um_login_risk_signals_total";
pub const USERS: &str = "um_users";
pub const TIER_MIGRATIONS: &str = "um_tier_migrations_total";
pub const ACTIVE_SESSIONS: &str = "um_active_sessions_estimate";
pub const EVENTS_INGESTED: &str = "um_events_ingested_total";
pub const EVENTS_DUPLICATE: &str = "um_events_duplicate_total";
pub const JOB_RUNS: &str = "um_job_runs_total";
pub const JOB_DURATION: &str = "um_job_duration_seconds";
pub const ARGON2_QUEUE: &str = "um_argon2_queue_depth";
pub const ARGON2_CAPACITY: &str = "um_argon2_capacity";
pub const OUTBOX_BACKLOG: &str = "um_outbox_backlog";
pub const OUTBOX_FAILED: &str = "um_outbox_failed";
pub const OUTBOX_MESSAGES: &str = "um_outbox_messages_total";
pub const DB_POOL: &str = "um_db_pool_connections";
pub const DB_POOL_MAX: &str = "um_db_pool_max_connections";
pub const EDGE_ADMISSIONS: &str = "um_edge_admissions_total";
pub const EDGE_REFUSALS: &str = "um_edge_refusals_total";
pub const EDGE_PROFILE_READS: &str = "um_edge_profile_reads_total";
pub const EDGE_TOKEN_FAILURES: &str = "um_edge_token_failures_total";
pub const EDGE_AGGREGATES: &str = "um_edge_aggregates_total";
pub const EDGE_GATE_LATENCY: &str = "um_edge_gate_latency_seconds";

/// How far back a user's last event counts them as having an open session.
pub const ACTIVE_WINDOW_MS: u64 = 30 * 60_000;

/// Login outcomes (the `outcome` label of [`LOGINS`]).
pub mod outcome {
    pub const SUCCESS: &str = "success";
    pub const WRONG_PASSWORD: &str = "wrong_password";
    pub const SOFTLOCKED: &str = "softlocked";
    pub const MFA_REQUIRED: &str = "mfa_required";
    pub const MFA_FAILED: &str = "mfa_failed";
    pub const REFUSED_RISK: &str = "refused_risk";
    pub const OVERLOADED: &str = "overloaded";
}

/// The edge's gate latency, summed over every aggregate received: the edge sends bucket
/// counts, which the `metrics` histograms (fed one observation at a time) cannot take, so this
/// family is rendered here.
static EDGE_GATE: Mutex<Option<LatencyBuckets>> = Mutex::new(None);

/// The process's recorder, installed on first use (the service, and every unit test of the
/// crate, share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let seconds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let jobs = [0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0];
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(Matcher::Full(JOB_DURATION.to_owned()), &jobs)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &seconds))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RISK_SCORE.to_owned()), &RISK_BOUNDS));
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            // Bucket lists are constants; this cannot fail, but a recorder without them still works.
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only gauges");
        }
        describe();
        handle
    })
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route template, method and status class");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency by route template and method");
    describe_counter!(SIGNUPS, "Accounts created, by tier and how (signup, admin, provisioning)");
    describe_counter!(LOGINS, "Password logins and second-factor completions by outcome and tier");
    describe_counter!(MFA, "Second-factor verifications by method and outcome");
    describe_histogram!(RISK_SCORE, "Risk score (0-1) of logins whose password was right");
    describe_counter!(RISK_SIGNALS_FIRED, "Risk signals fired by logins");
    describe_gauge!(USERS, "Users per tier (read at scrape)");
    describe_counter!(TIER_MIGRATIONS, "Tier changes by old and new tier");
    describe_gauge!(ACTIVE_SESSIONS, "Distinct users with activity in the last 30 minutes (read at scrape)");
    describe_counter!(EVENTS_INGESTED, "Behavioural events stored from the edge's queue");
    describe_counter!(EVENTS_DUPLICATE, "Behavioural events received again and not stored twice");
    describe_counter!(JOB_RUNS, "Automation job runs by job and outcome");
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Automation job duration by job");
    describe_gauge!(ARGON2_QUEUE, "Password checks hashing or waiting for a hashing thread");
    describe_gauge!(ARGON2_CAPACITY, "Hashing threads plus queue places; beyond it a check gets 503");
    describe_gauge!(OUTBOX_BACKLOG, "Messages stored in the outbox and not yet sent (read at scrape)");
    describe_gauge!(OUTBOX_FAILED, "Messages the outbox gave up on (read at scrape)");
    describe_counter!(OUTBOX_MESSAGES, "Messages sent through the outbox by channel and outcome");
    describe_gauge!(DB_POOL, "Database pool connections by state (read at scrape)");
    describe_gauge!(DB_POOL_MAX, "The most connections the database pool opens");
    describe_counter!(EDGE_ADMISSIONS, "Requests the edge admitted, by tier (none: per-address limits)");
    describe_counter!(EDGE_REFUSALS, "Requests the edge refused with 429, by tier and reason");
    describe_counter!(EDGE_PROFILE_READS, "Profile reads at the edge by source (cache or origin)");
    describe_counter!(EDGE_TOKEN_FAILURES, "Bearer tokens the edge refused, by reason");
    describe_counter!(EDGE_AGGREGATES, "Per-isolate metric aggregates received from the edge");
}

/// The HTTP layer: every request counted by its route template (never its path), method and
/// status class, and timed.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => class).increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method).record(started.elapsed().as_secs_f64());
    response
}

pub fn tier_label(tier: &str) -> String {
    bounded(tier, &TIER_LABELS).to_owned()
}

pub fn login(outcome: &'static str, tier: &str) {
    counter!(LOGINS, "outcome" => outcome, "tier" => tier_label(tier)).increment(1);
}

pub fn mfa(method: &str, ok: bool) {
    let method = bounded(method, &["totp", "recovery_code", "email", "sms"]).to_owned();
    counter!(MFA, "method" => method, "outcome" => if ok { "success" } else { "failure" }).increment(1);
}

pub fn risk(assessment: &domain::risk::Assessment) {
    histogram!(RISK_SCORE).record(assessment.score);
    for s in &assessment.signals {
        counter!(RISK_SIGNALS_FIRED, "signal" => bounded(&s.signal, &RISK_SIGNALS).to_owned()).increment(1);
    }
}

pub fn signup(tier: &str, how: &'static str) {
    counter!(SIGNUPS, "tier" => tier_label(tier), "via" => how).increment(1);
}

pub fn tier_migration(from: &str, to: &str) {
    counter!(TIER_MIGRATIONS, "from" => tier_label(from), "to" => tier_label(to)).increment(1);
}

pub fn events(stored: u64, duplicates: u64) {
    counter!(EVENTS_INGESTED).increment(stored);
    counter!(EVENTS_DUPLICATE).increment(duplicates);
}

pub fn job(job: crate::jobs::Job, ok: bool, seconds: f64) {
    let job = job.as_str();
    counter!(JOB_RUNS, "job" => job, "outcome" => if ok { "success" } else { "failure" }).increment(1);
    histogram!(JOB_DURATION, "job" => job).record(seconds);
}

pub fn outbox_sent(channel: &str, ok: bool) {
    let channel = bounded(channel, &["email", "sms"]).to_owned();
    counter!(OUTBOX_MESSAGES, "channel" => channel, "outcome" => if ok { "sent" } else { "failed" })
        .increment(1);
}

/// Adds what an edge isolate counted (labels bounded again: the origin trusts the channel, not
/// the label values).
pub fn edge(aggregate: &EdgeAggregate) {
    let a = aggregate.bounded();
    counter!(EDGE_AGGREGATES).increment(1);
    for (tier, n) in &a.admitted {
        counter!(EDGE_ADMISSIONS, "tier" => tier.clone()).increment(*n);
    }
    for (tier, reasons) in &a.refused {
        for (reason, n) in reasons {
            counter!(EDGE_REFUSALS, "tier" => tier.clone(), "reason" => reason.clone()).increment(*n);
        }
    }
    counter!(EDGE_PROFILE_READS, "source" => "cache").increment(a.cache_hits);
    counter!(EDGE_PROFILE_READS, "source" => "origin").increment(a.origin_reads);
    for (reason, n) in &a.token_failures {
        counter!(EDGE_TOKEN_FAILURES, "reason" => reason.clone()).increment(*n);
    }
    let mut gate = EDGE_GATE.lock().unwrap_or_else(|e| e.into_inner());
    gate.get_or_insert_with(LatencyBuckets::default).merge(&a.gate_latency);
}

/// The edge's gate latency in the text format (a histogram in seconds).
fn render_edge_gate() -> String {
    let gate = EDGE_GATE.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
    let mut out = format!(
        "# HELP {EDGE_GATE_LATENCY} How long the edge's gate (Durable Object) took to admit a request\n\
         # TYPE {EDGE_GATE_LATENCY} histogram\n"
    );
    for (bound_ms, n) in gate.cumulative() {
        out.push_str(&format!("{EDGE_GATE_LATENCY}_bucket{{le=\"{}\"}} {n}\n", bound_ms as f64 / 1000.0));
    }
    out.push_str(&format!("{EDGE_GATE_LATENCY}_bucket{{le=\"+Inf\"}} {}\n", gate.count));
    out.push_str(&format!("{EDGE_GATE_LATENCY}_sum {}\n", gate.sum_ms as f64 / 1000.0));
    out.push_str(&format!("{EDGE_GATE_LATENCY}_count {}\n", gate.count));
    out
}

/// Reads the scrape-time gauges, then renders everything.
pub async fn render(state: &AppState, now: UnixMillis) -> Result<String, ApiError> {
    for tier in domain::tier::ALL_TIERS {
        gauge!(USERS, "tier" => tier.as_str()).set(0.0);
    }
    for (tier, n) in state.store.tier_counts().await? {
        gauge!(USERS, "tier" => tier_label(&tier)).set(n as f64);
    }
    let active = state.store.active_users_since(now.saturating_sub_ms(ACTIVE_WINDOW_MS)).await?;
    gauge!(ACTIVE_SESSIONS).set(active as f64);
    let hasher = &state.accounts.hasher;
    gauge!(ARGON2_QUEUE).set(hasher.in_flight() as f64);
    gauge!(ARGON2_CAPACITY).set(hasher.capacity() as f64);
    // Messages stored and not yet sent (waiting for their first attempt or a retry).
    let (waiting, _sent, failed) = state.store.outbox_counts().await?;
    gauge!(OUTBOX_BACKLOG).set(waiting as f64);
    gauge!(OUTBOX_FAILED).set(failed as f64);
    let pool = state.store.pool_use();
    gauge!(DB_POOL, "state" => "busy").set(f64::from(pool.open.saturating_sub(pool.idle)));
    gauge!(DB_POOL, "state" => "idle").set(f64::from(pool.idle));
    gauge!(DB_POOL_MAX).set(f64::from(pool.max));
    let handle = handle();
    handle.run_upkeep();
    let mut text = handle.render();
    text.push_str(&render_edge_gate());
    Ok(text)
}

/// `GET /metrics`: the Prometheus text, for a caller with the configured bearer token.
pub async fn serve(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(token) = &state.config.metrics_token else {
        return problem_response(&Problem::new(
            ProblemKind::NotFound,
            "metrics are off (ORIGIN_METRICS_TOKEN is unset)",
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Digests of equal length, compared in constant time: neither the token nor its length leaks.
    use sha2::{Digest, Sha256};
    let (given, expected) = (Sha256::digest(presented.trim().as_bytes()), Sha256::digest(token.0.as_bytes()));
    if !crate::protection::constant_time_eq(&given, &expected) {
        let mut response = problem_response(&Problem::new(
            ProblemKind::Unauthenticated,
            "GET /metrics needs `Authorization: Bearer <ORIGIN_METRICS_TOKEN>`",
        ));
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        return response;
    }
    match render(&state, state.clock.now()).await {
        Ok(text) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}
