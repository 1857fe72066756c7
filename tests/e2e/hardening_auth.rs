//! Security hardening of the login and the second factor: an enrolled factor is always asked,
//! weakening changes need a fresh proof, tiers and roles have floors, counters cannot be
//! raced, challenges end with the account's credentials, nothing is revealed before the second
//! factor, devices are server-issued tokens, recovery codes are long and keyed; and the
//! password hashing is bounded under a flood, with sessions capped per user.

use std::time::Instant;

use anyhow::{ensure, Result};
use domain::totp;
use e2e::api::{send, unique_email, Answer, GOOD_PASSWORD};
use e2e::http::{client, now, SignedCall};
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "hardening_auth::an_enrolled_factor_is_asked_at_every_password_login",
        an_enrolled_factor_is_asked_at_every_password_login,
    ),
    (
        "hardening_auth::weakening_security_settings_needs_a_fresh_proof",
        weakening_security_settings_needs_a_fresh_proof,
    ),
    (
        "hardening_auth::removing_a_factor_needs_the_password_and_a_code",
        removing_a_factor_needs_the_password_and_a_code,
    ),
    ("hardening_auth::a_client_cannot_vouch_for_its_own_step_up", a_client_cannot_vouch_for_its_own_step_up),
    (
        "hardening_auth::enterprise_vip_and_admin_accounts_have_security_floors",
        enterprise_vip_and_admin_accounts_have_security_floors,
    ),
    (
        "hardening_auth::wrong_codes_count_per_account_across_challenges",
        wrong_codes_count_per_account_across_challenges,
    ),
    (
        "hardening_auth::parallel_wrong_passwords_cannot_race_the_softlock",
        parallel_wrong_passwords_cannot_race_the_softlock,
    ),
    (
        "hardening_auth::failed_current_password_checks_count_toward_the_softlock",
        failed_current_password_checks_count_toward_the_softlock,
    ),
    (
        "hardening_auth::disabling_or_a_password_change_ends_pending_challenges",
        disabling_or_a_password_change_ends_pending_challenges,
    ),
    (
        "hardening_auth::the_origin_refuses_to_act_for_a_disabled_account",
        the_origin_refuses_to_act_for_a_disabled_account,
    ),
    ("hardening_auth::a_known_device_is_a_server_issued_token", a_known_device_is_a_server_issued_token),
    (
        "hardening_auth::recovery_codes_carry_80_bits_and_are_stored_keyed",
        recovery_codes_carry_80_bits_and_are_stored_keyed,
    ),
    (
        "hardening_auth::a_flood_of_logins_is_answered_in_bounded_memory",
        a_flood_of_logins_is_answered_in_bounded_memory,
    ),
    (
        "hardening_auth::two_hundred_logins_stay_flat_and_keep_sessions_at_the_cap",
        two_hundred_logins_stay_flat_and_keep_sessions_at_the_cap,
    ),
];

fn login_from(
    ctx: &Ctx,
    email: &str,
    password: &str,
    ip: &str,
    device_token: Option<&str>,
) -> Result<Answer> {
    let mut body = json!({ "email": email, "password": password });
    if let Some(d) = device_token {
        body["device_token"] = json!(d);
    }
    send(client().post(ctx.api.url("/api/v1/auth/login")).header("cf-connecting-ip", ip).json(&body))
}

fn mfa(ctx: &Ctx, challenge: &str, method: &str, code: &str) -> Result<Answer> {
    ctx.api.post(
        "/api/v1/auth/mfa",
        None,
        &json!({ "challenge_id": challenge, "method": method, "code": code }),
    )
}

/// A fresh free user, logged in: (id, email, login answer).
fn fresh_user(ctx: &Ctx, ip: &str) -> Result<(String, String, Answer)> {
    let email = unique_email("harden");
    let created = ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?;
    expect(&created, 201)?;
    let login = login_from(ctx, &email, GOOD_PASSWORD, ip, None)?;
    expect(&login, 200)?;
    Ok((created.str("id"), email, login))
}

