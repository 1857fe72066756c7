//! The foundation: health at the edge, and the origin's refusal of anything not signed by the
//! edge (unsigned, tampered, stale, replayed), and a clean teardown.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use anyhow::{ensure, Result};
use domain::signing::{SharedSecret, MAX_SKEW_MS};
use e2e::http::{client, SignedCall};
use e2e::{processes_in_group, Stack};
use serde_json::Value;

use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    ("foundation::edge_health_reports_the_origin_reachable", edge_health_reports_the_origin_reachable),
    (
        "foundation::edge_health_is_503_problem_when_the_origin_is_down",
        edge_health_is_503_problem_when_the_origin_is_down,
    ),
    ("foundation::origin_health_is_the_only_unsigned_route", origin_health_is_the_only_unsigned_route),
    ("foundation::origin_accepts_a_signed_call", origin_accepts_a_signed_call),
    ("foundation::origin_refuses_unsigned_calls", origin_refuses_unsigned_calls),
    ("foundation::origin_refuses_a_wrong_secret", origin_refuses_a_wrong_secret),
    ("foundation::origin_refuses_tampered_calls", origin_refuses_tampered_calls),
    ("foundation::origin_refuses_stale_calls", origin_refuses_stale_calls),
    ("foundation::origin_refuses_replayed_calls", origin_refuses_replayed_calls),
    ("foundation::edge_unknown_route_is_404_problem", edge_unknown_route_is_404_problem),
    ("foundation::a_panicking_test_leaves_no_process_behind", a_panicking_test_leaves_no_process_behind),
];

/// Asserts a problem+json answer of `status` whose `type` ends with `slug`; returns the body.
fn expect_problem(response: reqwest::blocking::Response, status: u16, slug: &str) -> Result<Value> {
    let got = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body: Value = response.json()?;
    ensure!(got == status, "expected {status}, got {got}: {body}");
    ensure!(content_type == "application/problem+json", "content-type {content_type:?}: {body}");
    let expected_type = format!("urn:problem-type:user-management:{slug}");
    assert_eq!(body["type"], Value::from(expected_type), "{body}");
    assert_eq!(body["status"], Value::from(status), "{body}");
    Ok(body)
}

/// A little longer than the edge keeps a `/health` outcome (`health::CACHE_MS`).
const HEALTH_CACHE: Duration = Duration::from_millis(5_200);

fn secret(ctx: &Ctx) -> Result<SharedSecret> {
    ctx.stack.secrets.shared_secret()
}

fn edge_health_reports_the_origin_reachable(ctx: &Ctx) -> Result<()> {
    let response = client().get(format!("{}/health", ctx.stack.edge_url())).send()?;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json()?;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["origin"]["reachable"], true);
    assert_eq!(body["origin"]["version"], env!("CARGO_PKG_VERSION"));
    ensure!(body["origin"]["latency_ms"].is_u64(), "latency_ms missing: {body}");
    Ok(())
}

