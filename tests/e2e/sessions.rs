//! Sessions, refresh rotation and instant revocation.

use std::time::Duration;

use anyhow::{ensure, Result};
use e2e::api::{unique_email, Answer, GOOD_PASSWORD};
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    ("sessions::login_opens_a_listed_session", login_opens_a_listed_session),
    ("sessions::parallel_refreshes_share_one_new_pair", parallel_refreshes_share_one_new_pair),
    ("sessions::reuse_after_the_grace_period_ends_the_family", reuse_after_the_grace_period_ends_the_family),
    ("sessions::logout_takes_effect_on_the_next_request", logout_takes_effect_on_the_next_request),
    ("sessions::deleting_a_session_ends_it_at_once", deleting_a_session_ends_it_at_once),
    ("sessions::a_password_change_ends_every_other_session", a_password_change_ends_every_other_session),
    (
        "sessions::disabling_an_account_ends_its_sessions_at_once",
        disabling_an_account_ends_its_sessions_at_once,
    ),
    (
        "sessions::open_sessions_follow_a_changed_session_timeout",
        open_sessions_follow_a_changed_session_timeout,
    ),
];

fn login_with(ctx: &Ctx, email: &str, password: &str, device: &str) -> Result<Answer> {
    let answer = e2e::api::send(
        e2e::http::client()
            .post(ctx.api.url("/api/v1/auth/login"))
            .header("user-agent", format!("e2e-{device}"))
            .json(&json!({"email": email, "password": password})),
    )?;
    expect(&answer, 200)?;
    Ok(answer)
}

/// A new free user with one session: (id, email, login answer).
fn user(ctx: &Ctx) -> Result<(String, String, Answer)> {
    let email = unique_email("session");
    let created = ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?;
    expect(&created, 201)?;
    let login = login_with(ctx, &email, GOOD_PASSWORD, "laptop")?;
    Ok((created.str("id"), email, login))
}

fn refresh(ctx: &Ctx, token: &str) -> Result<Answer> {
    ctx.api.post("/api/v1/auth/refresh", None, &json!({ "refresh_token": token }))
}

fn login_opens_a_listed_session(ctx: &Ctx) -> Result<()> {
    let (id, _, login) = user(ctx)?;
    ensure!(login.str("refresh_token").starts_with(&format!("rt.{id}.")), "{}", login.body);
    assert_eq!(login.str("token_type"), "Bearer");
    let access = login.str("access_token");
    let listed = ctx.api.get(&format!("{}/sessions", users(&id)), Some(&access))?;
    expect(&listed, 200)?;
    let sessions = listed.body["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], login.body["session_id"]);
    // The device is the one the server issued a token for at this login.
    let device_id = login.str("device_token").split('.').nth(1).unwrap_or_default().to_owned();
    ensure!(device_id.len() == 32, "{}", login.body);
    assert_eq!(sessions[0]["device_id"], device_id);
    assert_eq!(sessions[0]["user_agent"], "e2e-laptop");
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(sessions[0]["idle_timeout_minutes"], 1440);
    // The token's claims name the session.
    let claims = ctx.api.get("/api/v1/auth/token", Some(&access))?;
    assert_eq!(claims.body["sid"], login.body["session_id"]);
    Ok(())
}

fn parallel_refreshes_share_one_new_pair(ctx: &Ctx) -> Result<()> {
    let (id, _, login) = user(ctx)?;
    let token = login.str("refresh_token");
    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10).map(|_| scope.spawn(|| refresh(ctx, &token))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Result<_>>()
    })?;
    for a in &answers {
        expect(a, 200)?;
    }
    let first = &answers[0].body;
    ensure!(first["refresh_token"] != login.body["refresh_token"], "the refresh token rotated");
    ensure!(first["access_token"] != login.body["access_token"], "a new access token");
    for a in &answers {
        assert_eq!(a.body["access_token"], first["access_token"], "one identical new pair");
        assert_eq!(a.body["refresh_token"], first["refresh_token"], "one identical new pair");
    }
    // The new pair works, and rotates in turn.
    expect(&ctx.api.get(&users(&id), Some(first["access_token"].as_str().unwrap()))?, 200)?;
    let next = refresh(ctx, first["refresh_token"].as_str().unwrap())?;
    expect(&next, 200)?;
    Ok(())
}

