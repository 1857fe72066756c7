//! Observability: the origins' `/metrics` (parsed by a real Prometheus text parser, summed
//! over every origin as a Prometheus server would) moves with the traffic the test sends,
//! including what only the edge sees; and the admin dashboard, opened in headless Chromium
//! through the edge, draws that traffic, while a non-admin gets 403.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::api::{unique_email, GOOD_PASSWORD};
use e2e::http::{client, SignedCall};
use prometheus_parse::{Scrape, Value};
use serde_json::json;

use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    ("observability::metrics_need_the_token", metrics_need_the_token),
    ("observability::every_metric_family_exists_and_moves_with_traffic", every_family_moves_with_traffic),
    ("observability::an_admin_sees_the_live_dashboard_through_the_edge", admin_sees_the_dashboard),
    ("observability::the_origin_refuses_the_dashboard_to_a_signed_non_admin", origin_refuses_non_admin),
];

/// The families the issue asks for, each of which must be in the scrape.
const FAMILIES: &[&str] = &[
    "um_http_requests_total",
    "um_http_request_duration_seconds",
    "um_signups_total",
    "um_logins_total",
    "um_mfa_verifications_total",
    "um_login_risk_score",
    "um_login_risk_signals_total",
    "um_users",
    "um_tier_migrations_total",
    "um_active_sessions_estimate",
    "um_events_ingested_total",
    "um_events_duplicate_total",
    "um_job_runs_total",
    "um_job_duration_seconds",
    "um_argon2_queue_depth",
    "um_argon2_capacity",
    "um_outbox_backlog",
    "um_outbox_messages_total",
    "um_db_pool_connections",
    "um_db_pool_max_connections",
    "um_edge_admissions_total",
    "um_edge_refusals_total",
    "um_edge_profile_reads_total",
    "um_edge_token_failures_total",
    "um_edge_aggregates_total",
    "um_edge_gate_latency_seconds",
];

/// A family, the labels its samples must have, and how much they must move at least.
type Expectation = (&'static str, Vec<(&'static str, &'static str)>, f64);

/// One origin's scrape, parsed.
fn scrape(url: &str, token: &str) -> Result<Scrape> {
    let response = client().get(format!("{url}/metrics")).bearer_auth(token).send()?;
    ensure!(response.status() == 200, "GET {url}/metrics answered {}", response.status());
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    ensure!(content_type.starts_with("text/plain; version=0.0.4"), "content type {content_type}");
    let text = response.text()?;
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).context("parsing the scrape")
}

/// Every origin's scrape (one on SQLite, two on PostgreSQL).
fn scrape_all(ctx: &Ctx) -> Result<Vec<Scrape>> {
    ctx.stack.origin_urls().iter().map(|u| scrape(u, &ctx.stack.secrets.metrics_token)).collect()
}