fn edge_health_is_503_problem_when_the_origin_is_down(_: &Ctx) -> Result<()> {
    let mut stack = Stack::start()?;
    stack.stop_origin();
    // The edge keeps a probe's outcome for a few seconds (the start-up's was a success).
    std::thread::sleep(HEALTH_CACHE);
    let response = client().get(format!("{}/health", stack.edge_url())).send()?;
    let body = expect_problem(response, 503, "origin-unavailable")?;
    assert_eq!(body["origin"]["reachable"], false, "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    // And it recovers as soon as the origin is back.
    stack.start_origin()?;
    std::thread::sleep(HEALTH_CACHE);
    let response = client().get(format!("{}/health", stack.edge_url())).send()?;
    assert_eq!(response.status().as_u16(), 200);
    Ok(())
}

fn origin_health_is_the_only_unsigned_route(ctx: &Ctx) -> Result<()> {
    let response = client().get(format!("{}/health", ctx.stack.origin_url())).send()?;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json()?;
    assert_eq!(body["status"], "ok");
    // An unknown internal path is refused for want of a signature before anything else, so an
    // unsigned caller learns nothing about which internal routes exist.
    let response = client().get(format!("{}/internal/no-such-route", ctx.stack.origin_url())).send()?;
    expect_problem(response, 401, "unauthenticated")?;
    Ok(())
}

fn origin_accepts_a_signed_call(ctx: &Ctx) -> Result<()> {
    let response =
        SignedCall::new("GET", "/internal/ping", b"").send(&ctx.stack.origin_url(), &secret(ctx)?)?;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json()?;
    assert_eq!(body["status"], "ok");
    Ok(())
}

fn origin_refuses_unsigned_calls(ctx: &Ctx) -> Result<()> {
    let response = client().get(format!("{}/internal/ping", ctx.stack.origin_url())).send()?;
    let body = expect_problem(response, 401, "unauthenticated")?;
    assert_eq!(body["detail"], "the request carries no x-edge-timestamp header");
    Ok(())
}

fn origin_refuses_a_wrong_secret(ctx: &Ctx) -> Result<()> {
    let wrong = SharedSecret::new(&[9u8; 32]).map_err(|e| anyhow::anyhow!(e))?;
    let response = SignedCall::new("GET", "/internal/ping", b"").send(&ctx.stack.origin_url(), &wrong)?;
    let body = expect_problem(response, 401, "unauthenticated")?;
    assert_eq!(body["detail"], "the signature does not match the request");
    Ok(())
}

fn origin_refuses_tampered_calls(ctx: &Ctx) -> Result<()> {
    let base = ctx.stack.origin_url();
    let secret = secret(ctx)?;
    let mismatch = "the signature does not match the request";

    // The body changed after signing.
    let call = SignedCall::new("POST", "/internal/ping", br#"{"amount":1}"#);
    let response = call.send_raw(&base, &call.headers(&secret), br#"{"amount":1000}"#)?;
    assert_eq!(expect_problem(response, 401, "unauthenticated")?["detail"], mismatch);

    // The path changed after signing (same headers sent to another path).
    let call = SignedCall::new("GET", "/internal/ping?user=1", b"");
    let headers = call.headers(&secret);
    let moved = SignedCall { path: "/internal/ping?user=2".into(), ..call };
    let response = moved.send_raw(&base, &headers, b"")?;
    assert_eq!(expect_problem(response, 401, "unauthenticated")?["detail"], mismatch);

    // The timestamp changed after signing.
    let call = SignedCall::new("GET", "/internal/ping", b"");
    let mut headers = call.headers(&secret);
    headers[0].1 = (call.timestamp.0 + 1).to_string();
    let response = call.send_raw(&base, &headers, b"")?;
    assert_eq!(expect_problem(response, 401, "unauthenticated")?["detail"], mismatch);

    // The actor changed after signing: a user claiming to be the system.
    let call = SignedCall::new("GET", "/internal/ping", b"");
    let mut headers = call.headers(&secret);
    headers[3].1 = "user:usr_00000000000000000000000000000000:admin".into();
    let response = call.send_raw(&base, &headers, b"")?;
    assert_eq!(expect_problem(response, 401, "unauthenticated")?["detail"], mismatch);

    // One flipped character of the signature.
    let call = SignedCall::new("GET", "/internal/ping", b"");
    let mut headers = call.headers(&secret);
    let flipped = if headers[2].1.starts_with('0') { "1" } else { "0" };
    headers[2].1.replace_range(0..1, flipped);
    let response = call.send_raw(&base, &headers, b"")?;
    assert_eq!(expect_problem(response, 401, "unauthenticated")?["detail"], mismatch);
    Ok(())
}

fn origin_refuses_stale_calls(ctx: &Ctx) -> Result<()> {
    let base = ctx.stack.origin_url();
    let secret = secret(ctx)?;
    for offset in [-(MAX_SKEW_MS as i64) - 60_000, MAX_SKEW_MS as i64 + 60_000] {
        let mut call = SignedCall::new("GET", "/internal/ping", b"");
        call.timestamp = domain::time::UnixMillis((call.timestamp.0 as i64 + offset) as u64);
        let body = expect_problem(call.send(&base, &secret)?, 401, "unauthenticated")?;
        let detail = body["detail"].as_str().unwrap_or_default();
        ensure!(detail.contains("more than the 300000 ms allowed"), "offset {offset}: {detail}");
    }
    Ok(())
}

fn origin_refuses_replayed_calls(ctx: &Ctx) -> Result<()> {
    let base = ctx.stack.origin_url();
    let call = SignedCall::new("GET", "/internal/ping", b"");
    let headers = call.headers(&secret(ctx)?);
    assert_eq!(call.send_raw(&base, &headers, b"")?.status().as_u16(), 200);
    let body = expect_problem(call.send_raw(&base, &headers, b"")?, 401, "unauthenticated")?;
    assert_eq!(body["detail"], "the request's nonce was already used");
    Ok(())
}

fn edge_unknown_route_is_404_problem(ctx: &Ctx) -> Result<()> {
    let response = client().get(format!("{}/no/such/path", ctx.stack.edge_url())).send()?;
    let body = expect_problem(response, 404, "not-found")?;
    assert_eq!(body["detail"], "no route matches /no/such/path");
    Ok(())
}

fn a_panicking_test_leaves_no_process_behind(_: &Ctx) -> Result<()> {
    let mut groups = Vec::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let stack = Stack::start().map_err(|e| format!("{e:#}"))?;
        groups = stack.process_groups();
        // Some process of each group is alive while the stack is up (wrangler and workerd
        // for the edge, the origin binary for the origin).
        for &group in &groups {
            assert!(!processes_in_group(group).is_empty(), "group {group} is empty while running");
        }
        panic!("a test failing while its stack is up");
        #[allow(unreachable_code)]
        Ok::<(), String>(())
    }));
    ensure!(outcome.is_err(), "the closure was meant to panic");
    ensure!(groups.len() == 2, "expected two process groups, got {groups:?}");
    std::thread::sleep(Duration::from_millis(200));
    for group in groups {
        let left = processes_in_group(group);
        ensure!(left.is_empty(), "processes of group {group} survived the panic: {left:?}");
    }
    Ok(())
}