/// Enrols an authenticator: (secret, recovery codes). The next valid code is for the next step.
fn enrol_totp(ctx: &Ctx, id: &str, token: &str) -> Result<(Vec<u8>, Vec<String>)> {
    let path = format!("{}/mfa/totp", users(id));
    let enrol = ctx.api.post(&path, Some(token), &json!({ "current_password": GOOD_PASSWORD }))?;
    expect(&enrol, 201)?;
    let secret = data_encoding::BASE32_NOPAD.decode(enrol.str("secret").as_bytes())?;
    let confirmed = ctx.api.post(
        &format!("{path}/confirm"),
        Some(token),
        &json!({ "code": totp::code_at(&secret, now()) }),
    )?;
    expect(&confirmed, 200)?;
    let codes = confirmed.body["recovery_codes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok((secret, codes))
}

/// The authenticator's code for the step after the current one: the enrolment used the current
/// step, and a step is accepted once, so this is the first code a login can use (once per
/// enrolment: the next would be outside the accepted window until time moves on).
fn next_code(secret: &[u8]) -> String {
    totp::code_at_step(secret, totp::step_of(now()) + 1, totp::DIGITS)
}

fn an_enrolled_factor_is_asked_at_every_password_login(ctx: &Ctx) -> Result<()> {
    let (id, email, login) = fresh_user(ctx, "198.51.100.101")?;
    let (secret, _) = enrol_totp(ctx, &id, &login.str("access_token"))?;
    // No require_mfa, a known network, nothing risky: the enrolled factor is asked all the same.
    let again = login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.101", Some(&login.str("device_token")))?;
    expect_problem(&again, 401, "mfa-required")?;
    assert_eq!(again.body["methods"], json!(["totp", "recovery_code"]));
    // Before the second factor, nothing but the challenge and the methods.
    let mut keys: Vec<&String> = again.body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    keys.sort();
    assert_eq!(keys, vec!["challenge_id", "detail", "methods", "mfa_required", "status", "title", "type"]);
    expect(&mfa(ctx, &again.str("challenge_id"), "totp", &next_code(&secret))?, 200)?;
    Ok(())
}

fn weakening_security_settings_needs_a_fresh_proof(ctx: &Ctx) -> Result<()> {
    let (id, _, login) = fresh_user(ctx, "198.51.100.102")?;
    let token = login.str("access_token");
    // Strengthening needs nothing more than the token.
    let strengthen = json!({"security_settings": {"require_mfa": true, "session_timeout_minutes": 60}});
    expect(&ctx.api.patch(&users(&id), &token, &strengthen)?, 200)?;
    // Weakening with the bearer token alone is refused, naming what it weakens.
    let weaken = json!({"security_settings": {"require_mfa": false}});
    let refused = ctx.api.patch(&users(&id), &token, &weaken)?;
    expect_problem(&refused, 403, "step-up-required")?;
    assert_eq!(refused.body["weakened"], json!(["require_mfa"]));
    for patch in [
        json!({"security_settings": {"session_timeout_minutes": 600}}),
        json!({"security_settings": {"risk_score_threshold": 0.95}}),
        json!({"security_settings": {"anomaly_detection_enabled": false}}),
        json!({"security_settings": {"mfa_methods": ["email"]}}),
    ] {
        expect_problem(&ctx.api.patch(&users(&id), &token, &patch)?, 403, "step-up-required")?;
    }
    let view = ctx.api.get(&users(&id), Some(&token))?;
    assert_eq!(view.body["security_settings"]["require_mfa"], true, "nothing was changed");

    // A step-up with a wrong password is refused; with the right one (no factor enrolled: the
    // password is the proof) the session may weaken settings for five minutes.
    let step_up = |body: Value| ctx.api.post("/api/v1/auth/step-up", Some(&token), &body);
    expect_problem(&step_up(json!({"current_password": "not my password at all"}))?, 401, "unauthenticated")?;
    let stepped = step_up(json!({"current_password": GOOD_PASSWORD}))?;
    expect(&stepped, 200)?;
    assert_eq!(stepped.body["valid_for_secs"], 300);
    let done = ctx.api.patch(&users(&id), &token, &weaken)?;
    expect(&done, 200)?;
    assert_eq!(done.body["security_settings"]["require_mfa"], false);

    // With a factor enrolled, the step-up needs a code from it too (here a recovery code: the
    // authenticator's next code was spent on the login).
    let (secret, recovery) = enrol_totp(ctx, &id, &token)?;
    let fresh = mfa_login(ctx, &id, &secret)?;
    let step_up = |body: Value| ctx.api.post("/api/v1/auth/step-up", Some(&fresh), &body);
    expect_problem(&step_up(json!({"current_password": GOOD_PASSWORD}))?, 403, "step-up-required")?;
    let proof = json!({"current_password": GOOD_PASSWORD, "method": "recovery_code", "code": recovery[0]});
    expect(&step_up(proof)?, 200)?;
    let relaxed = json!({"security_settings": {"session_timeout_minutes": 1440}});
    expect(&ctx.api.patch(&users(&id), &fresh, &relaxed)?, 200)?;
    Ok(())
}

/// Logs in a user whose authenticator is enrolled (password, then a TOTP code): the access token.
fn mfa_login(ctx: &Ctx, id: &str, secret: &[u8]) -> Result<String> {
    let view = ctx.api.get(&users(id), Some(&ctx.admin_token))?;
    let email = view.str("email");
    let first = login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.150", None)?;
    expect_problem(&first, 401, "mfa-required")?;
    let done = mfa(ctx, &first.str("challenge_id"), "totp", &next_code(secret))?;
    expect(&done, 200)?;
    Ok(done.str("access_token"))
}

fn removing_a_factor_needs_the_password_and_a_code(ctx: &Ctx) -> Result<()> {
    let (id, _, login) = fresh_user(ctx, "198.51.100.103")?;
    let (secret, recovery) = enrol_totp(ctx, &id, &login.str("access_token"))?;
    let token = mfa_login(ctx, &id, &secret)?;
    let path = format!("{}/mfa/totp", users(&id));
    expect_problem(&ctx.api.delete_with(&path, &token, &json!({}))?, 403, "step-up-required")?;
    let password_only = ctx.api.delete_with(&path, &token, &json!({"current_password": GOOD_PASSWORD}))?;
    expect_problem(&password_only, 403, "step-up-required")?;
    assert_eq!(password_only.body["methods"], json!(["totp", "recovery_code"]));
    let wrong = ctx.api.delete_with(
        &path,
        &token,
        &json!({"current_password": GOOD_PASSWORD, "method": "totp", "code": "000000"}),
    )?;
    expect_problem(&wrong, 401, "unauthenticated")?;
    // The authenticator's next code went into the login: prove with a recovery code.
    let proof = json!({"current_password": GOOD_PASSWORD, "method": "recovery_code", "code": recovery[1]});
    let removed = ctx.api.delete_with(&path, &token, &proof)?;
    assert_eq!(removed.status, 204, "{}", removed.body);
    Ok(())
}

/// The step-up time the origin trusts is the one the edge read from the session, never one
/// the client wrote into its body: a stolen access token alone cannot remove a factor.
fn a_client_cannot_vouch_for_its_own_step_up(ctx: &Ctx) -> Result<()> {
    let (id, _, login) = fresh_user(ctx, "198.51.100.107")?;
    let (secret, _) = enrol_totp(ctx, &id, &login.str("access_token"))?;
    let token = mfa_login(ctx, &id, &secret)?;
    let forged = json!({"step_up_at": e2e::http::now().0});
    for factor in ["totp", "sms"] {
        let path = format!("{}/mfa/{factor}", users(&id));
        let answer = ctx.api.delete_with(&path, &token, &forged)?;
        expect_problem(&answer, 403, "step-up-required").map_err(|e| e.context(factor))?;
    }
    // The factor is still there: the next password login still asks for it.
    let view = ctx.api.get(&users(&id), Some(&ctx.admin_token))?;
    let again = login_from(ctx, &view.str("email"), GOOD_PASSWORD, "198.51.100.107", None)?;
    expect_problem(&again, 401, "mfa-required")?;
    Ok(())
}

fn enterprise_vip_and_admin_accounts_have_security_floors(ctx: &Ctx) -> Result<()> {
    // An upgrade into enterprise turns require_mfa on.
    let (id, email, _) = fresh_user(ctx, "198.51.100.104")?;
    let upgraded = ctx.api.post(
        &format!("{}/upgrade", users(&id)),
        Some(&ctx.admin_token),
        &json!({"tier": "enterprise"}),
    )?;
    expect(&upgraded, 200)?;
    assert_eq!(upgraded.body["security_settings"]["require_mfa"], true, "{}", upgraded.body);
    // And it cannot be turned off, even with a fresh step-up: 403 naming the rule.
    let token = ctx.stack.login_with_email_code(&ctx.api, &email, GOOD_PASSWORD)?;
    expect(
        &ctx.api.post("/api/v1/auth/step-up", Some(&token), &json!({"current_password": GOOD_PASSWORD}))?,
        200,
    )?;
    let off = ctx.api.patch(&users(&id), &token, &json!({"security_settings": {"require_mfa": false}}))?;
    expect_problem(&off, 403, "forbidden")?;
    assert_eq!(off.body["errors"][0]["rule"], "mfa-required-by-tier-or-role", "{}", off.body);
    // A VIP account too.
    let vip =
        ctx.api.post(&format!("{}/upgrade", users(&id)), Some(&ctx.admin_token), &json!({"tier": "vip"}))?;
    expect(&vip, 200)?;
    let off = ctx.api.patch(&users(&id), &token, &json!({"security_settings": {"require_mfa": false}}))?;
    expect_problem(&off, 403, "forbidden")?;

    // An admin's sessions: idle at most 30 minutes, at most 12 hours in all.
    let sessions = ctx.api.get(&format!("{}/sessions", users(&ctx.admin_id)), Some(&ctx.admin_token))?;
    expect(&sessions, 200)?;
    let current = sessions.body["sessions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["current"] == true).cloned())
        .unwrap_or(Value::Null);
    assert_eq!(current["idle_timeout_minutes"], 30, "{current}");
    let lifetime = current["expires_at"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(current["created_at"].as_u64().unwrap_or(0));
    assert_eq!(lifetime, 12 * 3_600_000, "{current}");
    // And the admin cannot lengthen them beyond the floor.
    let admin_view = ctx.api.get(&users(&ctx.admin_id), Some(&ctx.admin_token))?;
    assert_eq!(admin_view.body["security_settings"]["session_timeout_minutes"], 30);
    Ok(())
}

fn wrong_codes_count_per_account_across_challenges(ctx: &Ctx) -> Result<()> {
    let (id, email, login) = fresh_user(ctx, "198.51.100.105")?;
    let (secret, _) = enrol_totp(ctx, &id, &login.str("access_token"))?;
    let device = login.str("device_token");
    let mut statuses = Vec::new();
    // Three wrong codes per challenge, each challenge from a fresh (correct) password login:
    // a new challenge brings no new tries, and the correct password resets nothing.
    while statuses.len() < 12 {
        let challenge = login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.105", Some(&device))?;
        expect_problem(&challenge, 401, "mfa-required")?;
        for _ in 0..3 {
            statuses.push(mfa(ctx, &challenge.str("challenge_id"), "totp", "000000")?.status);
        }
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(
        &statuses[10..],
        &[429, 429],
        "the eleventh wrong code in the hour is softlocked: {statuses:?}"
    );
    // Even the right code waits now, on a fresh challenge.
    let challenge = login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.105", Some(&device))?;
    let locked = mfa(ctx, &challenge.str("challenge_id"), "totp", &next_code(&secret))?;
    expect_problem(&locked, 429, "rate-limited")?;
    let wait: u64 = locked.header("retry-after").unwrap_or_default().parse()?;
    ensure!(wait > 3000 && wait <= 3600, "the second factor waits out the hour: {wait}");
    Ok(())
}

fn parallel_wrong_passwords_cannot_race_the_softlock(ctx: &Ctx) -> Result<()> {
    let (_, email, _) = fresh_user(ctx, "198.51.100.106")?;
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..30)
            .map(|_| scope.spawn(|| login_from(ctx, &email, "thirty guesses at once", "203.0.113.106", None)))
            .collect();
        handles.into_iter().map(|h| h.join().map_or(0, |a| a.map_or(0, |a| a.status))).collect()
    });
    let checked = statuses.iter().filter(|&&s| s == 401).count();
    let held = statuses.iter().filter(|&&s| s == 429).count();
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    eprintln!("30 parallel wrong passwords: {checked} checked, {held} softlocked, {busy} told to retry (hashing pool full)");
    // Every attempt is counted before its password is checked: three free failures and the
    // fourth that starts the pause are checked, the others wait (429) — or, when more arrive at
    // once than the hashing pool takes, are told to retry (503) before anything is counted —
    // however they interleave.
    assert_eq!(checked, 4, "{statuses:?}");
    assert_eq!(held + busy, 26, "{statuses:?}");
    ensure!(held >= 1, "the softlock held some back: {statuses:?}");
    Ok(())
}

fn failed_current_password_checks_count_toward_the_softlock(ctx: &Ctx) -> Result<()> {
    let (id, email, login) = fresh_user(ctx, "198.51.100.107")?;
    let token = login.str("access_token");
    let path = format!("{}/password", users(&id));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let body = json!({"current_password": "a wrong current password", "new_password": "another good passphrase 1"});
        statuses.push(send(client().put(ctx.api.url(&path)).bearer_auth(&token).json(&body))?.status);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 429], "password-change guesses count like logins");
    // The account's logins are slowed by them too.
    expect_problem(&login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.107", None)?, 429, "rate-limited")?;
    Ok(())
}