/// The sum over every origin of family `name`'s samples whose labels include `labels`: the
/// value of counters and gauges, the observation count of histograms.
fn total(scrapes: &[Scrape], name: &str, labels: &[(&str, &str)]) -> f64 {
    scrapes
        .iter()
        .flat_map(|s| &s.samples)
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

fn families(scrapes: &[Scrape]) -> Vec<String> {
    let mut names: Vec<String> = scrapes.iter().flat_map(|s| &s.samples).map(|s| s.metric.clone()).collect();
    names.sort();
    names.dedup();
    names
}

fn metrics_need_the_token(ctx: &Ctx) -> Result<()> {
    let url = format!("{}/metrics", ctx.stack.origin_url());
    let none = client().get(&url).send()?;
    ensure!(none.status() == 401, "no token: {}", none.status());
    ensure!(
        none.headers().get("content-type").and_then(|v| v.to_str().ok()) == Some("application/problem+json"),
        "a problem answer"
    );
    let wrong = client().get(&url).bearer_auth("0123456789abcdef0123456789abcdef").send()?;
    ensure!(wrong.status() == 401, "a wrong token: {}", wrong.status());
    let text = client().get(&url).bearer_auth(&ctx.stack.secrets.metrics_token).send()?;
    ensure!(text.status() == 200, "the right token: {}", text.status());
    Ok(())
}

/// A free user's token, after a signup through the edge.
fn new_user(ctx: &Ctx, prefix: &str) -> Result<(String, String, String)> {
    let email = unique_email(prefix);
    let created = ctx.api.signup(&email, GOOD_PASSWORD, json!({ "display_name": "Metrics Person" }))?;
    ensure!(created.status == 201, "signup answered {}: {}", created.status, created.body);
    let id = created.str("id");
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    Ok((email, id, token))
}

fn every_family_moves_with_traffic(ctx: &Ctx) -> Result<()> {
    let before = scrape_all(ctx)?;
    let api = &ctx.api;

    // A signup and a successful login.
    let (email, id, token) = new_user(ctx, "metrics")?;
    // A profile the edge has never seen (made by the CLI) is read from the origin, then from the
    // cache the read filled.
    let unseen = ctx.stack.create_admin(&unique_email("unseen"), GOOD_PASSWORD)?;
    let mut sources = Vec::new();
    for _ in 0..2 {
        let read = api.get(&format!("/api/v1/users/{unseen}"), Some(&ctx.admin_token))?;
        ensure!(read.status == 200, "read answered {}", read.status);
        sources.push(read.source.unwrap_or_default());
    }
    ensure!(sources == ["origin", "cache"], "the reads came from {sources:?}");
    // A second login, without the device token the first one got: a new device to the risk score.
    api.login(&email, GOOD_PASSWORD)?;
    // Wrong passwords until the account is softlocked (three free failures, then a pause).
    let mut softlocked = false;
    for _ in 0..6 {
        let answer = api.post(
            "/api/v1/auth/login",
            None,
            &json!({ "email": email, "password": "not the password at all" }),
        )?;
        if answer.status == 429 {
            softlocked = true;
            break;
        }
        ensure!(answer.status == 401, "a wrong password answered {}", answer.status);
    }
    ensure!(softlocked, "six wrong passwords never softlocked the account");
    // Tokens the edge refuses: none, and a forged one.
    ensure!(api.get(&format!("/api/v1/users/{id}"), None)?.status == 401);
    ensure!(api.get(&format!("/api/v1/users/{id}"), Some("not.a.token"))?.status == 401);
    // An upgrade (a tier migration), then tier changes until the edge refuses one (429).
    let up = api.post(&format!("/api/v1/users/{id}/upgrade"), Some(&token), &json!({ "tier": "premium" }))?;
    ensure!(up.status == 200, "upgrade answered {}: {}", up.status, up.body);
    let mut refused = false;
    for _ in 0..12 {
        let again =
            api.post(&format!("/api/v1/users/{id}/upgrade"), Some(&token), &json!({ "tier": "premium" }))?;
        if again.status == 429 {
            refused = true;
            break;
        }
    }
    ensure!(refused, "the tier-change limit never refused");
    // A job run, started by the edge's cron trigger as in production.
    let cron = client()
        .get(format!("{}/__scheduled?cron=0+3+*+*+0", ctx.stack.edge_url()))
        .send()
        .context("triggering the cleanup cron")?;
    ensure!(cron.status().is_success(), "the cron trigger answered {}", cron.status());

    // Counters, gauges and histograms, summed over the origins, that this traffic must move.
    let checks: Vec<Expectation> = vec![
        ("um_signups_total", vec![("tier", "free"), ("via", "signup")], 1.0),
        ("um_logins_total", vec![("outcome", "success"), ("tier", "free")], 2.0),
        ("um_logins_total", vec![("outcome", "wrong_password"), ("tier", "free")], 3.0),
        ("um_logins_total", vec![("outcome", "softlocked"), ("tier", "free")], 1.0),
        ("um_login_risk_score", vec![], 2.0),
        ("um_login_risk_signals_total", vec![("signal", "new_device")], 1.0),
        ("um_tier_migrations_total", vec![("from", "free"), ("to", "premium")], 1.0),
        (
            "um_http_requests_total",
            vec![("route", "/internal/auth/verify"), ("method", "POST"), ("status", "2xx")],
            1.0,
        ),
        ("um_http_requests_total", vec![("route", "/internal/auth/verify"), ("status", "4xx")], 3.0),
        ("um_http_request_duration_seconds", vec![("route", "/internal/auth/verify")], 5.0),
        ("um_job_runs_total", vec![("job", "cleanup"), ("outcome", "success")], 1.0),
        ("um_job_duration_seconds", vec![("job", "cleanup")], 1.0),
        ("um_events_ingested_total", vec![], 5.0),
        ("um_edge_admissions_total", vec![("tier", "enterprise")], 2.0),
        ("um_edge_admissions_total", vec![("tier", "free")], 1.0),
        ("um_edge_admissions_total", vec![("tier", "none")], 2.0),
        ("um_edge_refusals_total", vec![("tier", "premium"), ("reason", "tier_change_limit")], 1.0),
        ("um_edge_profile_reads_total", vec![("source", "origin")], 1.0),
        ("um_edge_profile_reads_total", vec![("source", "cache")], 1.0),
        ("um_edge_token_failures_total", vec![("reason", "missing")], 1.0),
        ("um_edge_token_failures_total", vec![("reason", "malformed")], 1.0),
        ("um_edge_gate_latency_seconds", vec![], 4.0),
    ];
    // Events and the edge's aggregates arrive through the queue: poll (each poll is a request,
    // which lets the isolate ship what it counted since its last flush).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lagging: Vec<String>;
    let after = loop {
        let _ = api.get("/api/v1/auth/token", Some(&ctx.admin_token))?;
        let after = scrape_all(ctx)?;
        lagging = checks
            .iter()
            .filter_map(|(name, labels, at_least)| {
                let moved = total(&after, name, labels) - total(&before, name, labels);
                (moved < *at_least)
                    .then(|| format!("{name}{labels:?} moved by {moved}, expected at least {at_least}"))
            })
            .collect();
        if lagging.is_empty() || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(700));
    };
    if !lagging.is_empty() {
        bail!("metrics did not move with the traffic:\n{}", lagging.join("\n"));
    }
    let present = families(&after);
    let missing: Vec<&&str> = FAMILIES
        .iter()
        .filter(|f| !present.iter().any(|p| p == **f || p.strip_suffix("_count") == Some(**f)))
        .collect();
    ensure!(missing.is_empty(), "families missing from the scrape: {missing:?}");
    // Gauges read at scrape time reflect the database.
    ensure!(total(&after, "um_users", &[("tier", "premium")]) >= 1.0, "a premium user is counted");
    ensure!(total(&after, "um_active_sessions_estimate", &[]) >= 1.0, "someone is active");
    ensure!(total(&after, "um_db_pool_max_connections", &[]) >= 1.0, "the pool has a size");
    ensure!(total(&after, "um_argon2_capacity", &[]) >= 2.0, "the hashing pool has a capacity");
    // Labels are bounded: no label value anywhere carries an email or a user id.
    for sample in after.iter().flat_map(|s| &s.samples) {
        for (k, v) in sample.labels.iter() {
            ensure!(!v.contains('@') && !v.starts_with("usr_"), "{} has label {k}={v}", sample.metric);
        }
    }
    eprintln!(
        "metrics: {} families, edge gate latency observations {} (sum over {} origin(s))",
        present.len(),
        total(&after, "um_edge_gate_latency_seconds", &[]),
        after.len()
    );
    Ok(())
}

