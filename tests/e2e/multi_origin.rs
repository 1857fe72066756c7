//! Several origins on one PostgreSQL database (the shared stack of `E2E_BACKEND=postgres`):
//! what must stay exact when requests of one account land on different origin processes.
//! Registered only when the shared stack has more than one origin (see `main.rs`).

use anyhow::{ensure, Result};
use e2e::api::unique_email;
use e2e::api::GOOD_PASSWORD;
use e2e::http::SignedCall;
use serde_json::{json, Value};

use crate::accounts::expect;
use crate::Ctx;

pub const TESTS: &[(&str, crate::TestFn)] = &[
    ("multi_origin::every_origin_reads_what_another_wrote", every_origin_reads_what_another_wrote),
    (
        "multi_origin::a_signed_request_replayed_to_another_origin_is_refused",
        a_signed_request_replayed_to_another_origin_is_refused,
    ),
    (
        "multi_origin::parallel_wrong_passwords_across_origins_cannot_race_the_softlock",
        parallel_wrong_passwords_across_origins_cannot_race_the_softlock,
    ),
    (
        "multi_origin::an_mfa_challenge_is_consumed_once_across_origins",
        an_mfa_challenge_is_consumed_once_across_origins,
    ),
    ("multi_origin::the_edge_reaches_every_origin", the_edge_reaches_every_origin),
    (
        "multi_origin::reset_codes_are_limited_and_used_once_across_origins",
        reset_codes_are_limited_and_used_once_across_origins,
    ),
];

fn origins(ctx: &Ctx) -> Result<Vec<String>> {
    let urls = ctx.stack.origin_urls();
    ensure!(urls.len() >= 2, "this test needs two origins, the stack has {}", urls.len());
    Ok(urls)
}

/// A signed call to the origin's internal API, acting as `actor`, with a JSON body.
fn signed(method: &'static str, path: &str, actor: &str, body: &Value) -> SignedCall {
    let bytes = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    let mut call = SignedCall::new(method, path, &bytes);
    call.actor = actor.to_owned();
    call
}

fn verify(ctx: &Ctx, origin: &str, email: &str, password: &str, ip: &str) -> Result<(u16, Value)> {
    let body = json!({"email": email, "password": password, "context": {"ip": ip}});
    let call = signed("POST", "/internal/auth/verify", "anonymous", &body);
    let response = call.send(origin, &ctx.stack.secrets.shared_secret()?)?;
    let status = response.status().as_u16();
    Ok((status, response.json().unwrap_or(Value::Null)))
}

fn every_origin_reads_what_another_wrote(ctx: &Ctx) -> Result<()> {
    let urls = origins(ctx)?;
    let secret = ctx.stack.secrets.shared_secret()?;
    let email = unique_email("multi");
    let created = signed(
        "POST",
        "/internal/users",
        "anonymous",
        &json!({"email": email, "password": GOOD_PASSWORD, "profile": {"display_name": "Two Origins"}}),
    )
    .send(&urls[0], &secret)?;
    ensure!(created.status().as_u16() == 201, "signup on origin A answered {}", created.status());
    let id = created.json::<Value>()?["id"].as_str().unwrap_or_default().to_owned();
    for url in &urls {
        let read = signed("GET", &format!("/internal/users/{id}"), &format!("user:{id}:user"), &Value::Null)
            .send(url, &secret)?;
        ensure!(read.status().as_u16() == 200, "{url} answered {}", read.status());
        let view: Value = read.json()?;
        ensure!(view["display_name"] == "Two Origins" && view["version"] == 1, "{url}: {view}");
    }
    Ok(())
}

fn a_signed_request_replayed_to_another_origin_is_refused(ctx: &Ctx) -> Result<()> {
    let urls = origins(ctx)?;
    let call = SignedCall::new("GET", "/internal/ping", b"");
    let headers = call.headers(&ctx.stack.secrets.shared_secret()?);
    assert_eq!(call.send_raw(&urls[0], &headers, b"")?.status().as_u16(), 200);
    // The nonce lives in the shared database: the other origin has seen it too.
    for url in &urls {
        let body = expect_problem_response(call.send_raw(url, &headers, b"")?, 401)?;
        ensure!(body["detail"] == "the request's nonce was already used", "{url}: {body}");
    }
    Ok(())
}

fn expect_problem_response(response: reqwest::blocking::Response, status: u16) -> Result<Value> {
    let got = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    ensure!(got == status, "expected {status}, got {got}: {body}");
    Ok(body)
}