fn disabling_or_a_password_change_ends_pending_challenges(ctx: &Ctx) -> Result<()> {
    let (id, email, login) = fresh_user(ctx, "198.51.100.108")?;
    let token = login.str("access_token");
    let (secret, _) = enrol_totp(ctx, &id, &token)?;

    // A password change ends the challenge made under the old password.
    let pending = login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.108", None)?;
    expect_problem(&pending, 401, "mfa-required")?;
    let new_password = "a brand new passphrase 42";
    let changed = send(
        client()
            .put(ctx.api.url(&format!("{}/password", users(&id))))
            .bearer_auth(&token)
            .json(&json!({"current_password": GOOD_PASSWORD, "new_password": new_password})),
    )?;
    expect(&changed, 200)?;
    // (Any code: the challenge is refused before its code is looked at.)
    let late = mfa(ctx, &pending.str("challenge_id"), "totp", "000000")?;
    expect_problem(&late, 401, "unauthenticated")?;

    // Disabling ends it too, even if the account is enabled again before the code comes.
    let pending = login_from(ctx, &email, new_password, "198.51.100.108", None)?;
    expect_problem(&pending, 401, "mfa-required")?;
    expect(&ctx.api.post(&format!("{}/disable", users(&id)), Some(&ctx.admin_token), &json!({}))?, 200)?;
    let refused = mfa(ctx, &pending.str("challenge_id"), "totp", "000000")?;
    expect_problem(&refused, 401, "unauthenticated")?;
    expect(&ctx.api.post(&format!("{}/enable", users(&id)), Some(&ctx.admin_token), &json!({}))?, 200)?;
    // Enabling the account again does not revive the challenge; a new login works.
    let revived = mfa(ctx, &pending.str("challenge_id"), "totp", "000000")?;
    expect_problem(&revived, 401, "unauthenticated")?;
    let fresh = login_from(ctx, &email, new_password, "198.51.100.108", None)?;
    expect(&mfa(ctx, &fresh.str("challenge_id"), "totp", &next_code(&secret))?, 200)?;
    Ok(())
}