fn admin_sees_the_dashboard(ctx: &Ctx) -> Result<()> {
    let api = &ctx.api;
    // Traffic the dashboard must show: three signups with their logins, two failed logins.
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(new_user(ctx, &format!("dash{i}"))?);
    }
    for (email, _, _) in users.iter().take(2) {
        let wrong = api.post(
            "/api/v1/auth/login",
            None,
            &json!({ "email": email, "password": "wrong wrong wrong" }),
        )?;
        ensure!(wrong.status == 401, "a wrong password answered {}", wrong.status);
    }
    let (_, id, user_token) = &users[0];
    ensure!(api.get(&format!("/api/v1/users/{id}"), Some(user_token))?.status == 200);
    // The business section reads the last analytics and tier runs.
    for job in ["analyze-tiers", "generate-analytics"] {
        let (code, _, err) = ctx.stack.origin_cli(&[job])?;
        ensure!(code == 0, "{job} failed: {err}");
        // Not on a terminal, progress is plain lines (a bar only on a terminal).
        let what = if job == "analyze-tiers" { "tiers" } else { "analytics" };
        ensure!(
            err.lines().any(|l| l.starts_with(&format!("{what}: ")) && l.ends_with(" done")),
            "{job} printed no progress lines:\n{err}"
        );
    }
    // The events reach the origin through the queue before the page is read.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let data = api.get("/admin/data", Some(&ctx.admin_token))?;
        ensure!(data.status == 200, "GET /admin/data answered {}: {}", data.status, data.body);
        let requests: u64 = data.body["activity"]["requests"]
            .as_array()
            .map_or(0, |v| v.iter().filter_map(|n| n.as_u64()).sum());
        if requests >= 1 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the dashboard shows no API request: {}", data.body["activity"]);
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    // A non-admin is refused at the edge.
    let refused = api.get("/admin", Some(user_token))?;
    ensure!(refused.status == 403, "a non-admin got {}", refused.status);
    ensure!(refused.problem_slug() == "forbidden", "{}", refused.body);
    let page =
        client().get(format!("{}/admin", ctx.stack.edge_url())).bearer_auth(&ctx.admin_token).send()?;
    ensure!(page.status() == 200, "the admin's page answered {}", page.status());
    let csp =
        page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    ensure!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "CSP: {csp}");

    let output = e2e::browser::run(
        "dashboard.mjs",
        "dashboard",
        &[
            ("EDGE_URL", ctx.stack.edge_url()),
            ("ADMIN_TOKEN", ctx.admin_token.clone()),
            ("USER_TOKEN", user_token.clone()),
            ("MIN_SIGNUPS", "3".to_owned()),
            ("MIN_FAILED_LOGINS", "2".to_owned()),
        ],
        Duration::from_secs(120),
    )?;
    ensure!(output.contains("screenshot") && output.lines().any(|l| l == "ok"), "the script:\n{output}");
    for line in output.lines().filter(|l| l.starts_with("measured")) {
        eprintln!("dashboard: {line}");
    }
    Ok(())
}

fn origin_refuses_non_admin(ctx: &Ctx) -> Result<()> {
    let (_, id, _) = new_user(ctx, "notadmin")?;
    let secret = ctx.stack.secrets.shared_secret()?;
    let mut call = SignedCall::new("GET", "/admin/data", b"");
    call.actor = format!("user:{id}:user");
    let answer = call.send(&ctx.stack.origin_url(), &secret)?;
    ensure!(answer.status() == 403, "a signed non-admin got {}", answer.status());
    // Unsigned, the origin does not serve it at all.
    let unsigned = client().get(format!("{}/admin", ctx.stack.origin_url())).send()?;
    ensure!(unsigned.status() == 401, "an unsigned call got {}", unsigned.status());
    // Signed as the admin, it does.
    let mut call = SignedCall::new("GET", "/admin/data", b"");
    call.actor = format!("user:{}:admin", ctx.admin_id);
    let answer = call.send(&ctx.stack.origin_url(), &secret)?;
    ensure!(answer.status() == 200, "the signed admin got {}", answer.status());
    Ok(())
}
