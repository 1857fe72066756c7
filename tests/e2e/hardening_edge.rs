//! Hardening of the edge: waits that never exceed the window, IPv6 clients limited per /64, a
//! cached and limited `/health` that tells nothing of the origin's errors, a limited tier
//! change that writes nothing when nothing changes, bodies refused by their declared length,
//! signed origin answers, and token introspection that knows about revoked sessions.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::api::{send, unique_email, Answer, Api, GOOD_PASSWORD};
use e2e::http::client;
use e2e::Stack;
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, new_user, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "hardening_edge::signup_retry_after_never_exceeds_the_window",
        signup_retry_after_never_exceeds_the_window,
    ),
    ("hardening_edge::ipv6_clients_share_a_login_limit_per_64", ipv6_clients_share_a_login_limit_per_64),
    (
        "hardening_edge::health_is_cached_and_tells_no_origin_error",
        health_is_cached_and_tells_no_origin_error,
    ),
    ("hardening_edge::health_is_limited_per_address", health_is_limited_per_address),
    (
        "hardening_edge::tier_changes_have_their_own_limit_apart_from_the_quota",
        tier_changes_have_their_own_limit_apart_from_the_quota,
    ),
    ("hardening_edge::a_same_tier_upgrade_writes_nothing", a_same_tier_upgrade_writes_nothing),
    (
        "hardening_edge::a_huge_declared_body_is_refused_before_it_is_read",
        a_huge_declared_body_is_refused_before_it_is_read,
    ),
    (
        "hardening_edge::an_unsigned_origin_answer_is_refused_and_issues_no_token",
        an_unsigned_origin_answer_is_refused_and_issues_no_token,
    ),
    (
        "hardening_edge::introspection_reports_a_logged_out_token_invalid",
        introspection_reports_a_logged_out_token_invalid,
    ),
];

/// A random address in 198.51.100.0/24 (TEST-NET-2), so tests on one stack never share a key.
fn fresh_ipv4() -> String {
    let mut byte = [0u8; 2];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut byte);
    }
    format!("198.51.{}.{}", 100 + byte[0] % 100, 1 + byte[1] % 250)
}

fn post_from(api: &Api, ip: &str, path: &str, body: &Value) -> Result<Answer> {
    send(client().post(api.url(path)).header("cf-connecting-ip", ip).json(body))
}

fn get_from(api: &Api, ip: &str, path: &str) -> Result<Answer> {
    send(client().get(api.url(path)).header("cf-connecting-ip", ip))
}