fn reuse_after_the_grace_period_ends_the_family(ctx: &Ctx) -> Result<()> {
    let (id, _, login) = user(ctx)?;
    let old = login.str("refresh_token");
    let rotated = refresh(ctx, &old)?;
    expect(&rotated, 200)?;
    let new_access = rotated.str("access_token");
    let new_refresh = rotated.str("refresh_token");
    // The shared stack's grace window is 2 s (REFRESH_REUSE_GRACE_SECS); wait past it.
    std::thread::sleep(Duration::from_millis(2_500));
    let reuse = refresh(ctx, &old)?;
    expect_problem(&reuse, 401, "unauthenticated")?;
    assert_eq!(
        reuse.str("detail"),
        "the refresh token was already used; the session has been ended to protect the account"
    );
    // Every token of the family is dead: the new access token, the new refresh token, the old one.
    let read = ctx.api.get(&users(&id), Some(&new_access))?;
    expect_problem(&read, 401, "unauthenticated")?;
    assert_eq!(read.str("detail"), "the session was ended (refresh token reuse)");
    expect_problem(&refresh(ctx, &new_refresh)?, 401, "unauthenticated")?;
    expect_problem(&ctx.api.get(&users(&id), Some(&login.str("access_token")))?, 401, "unauthenticated")?;
    Ok(())
}

fn logout_takes_effect_on_the_next_request(ctx: &Ctx) -> Result<()> {
    let (id, _, login) = user(ctx)?;
    let access = login.str("access_token");
    expect(&ctx.api.get(&users(&id), Some(&access))?, 200)?;
    let out = ctx.api.post("/api/v1/auth/logout", Some(&access), &json!({}))?;
    expect(&out, 204)?;
    let after = ctx.api.get(&users(&id), Some(&access))?;
    expect_problem(&after, 401, "unauthenticated")?;
    assert_eq!(after.str("detail"), "the session was ended (logout)");
    expect_problem(&refresh(ctx, &login.str("refresh_token"))?, 401, "unauthenticated")?;
    Ok(())
}

fn deleting_a_session_ends_it_at_once(ctx: &Ctx) -> Result<()> {
    let (id, email, laptop) = user(ctx)?;
    let phone = login_with(ctx, &email, GOOD_PASSWORD, "phone")?;
    let laptop_token = laptop.str("access_token");
    let listed = ctx.api.get(&format!("{}/sessions", users(&id)), Some(&laptop_token))?;
    assert_eq!(listed.body["sessions"].as_array().unwrap().len(), 2);
    let path = format!("{}/sessions/{}", users(&id), phone.str("session_id"));
    let deleted = e2e::api::send(e2e::http::client().delete(ctx.api.url(&path)).bearer_auth(&laptop_token))?;
    expect(&deleted, 204)?;
    expect_problem(&ctx.api.get(&users(&id), Some(&phone.str("access_token")))?, 401, "unauthenticated")?;
    expect(&ctx.api.get(&users(&id), Some(&laptop_token))?, 200)?;
    let again = e2e::api::send(e2e::http::client().delete(ctx.api.url(&path)).bearer_auth(&laptop_token))?;
    expect(&again, 204)?; // already ended: deleting is idempotent
    let unknown = format!("{}/sessions/ses_nope", users(&id));
    let missing =
        e2e::api::send(e2e::http::client().delete(ctx.api.url(&unknown)).bearer_auth(&laptop_token))?;
    expect_problem(&missing, 404, "not-found")?;
    Ok(())
}