fn parallel_wrong_passwords_across_origins_cannot_race_the_softlock(ctx: &Ctx) -> Result<()> {
    let urls = origins(ctx)?;
    let email = unique_email("multi");
    expect(&ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?, 201)?;
    // 30 at once, alternating between the origins: the counter is one row in PostgreSQL,
    // locked by each attempt before its password is checked.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|i| {
                let (url, email) = (&urls[i % urls.len()], &email);
                scope.spawn(move || verify(ctx, url, email, "thirty guesses at once", "203.0.113.206"))
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_or(0, |a| a.map_or(0, |(s, _)| s))).collect()
    });
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    let held = statuses.iter().filter(|&&s| s == 429).count();
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    eprintln!(
        "30 parallel wrong passwords over {} origins: {checked} checked, {held} softlocked, {busy} told to retry",
        urls.len()
    );
    // Exactly four reach the password check; the rest wait (429) or, when more arrive at once
    // than an origin's hashing pool takes, are told to retry (503) before anything is counted.
    assert_eq!(checked, 4, "{statuses:?}");
    assert_eq!(held + busy, 26, "{statuses:?}");
    Ok(())
}

fn an_mfa_challenge_is_consumed_once_across_origins(ctx: &Ctx) -> Result<()> {
    // An admin at the enterprise tier is challenged for an email code; the same code sent to
    // every origin at once opens one session, whichever origin wins.
    let urls = origins(ctx)?;
    let email = unique_email("multi-admin");
    ctx.stack.create_admin(&email, GOOD_PASSWORD)?;
    let (status, first) = verify(ctx, &urls[0], &email, GOOD_PASSWORD, "203.0.113.207")?;
    ensure!(status == 401 && first["type"].as_str().is_some_and(|t| t.ends_with("mfa-required")), "{first}");
    let challenge = first["challenge_id"].as_str().unwrap_or_default().to_owned();
    let secret = ctx.stack.secrets.shared_secret()?;
    let send = json!({"challenge_id": challenge, "method": "email"});
    let sent = signed("POST", "/internal/auth/mfa/send", "anonymous", &send).send(&urls[1], &secret)?;
    ensure!(sent.status().as_u16() == 202, "sending the code on origin B answered {}", sent.status());
    let code = ctx.stack.last_code_for(&email).unwrap_or_default();
    let answer = json!({"challenge_id": challenge, "method": "email", "code": code});
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (url, answer, secret) = (&urls[i % urls.len()], &answer, &secret);
                scope.spawn(move || {
                    signed("POST", "/internal/auth/mfa", "anonymous", answer)
                        .send(url, secret)
                        .map_or(0, |r| r.status().as_u16())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    Ok(())
}

fn the_edge_reaches_every_origin(ctx: &Ctx) -> Result<()> {
    let proxy =
        ctx.stack.proxy.as_ref().ok_or_else(|| anyhow::anyhow!("no proxy in front of the origins"))?;
    // Parallel logins open parallel connections, which the proxy spreads.
    let email = unique_email("multi");
    expect(&ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?, 201)?;
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| ctx.api.login(&email, GOOD_PASSWORD));
        }
    });
    let connections = proxy.connections();
    eprintln!("connections per origin through the proxy: {connections:?}");
    ensure!(connections.iter().all(|&n| n > 0), "an origin got no connection: {connections:?}");
    Ok(())
}

fn reset_codes_are_limited_and_used_once_across_origins(ctx: &Ctx) -> Result<()> {
    // Ten reset requests for one account spread over the origins at once: the per-account
    // limit (3 an hour) holds, since each origin counts and stores under the user's row lock.
    let urls = origins(ctx)?;
    let secret = ctx.stack.secrets.shared_secret()?;
    let email = unique_email("multi-reset");
    expect(&ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?, 201)?;
    let ask = json!({"email": email});
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (url, ask, secret) = (&urls[i % urls.len()], &ask, &secret);
                scope.spawn(move || {
                    signed("POST", "/internal/auth/password/forgot", "anonymous", ask)
                        .send(url, secret)
                        .map_or(0, |r| r.status().as_u16())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    ensure!(statuses.iter().all(|&s| s == 202), "{statuses:?}");
    let codes = |ctx: &Ctx| -> Vec<String> {
        ctx.stack
            .messages_for(&email)
            .into_iter()
            .filter(|(text, _)| text.contains("reset"))
            .filter_map(|(_, code)| code)
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while codes(ctx).len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let sent = codes(ctx);
    assert_eq!(sent.len(), 3, "three codes an hour, across origins: {sent:?}");

    // One code, used on every origin at once: one reset.
    let reset = json!({"code": sent[0], "new_password": "a fresh horse battery staple"});
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (url, reset, secret) = (&urls[i % urls.len()], &reset, &secret);
                scope.spawn(move || {
                    signed("POST", "/internal/auth/password/reset", "anonymous", reset)
                        .send(url, secret)
                        .map_or(0, |r| r.status().as_u16())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "{statuses:?}");
    ensure!(statuses.iter().all(|&s| s == 200 || s == 401), "{statuses:?}");
    // The other codes were voided by the reset.
    let other = json!({"code": sent[1], "new_password": "yet another fine passphrase"});
    let answer =
        signed("POST", "/internal/auth/password/reset", "anonymous", &other).send(&urls[1], &secret)?;
    assert_eq!(answer.status().as_u16(), 401);
    Ok(())
}