fn the_origin_refuses_to_act_for_a_disabled_account(ctx: &Ctx) -> Result<()> {
    let (id, _, _) = fresh_user(ctx, "198.51.100.109")?;
    let secret = ctx.stack.secrets.shared_secret()?;
    let mut call = SignedCall::new("GET", &format!("/internal/users/{id}"), b"");
    call.actor = format!("user:{id}:user");
    expect_status(call.send(&ctx.stack.origin_url(), &secret)?, 200)?;
    expect(&ctx.api.post(&format!("{}/disable", users(&id)), Some(&ctx.admin_token), &json!({}))?, 200)?;
    // A request signed as the disabled user (say, a token not yet expired) acts for nobody.
    let mut call = SignedCall::new("GET", &format!("/internal/users/{id}"), b"");
    call.actor = format!("user:{id}:user");
    expect_status(call.send(&ctx.stack.origin_url(), &secret)?, 403)?;
    Ok(())
}

fn expect_status(response: reqwest::blocking::Response, status: u16) -> Result<()> {
    let got = response.status().as_u16();
    let body = response.text().unwrap_or_default();
    ensure!(got == status, "expected {status}, got {got}: {body}");
    Ok(())
}

fn a_known_device_is_a_server_issued_token(ctx: &Ctx) -> Result<()> {
    let (_, email, login) = fresh_user(ctx, "198.51.100.110")?;
    let device = login.str("device_token");
    ensure!(device.starts_with("dt1.") && device.len() > 60, "{device}");
    // Failures from elsewhere pause the account...
    for _ in 0..4 {
        login_from(ctx, &email, "somebody else guessing", "203.0.113.110", None)?;
    }
    expect_problem(&login_from(ctx, &email, GOOD_PASSWORD, "203.0.113.111", None)?, 429, "rate-limited")?;
    // ...a client-made device string, or a token with a forged signature, is no known device...
    let parts: Vec<&str> = device.split('.').collect();
    let forged = format!("dt1.{}.{}", parts[1], "0".repeat(parts[2].len()));
    for fake in ["my-laptop", forged.as_str()] {
        expect_problem(
            &login_from(ctx, &email, GOOD_PASSWORD, "203.0.113.112", Some(fake))?,
            429,
            "rate-limited",
        )?;
    }
    // ...while the device the server issued a token to gets in.
    let owner = login_from(ctx, &email, GOOD_PASSWORD, "203.0.113.113", Some(&device))?;
    expect(&owner, 200)?;
    assert_eq!(owner.str("device_token"), device, "the same device keeps its token");
    Ok(())
}