fn header(answer: &Answer, name: &str) -> Option<String> {
    answer.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn signup_retry_after_never_exceeds_the_window(_: &Ctx) -> Result<()> {
    // The production limit: 20 signups per rolling hour from one address.
    let stack = Stack::start()?;
    let api = Api::new(stack.edge_url());
    let ip = fresh_ipv4();
    let started = Instant::now();
    for i in 0..20 {
        let body = json!({ "email": unique_email("signup"), "password": GOOD_PASSWORD });
        let created = post_from(&api, &ip, "/api/v1/users", &body)?;
        ensure!(created.status == 201, "signup {i} answered {}: {}", created.status, created.body);
    }
    let body = json!({ "email": unique_email("signup"), "password": GOOD_PASSWORD });
    let refused = post_from(&api, &ip, "/api/v1/users", &body)?;
    let elapsed = started.elapsed().as_secs();
    expect_problem(&refused, 429, "rate-limited")?;
    let retry: u64 = header(&refused, "retry-after").context("no Retry-After")?.parse()?;
    eprintln!("21st signup after {elapsed} s: Retry-After {retry}");
    // The wait is an hour from the latest admitted signup: at most the window, and at least
    // the window less the time the burst took (one second of rounding either way).
    ensure!(retry <= 3600, "Retry-After {retry} exceeds the 3600 s window");
    ensure!(
        retry + elapsed + 1 >= 3600,
        "Retry-After {retry} after {elapsed} s is shorter than the real wait"
    );
    assert_eq!(refused.body["retry_after"], retry);
    Ok(())
}

fn ipv6_clients_share_a_login_limit_per_64(_: &Ctx) -> Result<()> {
    let stack = Stack::start_with(&[("IP_LOGIN_PER_MINUTE", "2")])?;
    let api = Api::new(stack.edge_url());
    // A new unknown account each time, so the origin's per-account softlock plays no part.
    let login = |ip: &str| {
        let body = json!({ "email": unique_email("nobody"), "password": "not the password at all" });
        post_from(&api, ip, "/api/v1/auth/login", &body)
    };
    // Two addresses of one /64 spend one quota of two.
    expect(&login("2001:db8:77:1::1")?, 401)?;
    expect(&login("2001:db8:77:1:aaaa:bbbb:cccc:dddd")?, 401)?;
    let third = login("2001:db8:77:1::ffff")?;
    expect_problem(&third, 429, "rate-limited")?;
    ensure!(header(&third, "ratelimit-policy").is_some_and(|p| p.starts_with("\"ip-login\";q=2")));
    // Another /64 has its own.
    expect(&login("2001:db8:77:2::1")?, 401)?;
    // IPv4 clients are still limited per address.
    expect(&login("192.0.2.10")?, 401)?;
    expect(&login("192.0.2.11")?, 401)?;
    Ok(())
}

fn health_is_cached_and_tells_no_origin_error(_: &Ctx) -> Result<()> {
    let mut stack = Stack::start()?;
    let api = Api::new(stack.edge_url());
    // Each call from its own address, so the per-address limit plays no part here.
    let health = || get_from(&api, &fresh_ipv4(), "/health");
    // Wait for a probe of this test's own (the start-up's may be cached already).
    std::thread::sleep(Duration::from_millis(5_200));
    let first = health()?;
    let probed_at = Instant::now();
    expect(&first, 200)?;
    assert_eq!(header(&first, "x-health-cache").as_deref(), Some("miss"));

    // Within the cache time the answer does not reach the origin, even once it is stopped.
    let second = health()?;
    expect(&second, 200)?;
    assert_eq!(header(&second, "x-health-cache").as_deref(), Some("hit"));
    stack.stop_origin();
    let third = health()?;
    ensure!(
        probed_at.elapsed() < Duration::from_millis(4_500),
        "stopping the origin took {:?}, too long to check the cache",
        probed_at.elapsed()
    );
    expect(&third, 200)?;
    assert_eq!(header(&third, "x-health-cache").as_deref(), Some("hit"));
    assert_eq!(third.body, first.body, "the very answer of the probe");

    // Once the cache time is over, the edge finds the origin down and says only that.
    std::thread::sleep(Duration::from_millis(5_200));
    let down = health()?;
    expect_problem(&down, 503, "origin-unavailable")?;
    let text = down.body.to_string().to_lowercase();
    for leak in ["127.0.0.1", "connect", "refused", "error", "signed call", "internal/ping", "network"] {
        ensure!(!text.contains(leak), "the 503 tells {leak:?}: {text}");
    }
    assert_eq!(down.body["origin"]["reachable"], false);
    Ok(())
}

fn health_is_limited_per_address(ctx: &Ctx) -> Result<()> {
    // The shared stack keeps the default: 60 per minute from one address.
    let ip = fresh_ipv4();
    let answers: Vec<Answer> = (0..61).map(|_| get_from(&ctx.api, &ip, "/health")).collect::<Result<_>>()?;
    ensure!(answers[..60].iter().all(|a| a.status == 200), "the first 60 are answered");
    let refused = &answers[60];
    expect_problem(refused, 429, "rate-limited")?;
    let retry: u64 = header(refused, "retry-after").context("no Retry-After")?.parse()?;
    ensure!((1..=60).contains(&retry), "Retry-After {retry}");
    // Another address is still answered.
    expect(&get_from(&ctx.api, &fresh_ipv4(), "/health")?, 200)?;
    Ok(())
}

fn upgrade(ctx: &Ctx, id: &str, token: &str, tier: &str) -> Result<Answer> {
    ctx.api.post(&format!("{}/upgrade", users(id)), Some(token), &json!({ "tier": tier }))
}

fn remaining(answer: &Answer) -> Option<u64> {
    header(answer, "ratelimit")?.split(";r=").nth(1)?.split(';').next()?.parse().ok()
}

fn tier_changes_have_their_own_limit_apart_from_the_quota(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let before = ctx.api.get(&users(&id), Some(&token))?;
    expect(&before, 200)?;
    let remaining_before = remaining(&before).context("no RateLimit")?;
    // Ten changes per rolling hour (the default of TIER_CHANGES_PER_HOUR).
    for i in 0..10 {
        let tier = if i % 2 == 0 { "premium" } else { "free" };
        let changed = upgrade(ctx, &id, &token, tier)?;
        ensure!(changed.status == 200, "change {i} answered {}: {}", changed.status, changed.body);
        assert_eq!(changed.body["tier"], tier);
    }
    let refused = upgrade(ctx, &id, &token, "premium")?;
    expect_problem(&refused, 429, "rate-limited")?;
    ensure!(
        header(&refused, "ratelimit-policy").is_some_and(|p| p.starts_with("\"tier-change\";q=10;w=3600"))
    );
    let retry: u64 = header(&refused, "retry-after").context("no Retry-After")?.parse()?;
    ensure!((3500..=3600).contains(&retry), "Retry-After {retry}");
    // None of it spent the general quota: the next read has one request fewer, no more.
    let after = ctx.api.get(&users(&id), Some(&token))?;
    expect(&after, 200)?;
    assert_eq!(remaining(&after), Some(remaining_before - 1));
    assert_eq!(after.body["tier"], "free", "the refused change did not happen");
    // An admin is not held by it.
    expect(&upgrade(ctx, &id, &ctx.admin_token, "premium")?, 200)?;
    Ok(())
}

fn a_same_tier_upgrade_writes_nothing(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let read = ctx.api.get(&users(&id), Some(&token))?;
    expect(&read, 200)?;
    let audit_path = format!("{}/audit", users(&id));
    let audit_before = ctx.api.get(&audit_path, Some(&token))?;
    expect(&audit_before, 200)?;

    let same = upgrade(ctx, &id, &token, "free")?;
    expect(&same, 200)?;
    assert_eq!(same.body["tier"], "free");
    assert_eq!(same.etag, read.etag, "no new version at the origin");
    assert_eq!(same.body["version"], read.body["version"]);
    let audit_after = ctx.api.get(&audit_path, Some(&token))?;
    assert_eq!(audit_after.body["entries"], audit_before.body["entries"], "no audit entry");
    // The cached view is still the one served: nothing was rewritten in front of it.
    let again = ctx.api.get(&users(&id), Some(&token))?;
    assert_eq!(again.source.as_deref(), Some("cache"));
    assert_eq!(again.etag, read.etag);

    // A real change still writes all of it.
    let changed = upgrade(ctx, &id, &token, "premium")?;
    expect(&changed, 200)?;
    ensure!(changed.etag != read.etag, "a change makes a new version");
    let audit = ctx.api.get(&audit_path, Some(&token))?;
    let entries = audit.body["entries"].as_array().cloned().unwrap_or_default();
    ensure!(entries.last().is_some_and(|e| e["action"] == "tier_change"), "{}", audit.body);
    Ok(())
}

fn a_huge_declared_body_is_refused_before_it_is_read(ctx: &Ctx) -> Result<()> {
    // `wrangler dev` hands a request to the Worker only once its body has arrived (its local
    // proxy holds it; a truncated body never reaches the Worker there), so the body is sent
    // whole here. What shows that the edge went by the header, without reading the body, is
    // the answer's detail: only that check speaks of a *declared* length.
    let declared = 5 * 1024 * 1024;
    let address = ctx.stack.edge_url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&address)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let head = format!(
        "POST /api/v1/users HTTP/1.1\r\nHost: {address}\r\ncf-connecting-ip: {}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {declared}\r\n\r\n",
        fresh_ipv4()
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes())?;
    stream.write_all(&vec![b' '; declared])?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\"detail\"") {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e) => anyhow::bail!("no answer after {:?}: {e}", started.elapsed()),
        }
    }
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&answer).to_string();
    eprintln!("413 for a declared 5 MiB body after {} ms", elapsed.as_millis());
    ensure!(text.starts_with("HTTP/1.1 413"), "{text}");
    ensure!(text.to_lowercase().contains("content-type: application/problem+json"), "{text}");
    ensure!(text.contains("urn:problem-type:user-management:payload-too-large"), "{text}");
    ensure!(
        text.contains(&format!("declared as {declared} bytes")),
        "refused by its declared length: {text}"
    );
    ensure!(elapsed < Duration::from_secs(5), "the 413 took {elapsed:?}");
    Ok(())
}

