//! Tier-based rate limits at the edge: exact quotas, counted in the user's gate.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use e2e::api::{burst, unique_email, Api, GOOD_PASSWORD};
use e2e::Stack;
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, new_premium_user, new_user, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    ("limits::a_free_burst_admits_exactly_the_quota", a_free_burst_admits_exactly_the_quota),
    ("limits::a_premium_burst_admits_exactly_its_quota", a_premium_burst_admits_exactly_its_quota),
    (
        "limits::an_upgrade_lifts_the_limit_on_the_next_request",
        an_upgrade_lifts_the_limit_on_the_next_request,
    ),
    ("limits::vip_is_not_limited", vip_is_not_limited),
    ("limits::retry_after_is_the_real_wait", retry_after_is_the_real_wait),
    ("limits::counts_survive_an_edge_restart", counts_survive_an_edge_restart),
    ("limits::logins_are_limited_per_address", logins_are_limited_per_address),
];

/// How many requests to `path` wrangler's local proxy sent to the Worker again after its
/// connection to the Worker dropped (it retries a GET, logging "recovered on attempt"): the
/// Worker saw those twice, so each may have been counted twice. A development-server artefact
/// (there is no such proxy on Cloudflare); counted here so the exactness check stays exact.
fn replayed_by_dev_proxy(ctx: &Ctx, path: &str) -> u64 {
    let Some(edge) = ctx.stack.edge.as_ref() else { return 0 };
    let log = std::fs::read_to_string(&edge.log).unwrap_or_default();
    log.lines().filter(|l| l.contains("recovered on attempt") && l.contains(path)).count() as u64
}