fn recovery_codes_carry_80_bits_and_are_stored_keyed(ctx: &Ctx) -> Result<()> {
    let (id, email, login) = fresh_user(ctx, "198.51.100.111")?;
    let (_, codes) = enrol_totp(ctx, &id, &login.str("access_token"))?;
    assert_eq!(codes.len(), 10);
    for code in &codes {
        let raw = code.replace('-', "");
        assert_eq!(raw.len(), 16, "{code}");
        assert_eq!(data_encoding::BASE32_NOPAD.decode(raw.as_bytes())?.len() * 8, 80, "{code}");
    }
    // Neither the code nor its plain SHA-256 is in the database.
    for code in &codes {
        let raw = code.replace('-', "");
        let plain_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes()));
        for needle in [raw.as_bytes(), plain_hash.as_bytes()] {
            let found = ctx.stack.stored_in_clear(needle)?;
            ensure!(found.is_none(), "{code} is stored guessably in {found:?}");
        }
    }
    // And a code still signs in, once.
    let challenge =
        login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.111", Some(&login.str("device_token")))?;
    expect(&mfa(ctx, &challenge.str("challenge_id"), "recovery_code", &codes[3])?, 200)?;
    Ok(())
}

/// The origin's resident memory now, in MiB (from `/proc`).
fn origin_rss_mib(ctx: &Ctx) -> Option<u64> {
    let pid = ctx.stack.origin.as_ref()?.pgid()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn a_flood_of_logins_is_answered_in_bounded_memory(ctx: &Ctx) -> Result<()> {
    let (_, email, _) = fresh_user(ctx, "198.51.100.112")?;
    let before = origin_rss_mib(ctx).unwrap_or(0);
    // 200 logins at once, each from its own address, for addresses nobody has: each costs one
    // argon2 check (the dummy hash), which is what a flood costs the origin.
    let answers: Vec<Option<Answer>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..200)
            .map(|i| {
                scope.spawn(move || {
                    login_from(
                        ctx,
                        &unique_email("flood"),
                        "flooding password",
                        &format!("2001:db8:{i:x}::1"),
                        None,
                    )
                    .ok()
                })
            })
            .collect();
        // Meanwhile, the owner logs in from their own address, retrying when told to.
        let mut good = None;
        for _ in 0..100 {
            let a = login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.112", None).ok();
            if a.as_ref().is_some_and(|a| a.status == 503) {
                std::thread::sleep(std::time::Duration::from_millis(200));
                continue;
            }
            good = a;
            break;
        }
        assert_eq!(good.map(|a| a.status), Some(200), "the owner got in during the flood");
        handles.into_iter().map(|h| h.join().ok().flatten()).collect()
    });
    let after = origin_rss_mib(ctx).unwrap_or(0);
    let answered = answers.iter().flatten().count();
    let wrong = answers.iter().flatten().filter(|a| a.status == 401).count();
    let busy: Vec<&Answer> = answers.iter().flatten().filter(|a| a.status == 503).collect();
    eprintln!(
        "flood of 200 logins: {answered} answered ({wrong} checked and refused, {} told to retry); origin RSS {before} → {after} MiB",
        busy.len()
    );
    assert_eq!(answered, 200, "every login is answered");
    assert_eq!(wrong + busy.len(), 200, "each is refused or told to retry, nothing else");
    for a in &busy {
        expect_problem(a, 503, "overloaded")?;
        ensure!(
            a.header("retry-after").is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)),
            "{:?}",
            a.headers
        );
    }
    ensure!(after < 512, "the origin's memory stays bounded: {after} MiB");
    Ok(())
}