fn a_password_change_ends_every_other_session(ctx: &Ctx) -> Result<()> {
    let (id, email, laptop) = user(ctx)?;
    let phone = login_with(ctx, &email, GOOD_PASSWORD, "phone")?;
    let laptop_token = laptop.str("access_token");
    let path = format!("{}/password", users(&id));
    let put = |body: Value| {
        e2e::api::send(e2e::http::client().put(ctx.api.url(&path)).bearer_auth(&laptop_token).json(&body))
    };
    let wrong =
        put(json!({"current_password": "not my password!", "new_password": "a brand new passphrase"}))?;
    expect_problem(&wrong, 401, "unauthenticated")?;
    let weak = put(json!({"current_password": GOOD_PASSWORD, "new_password": "short"}))?;
    expect_problem(&weak, 400, "validation-failed")?;
    let changed = put(json!({"current_password": GOOD_PASSWORD, "new_password": "a brand new passphrase"}))?;
    expect(&changed, 200)?;
    assert_eq!(changed.body["sessions_ended"], 1);
    expect_problem(&ctx.api.get(&users(&id), Some(&phone.str("access_token")))?, 401, "unauthenticated")?;
    expect(&ctx.api.get(&users(&id), Some(&laptop_token))?, 200)?;
    let old =
        ctx.api.post("/api/v1/auth/login", None, &json!({"email": email, "password": GOOD_PASSWORD}))?;
    expect_problem(&old, 401, "unauthenticated")?;
    login_with(ctx, &email, "a brand new passphrase", "laptop")?;
    Ok(())
}

fn disabling_an_account_ends_its_sessions_at_once(ctx: &Ctx) -> Result<()> {
    let (id, email, login) = user(ctx)?;
    let token = login.str("access_token");
    let path = |op: &str| format!("{}/{op}", users(&id));
    expect_problem(&ctx.api.post(&path("disable"), Some(&token), &json!({}))?, 403, "forbidden")?;
    let disabled = ctx.api.post(&path("disable"), Some(&ctx.admin_token), &json!({}))?;
    expect(&disabled, 200)?;
    assert_eq!(disabled.body["sessions_ended"], 1);
    let after = ctx.api.get(&users(&id), Some(&token))?;
    expect_problem(&after, 401, "unauthenticated")?;
    assert_eq!(after.str("detail"), "the session was ended (account disabled)");
    let refused =
        ctx.api.post("/api/v1/auth/login", None, &json!({"email": email, "password": GOOD_PASSWORD}))?;
    expect_problem(&refused, 401, "unauthenticated")?;
    expect(&ctx.api.post(&path("enable"), Some(&ctx.admin_token), &json!({}))?, 200)?;
    login_with(ctx, &email, GOOD_PASSWORD, "laptop")?;
    Ok(())
}

fn open_sessions_follow_a_changed_session_timeout(ctx: &Ctx) -> Result<()> {
    let (id, email, laptop) = user(ctx)?;
    let phone = login_with(ctx, &email, GOOD_PASSWORD, "phone")?;
    let access = laptop.str("access_token");
    let timeouts = |token: &str| -> Result<Vec<Value>> {
        let listed = ctx.api.get(&format!("{}/sessions", users(&id)), Some(token))?;
        expect(&listed, 200)?;
        Ok(listed.body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["idle_timeout_minutes"].clone())
            .collect())
    };
    assert_eq!(timeouts(&access)?, vec![json!(1440), json!(1440)]);
    // Both open sessions take the new timeout at once, not only the next login's.
    let patch = json!({"security_settings": {"session_timeout_minutes": 30}});
    expect(&ctx.api.patch(&users(&id), &access, &patch)?, 200)?;
    assert_eq!(timeouts(&access)?, vec![json!(30), json!(30)]);
    assert_eq!(timeouts(&phone.str("access_token"))?, vec![json!(30), json!(30)]);
    Ok(())
}