/// Checks a burst's answers: `quota` admitted with `RateLimit` counting down exactly from
/// `quota - 1 - already` to 0, the rest refused with 429 problems and a `Retry-After`.
/// `elapsed_secs` is how long the burst took: a refusal waits until the burst's buckets leave
/// the window, at most the window and no less than what is left of it after the burst's start.
/// `replayed` requests reached the Worker twice (see [`replayed_by_dev_proxy`]): each may
/// have taken one more count, and only that much may be missing.
fn check_burst(
    answers: &[e2e::api::Answer],
    quota: u64,
    already: u64,
    policy: &str,
    elapsed_secs: u64,
    replayed: u64,
) -> Result<()> {
    let ok: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    ensure!(
        ok.len() + refused.len() == answers.len(),
        "unexpected statuses: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let admitted = ok.len() as u64;
    ensure!(
        admitted <= quota - already && admitted + replayed >= quota - already,
        "admitted {admitted} of a quota of {} ({replayed} requests replayed by the dev proxy)",
        quota - already
    );
    if replayed > 0 {
        eprintln!("{replayed} requests were sent twice by wrangler's dev proxy; {admitted} admitted");
    }
    let mut remaining: Vec<u64> = ok.iter().map(|a| a.remaining().unwrap()).collect();
    remaining.sort_unstable();
    if replayed == 0 {
        assert_eq!(remaining, (0..quota - already).collect::<Vec<_>>(), "RateLimit counts down exactly");
    } else {
        // Each admitted answer still names its own place in the count: no two the same.
        remaining.dedup();
        assert_eq!(remaining.len() as u64, admitted, "RateLimit values are distinct");
        assert!(remaining.iter().all(|r| *r < quota - already), "RateLimit within the quota");
    }
    for a in &ok {
        assert_eq!(a.header("ratelimit-policy").unwrap(), format!("\"{policy}\";q={quota};w=3600"));
    }
    for a in &refused {
        expect_problem(a, 429, "rate-limited")?;
        assert_eq!(a.remaining(), Some(0));
        let retry: u64 = a.header("retry-after").unwrap().parse()?;
        let earliest = 3600u64.saturating_sub(elapsed_secs + 60);
        ensure!(
            (earliest..=3600).contains(&retry),
            "Retry-After {retry} within the hour, after a {elapsed_secs} s burst"
        );
        assert_eq!(a.body["retry_after"], retry);
    }
    Ok(())
}

fn a_free_burst_admits_exactly_the_quota(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let started = Instant::now();
    let answers = burst(&ctx.api, &users(&id), &token, 150, 20)?;
    assert_eq!(answers.len(), 150);
    let replayed = replayed_by_dev_proxy(ctx, &users(&id));
    check_burst(&answers, 100, 0, "free", started.elapsed().as_secs(), replayed)?;
    if replayed == 0 {
        assert_eq!(answers.iter().filter(|a| a.status == 429).count(), 50);
    }
    Ok(())
}

fn a_premium_burst_admits_exactly_its_quota(ctx: &Ctx) -> Result<()> {
    let (id, token) = new_premium_user(ctx)?;
    let started = Instant::now();
    let answers = burst(&ctx.api, &users(&id), &token, 5_150, 20)?;
    eprintln!("premium burst: 5150 requests in {:.1} s", started.elapsed().as_secs_f64());
    let replayed = replayed_by_dev_proxy(ctx, &users(&id));
    check_burst(&answers, 5_000, 0, "premium", started.elapsed().as_secs(), replayed)?;
    if replayed == 0 {
        assert_eq!(answers.iter().filter(|a| a.status == 429).count(), 150);
    }
    Ok(())
}

fn an_upgrade_lifts_the_limit_on_the_next_request(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let answers = burst(&ctx.api, &users(&id), &token, 101, 4)?;
    assert_eq!(answers.iter().filter(|a| a.status == 429).count(), 1);
    expect_problem(&ctx.api.get(&users(&id), Some(&token))?, 429, "rate-limited")?;
    // The upgrade itself goes through (it is checked, not counted), and the very next request
    // is measured against the premium quota, with the same (free-tier) token.
    let upgraded =
        ctx.api.post(&format!("{}/upgrade", users(&id)), Some(&token), &json!({"tier": "premium"}))?;
    expect(&upgraded, 200)?;
    let next = ctx.api.get(&users(&id), Some(&token))?;
    expect(&next, 200)?;
    assert_eq!(next.header("ratelimit-policy").unwrap(), "\"premium\";q=5000;w=3600");
    assert_eq!(next.remaining(), Some(5000 - 101));
    // And a downgrade likewise, at once.
    let downgraded =
        ctx.api.post(&format!("{}/upgrade", users(&id)), Some(&ctx.admin_token), &json!({"tier": "free"}))?;
    expect(&downgraded, 200)?;
    expect_problem(&ctx.api.get(&users(&id), Some(&token))?, 429, "rate-limited")?;
    Ok(())
}

fn vip_is_not_limited(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    expect(
        &ctx.api.post(&format!("{}/upgrade", users(&id)), Some(&ctx.admin_token), &json!({"tier": "vip"}))?,
        200,
    )?;
    let answers = burst(&ctx.api, &users(&id), &token, 150, 10)?;
    ensure!(answers.iter().all(|a| a.status == 200), "every VIP request is admitted");
    ensure!(answers.iter().all(|a| a.header("ratelimit").is_none()), "no limit fields on unlimited answers");
    // But VIP requests still go through authentication: a bad token is still refused.
    expect_problem(&ctx.api.get(&users(&id), Some("x.y.z"))?, 401, "unauthenticated")?;
    Ok(())
}

fn signup(api: &Api) -> Result<(String, String)> {
    let email = unique_email("limited");
    let created = api.signup(&email, GOOD_PASSWORD, Value::Null)?;
    expect(&created, 201)?;
    Ok((created.str("id"), api.login(&email, GOOD_PASSWORD)?))
}

fn retry_after_is_the_real_wait(_: &Ctx) -> Result<()> {
    // A short window, through configuration; the code path is the production one.
    let stack = Stack::start_with(&[
        ("RATE_LIMIT_WINDOW_SECS", "8"),
        ("RATE_LIMIT_BUCKETS", "4"),
        ("RATE_LIMIT_QUOTAS", r#"{"free": 20}"#),
    ])?;
    let api = Api::new(stack.edge_url());
    let (id, token) = signup(&api)?;
    let answers = burst(&api, &users(&id), &token, 30, 10)?;
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 20);
    let refused = api.get(&users(&id), Some(&token))?;
    let received = Instant::now();
    expect_problem(&refused, 429, "rate-limited")?;
    let retry: u64 = refused.header("retry-after").unwrap().parse()?;
    ensure!((1..=10).contains(&retry), "Retry-After {retry} within the window and a bucket");
    std::thread::sleep(Duration::from_secs(retry).saturating_sub(received.elapsed()));
    let retried = api.get(&users(&id), Some(&token))?;
    expect(&retried, 200)?;
    Ok(())
}

fn counts_survive_an_edge_restart(_: &Ctx) -> Result<()> {
    let mut stack = Stack::start_with(&[("RATE_LIMIT_QUOTAS", r#"{"free": 10}"#)])?;
    let api = Api::new(stack.edge_url());
    let (id, token) = signup(&api)?;
    let answers = burst(&api, &users(&id), &token, 7, 1)?;
    assert_eq!(answers.last().unwrap().remaining(), Some(3));
    stack.stop_edge();
    stack.start_edge()?;
    let after = api.get(&users(&id), Some(&token))?;
    expect(&after, 200)?;
    assert_eq!(after.remaining(), Some(2), "the count went on from where it was");
    let answers = burst(&api, &users(&id), &token, 3, 1)?;
    assert_eq!(answers.iter().map(|a| a.status).collect::<Vec<_>>(), vec![200, 200, 429]);
    Ok(())
}

fn logins_are_limited_per_address(_: &Ctx) -> Result<()> {
    let stack = Stack::start_with(&[("IP_LOGIN_PER_MINUTE", "5")])?;
    let api = Api::new(stack.edge_url());
    let email = unique_email("ip");
    expect(&api.signup(&email, GOOD_PASSWORD, Value::Null)?, 201)?;
    let login = || api.post("/api/v1/auth/login", None, &json!({"email": email, "password": GOOD_PASSWORD}));
    for expected_remaining in (0..5).rev() {
        let ok = login()?;
        expect(&ok, 200)?;
        assert_eq!(ok.header("ratelimit-policy").unwrap(), "\"ip-login\";q=5;w=60");
        assert_eq!(ok.remaining(), Some(expected_remaining));
    }
    let refused = login()?;
    expect_problem(&refused, 429, "rate-limited")?;
    ensure!(refused.header("retry-after").is_some());
    Ok(())
}