/// A stand-in for the origin that answers every request 200 with a login answer naming the
/// admin role, signed with garbage (or not at all): what a network attacker would send.
struct FakeOrigin {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeOrigin {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut answered = 0usize;
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        // Every other answer has no signature; the rest a garbage one.
                        let _ = Self::answer(stream, answered.is_multiple_of(2));
                        answered += 1;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Self { port, stop, thread: Some(thread) })
    }

    fn answer(mut stream: TcpStream, garbage_signature: bool) -> Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        // Read the head, then as much body as it announces.
        let mut data = Vec::new();
        let mut buffer = [0u8; 4096];
        let head_end = loop {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            data.extend_from_slice(&buffer[..n]);
            if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&data[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        while data.len() < head_end + length {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buffer[..n]);
        }
        let body = json!({
            "id": "usr_00000000000000000000000000",
            "tier": "enterprise",
            "role": "admin",
            "version": 1,
            "session_timeout_minutes": 60,
        })
        .to_string();
        let signature = if garbage_signature { "x-origin-signature: 00ff00ff\r\n" } else { "" };
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{signature}\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes())?;
        Ok(())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn an_unsigned_origin_answer_is_refused_and_issues_no_token(_: &Ctx) -> Result<()> {
    let fake = FakeOrigin::start()?;
    // The stack's own origin runs too, but its edge calls the fake one.
    let stack = Stack::start_with(&[("ORIGIN_URL", &fake.url())])?;
    let api = Api::new(stack.edge_url());
    for attempt in 0..2 {
        // Once without a signature, once with a garbage one.
        let body = json!({ "email": unique_email("forged"), "password": GOOD_PASSWORD });
        let login = post_from(&api, &fresh_ipv4(), "/api/v1/auth/login", &body)?;
        expect_problem(&login, 502, "bad-gateway").with_context(|| format!("attempt {attempt}"))?;
        ensure!(login.body.get("access_token").is_none(), "a token was issued: {}", login.body);
        let text = login.body.to_string();
        ensure!(!text.contains("admin") && !text.contains("signature"), "the 502 says too much: {text}");
    }
    Ok(())
}

fn introspection_reports_a_logged_out_token_invalid(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let valid = ctx.api.get("/api/v1/auth/token", Some(&token))?;
    expect(&valid, 200)?;
    assert_eq!(valid.body["sub"], id);
    expect(&ctx.api.post("/api/v1/auth/logout", Some(&token), &json!({}))?, 204)?;
    let after = ctx.api.get("/api/v1/auth/token", Some(&token))?;
    expect_problem(&after, 401, "unauthenticated")?;
    Ok(())
}