fn two_hundred_logins_stay_flat_and_keep_sessions_at_the_cap(ctx: &Ctx) -> Result<()> {
    let (id, email, first) = fresh_user(ctx, "198.51.100.113")?;
    let device = first.str("device_token");
    let mut times = Vec::new();
    let mut last = first;
    for _ in 0..200 {
        let started = Instant::now();
        last = login_from(ctx, &email, GOOD_PASSWORD, "198.51.100.113", Some(&device))?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        expect(&last, 200)?;
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // From the 50th login on, the risk history read is full (50 entries): compare two windows
    // past it, so only what would grow with the open or ended sessions can make a difference.
    let (early, late) = (median(&times[60..100]), median(&times[160..]));
    eprintln!("200 logins on one account: median {early:.1} ms for logins 61-100, {late:.1} ms for 161-200");
    ensure!(late < early * 1.5 + 5.0, "per-login time grows with the sessions: {early:.1} → {late:.1} ms");
    let listed = ctx.api.get(&format!("{}/sessions", users(&id)), Some(&last.str("access_token")))?;
    expect(&listed, 200)?;
    assert_eq!(
        listed.body["sessions"].as_array().map(Vec::len),
        Some(5),
        "the free tier's cap of open sessions"
    );
    assert_eq!(last.body["session_id"], listed.body["sessions"][4]["id"], "the newest is kept");
    // The ended ones are security events the user can read (they travel through the queue).
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events =
            ctx.api.get(&format!("{}/security-events", users(&id)), Some(&last.str("access_token")))?;
        let evicted = events.body["events"]
            .as_array()
            .map(|a| a.iter().filter(|e| e["kind"] == "session_evicted").count())
            .unwrap_or(0);
        if evicted > 0 {
            break;
        }
        ensure!(Instant::now() < deadline, "no session_evicted event: {}", events.body);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    Ok(())
}
