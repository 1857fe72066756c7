//! Account protection: TOTP, risk-based step-up, softlock, and answers that do not tell an
//! unknown email from a wrong password.

use std::time::Instant;

use anyhow::{ensure, Result};
use domain::time::UnixMillis;
use domain::totp;
use e2e::api::{send, unique_email, Answer, GOOD_PASSWORD};
use e2e::http::{client, now};
use serde_json::{json, Value};

use crate::accounts::{assert_not_stored_in_clear, expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "protection::totp_enrolment_and_login_with_a_code_used_once",
        totp_enrolment_and_login_with_a_code_used_once,
    ),
    (
        "protection::a_risky_login_steps_up_and_a_known_device_does_not",
        a_risky_login_steps_up_and_a_known_device_does_not,
    ),
    (
        "protection::bad_passwords_are_slowed_but_the_owner_gets_in",
        bad_passwords_are_slowed_but_the_owner_gets_in,
    ),
    (
        "protection::unknown_email_and_wrong_password_take_the_same_time",
        unknown_email_and_wrong_password_take_the_same_time,
    ),
    (
        "protection::required_mfa_without_an_enrolled_factor_asks_for_an_email_code",
        required_mfa_without_an_enrolled_factor_asks_for_an_email_code,
    ),
    (
        "protection::an_email_change_needs_the_password_and_a_code_from_the_new_address",
        an_email_change_needs_the_password_and_a_code_from_the_new_address,
    ),
    ("protection::sms_codes_work_once_the_number_is_confirmed", sms_codes_work_once_the_number_is_confirmed),
];

fn login(
    ctx: &Ctx,
    email: &str,
    password: &str,
    device_token: Option<&str>,
    ip: &str,
    agent: &str,
) -> Result<Answer> {
    let mut body = json!({ "email": email, "password": password });
    if let Some(d) = device_token {
        body["device_token"] = json!(d);
    }
    send(
        client()
            .post(ctx.api.url("/api/v1/auth/login"))
            .header("cf-connecting-ip", ip)
            .header("user-agent", agent)
            .json(&body),
    )
}

fn mfa(ctx: &Ctx, challenge: &str, method: &str, code: &str) -> Result<Answer> {
    ctx.api.post(
        "/api/v1/auth/mfa",
        None,
        &json!({ "challenge_id": challenge, "method": method, "code": code }),
    )
}

/// A premium user (whose defaults offer email codes) and their first login: (id, email, token,
/// the device token that login returned).
fn premium(ctx: &Ctx, ip: &str) -> Result<(String, String, String, String)> {
    let email = unique_email("protect");
    let created = ctx.api.post(
        "/api/v1/users",
        Some(&ctx.admin_token),
        &json!({"email": email, "password": GOOD_PASSWORD, "tier": "premium"}),
    )?;
    expect(&created, 201)?;
    let first = login(ctx, &email, GOOD_PASSWORD, None, ip, "app/1.0")?;
    expect(&first, 200)?;
    let device = first.str("device_token");
    ensure!(device.starts_with("dt1."), "a login answers a device token: {}", first.body);
    Ok((created.str("id"), email, first.str("access_token"), device))
}

fn totp_enrolment_and_login_with_a_code_used_once(ctx: &Ctx) -> Result<()> {
    let (id, email, token, phone) = premium(ctx, "198.51.100.10")?;
    let phone = Some(phone.as_str());
    let path = format!("{}/mfa/totp", users(&id));
    // Enrolment needs a recent authentication: the current password.
    let refused = ctx.api.post(&path, Some(&token), &json!({"current_password": "wrong password!!"}))?;
    expect_problem(&refused, 401, "unauthenticated")?;
    let enrol = ctx.api.post(&path, Some(&token), &json!({ "current_password": GOOD_PASSWORD }))?;
    expect(&enrol, 201)?;
    ensure!(enrol.str("otpauth_uri").starts_with("otpauth://totp/Music%20AI:"), "{}", enrol.body);
    let secret = data_encoding::BASE32_NOPAD.decode(enrol.str("secret").as_bytes())?;
    let confirmed = ctx.api.post(
        &format!("{path}/confirm"),
        Some(&token),
        &json!({ "code": totp::code_at(&secret, now()) }),
    )?;
    expect(&confirmed, 200)?;
    let recovery: Vec<String> = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    // The account now asks for the second factor at every login.
    let patch = json!({"security_settings": {"require_mfa": true, "mfa_methods": ["authenticator"]}});
    expect(&ctx.api.put(&users(&id), &token, &patch, None)?, 200)?;
    let challenge = login(ctx, &email, GOOD_PASSWORD, phone, "198.51.100.10", "app/1.0")?;
    expect_problem(&challenge, 401, "mfa-required")?;
    assert_eq!(challenge.body["mfa_required"], true);
    assert_eq!(challenge.body["methods"], json!(["totp", "recovery_code"]));
    let challenge_id = challenge.str("challenge_id");
    // The confirmation used the current step; the next step's code is the first one valid.
    let step = totp::step_of(now()) + 1;
    let code = totp::code_at_step(&secret, step, totp::DIGITS);
    let done = mfa(ctx, &challenge_id, "totp", &code)?;
    expect(&done, 200)?;
    ensure!(done.str("access_token").len() > 20 && done.str("refresh_token").starts_with("rt."));

    // The same code again, on a new login, is refused: a code is accepted once.
    let again = login(ctx, &email, GOOD_PASSWORD, phone, "198.51.100.10", "app/1.0")?;
    expect_problem(&again, 401, "mfa-required")?;
    let replay = mfa(ctx, &again.str("challenge_id"), "totp", &code)?;
    expect_problem(&replay, 401, "unauthenticated")?;
    // A recovery code works, once.
    expect(&mfa(ctx, &again.str("challenge_id"), "recovery_code", &recovery[0])?, 200)?;
    let third = login(ctx, &email, GOOD_PASSWORD, phone, "198.51.100.10", "app/1.0")?;
    expect_problem(
        &mfa(ctx, &third.str("challenge_id"), "recovery_code", &recovery[0])?,
        401,
        "unauthenticated",
    )?;

    let events = ctx.api.get(&format!("{}/security-events", users(&id)), Some(&done.str("access_token")))?;
    expect(&events, 200)?;
    let kinds: Vec<&str> =
        events.body["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["mfa_enrolled", "mfa_challenge", "mfa_success", "mfa_failure", "login_success"] {
        ensure!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    let _ = UnixMillis(0);
    Ok(())
}

fn a_risky_login_steps_up_and_a_known_device_does_not(ctx: &Ctx) -> Result<()> {
    let (id, email, _, laptop) = premium(ctx, "198.51.100.20")?;
    for _ in 0..3 {
        expect_problem(
            &login(ctx, &email, "not the password!!", None, "203.0.113.50", "evil/1.0")?,
            401,
            "unauthenticated",
        )?;
    }
    // A device token the server did not issue is no device at all.
    let forged = format!("dt1.{}.{}", "ab".repeat(16), "00".repeat(32));
    let risky = login(ctx, &email, GOOD_PASSWORD, Some(&forged), "203.0.113.50", "evil/1.0")?;
    expect_problem(&risky, 401, "mfa-required")?;
    // Before the second factor, the answer tells nothing of the assessment.
    ensure!(risky.body.get("risk").is_none(), "the challenge reveals the risk: {}", risky.body);
    assert_eq!(risky.body["methods"], json!(["email"]));

    // The code goes out by email (the local outbox), and completes the login.
    let challenge = risky.str("challenge_id");
    let sent = ctx.api.post(
        "/api/v1/auth/mfa/send",
        None,
        &json!({"challenge_id": challenge, "method": "email"}),
    )?;
    expect(&sent, 202)?;
    let code = ctx.stack.last_code_for(&email).expect("a code in the outbox");
    expect_problem(&mfa(ctx, &challenge, "email", "000000")?, 401, "unauthenticated")?;
    let done = mfa(ctx, &challenge, "email", &code)?;
    expect(&done, 200)?;
    let token = done.str("access_token");

    // The known device on its usual network logs in directly.
    let known = login(ctx, &email, GOOD_PASSWORD, Some(&laptop), "198.51.100.20", "app/1.0")?;
    expect(&known, 200)?;
    assert_eq!(known.body["risk"]["score"], 0.0);

    let events = ctx.api.get(&format!("{}/security-events", users(&id)), Some(&token))?;
    let assessed = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "risk_assessed" && e["detail"]["score"].as_f64().unwrap_or(0.0) >= 0.7)
        .cloned()
        .unwrap_or(Value::Null);
    // The user sees the assessment afterwards, in the security events, with its reasons.
    let signals: Vec<&str> = assessed["detail"]["signals"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["signal"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        signals,
        vec!["recent_failures", "new_device", "new_network", "user_agent_changed"],
        "{assessed}"
    );
    Ok(())
}

fn bad_passwords_are_slowed_but_the_owner_gets_in(ctx: &Ctx) -> Result<()> {
    let (_, email, _, owner_device) = premium(ctx, "198.51.100.30")?;
    let mut statuses = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..20 {
        let a = login(ctx, &email, "guess guess guess", None, "203.0.113.66", "bot/1.0")?;
        statuses.push(a.status);
        if a.status == 429 {
            expect_problem(&a, 429, "rate-limited")?;
            waits.push(a.header("retry-after").unwrap().parse::<u64>()?);
        }
    }
    assert_eq!(&statuses[..4], &[401, 401, 401, 401], "three free failures, the fourth starts the pause");
    ensure!(statuses[4..].iter().all(|&s| s == 429), "then every attempt is slowed: {statuses:?}");
    ensure!(
        waits.windows(2).all(|w| w[1] >= w[0]) && waits.last() > waits.first(),
        "growing Retry-After: {waits:?}"
    );
    ensure!(*waits.last().unwrap() >= 60, "towards minutes: {waits:?}");
    // The owner's known device is not held back by failures from elsewhere.
    expect(&login(ctx, &email, GOOD_PASSWORD, Some(&owner_device), "198.51.100.30", "app/1.0")?, 200)?;
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn unknown_email_and_wrong_password_take_the_same_time(ctx: &Ctx) -> Result<()> {
    // Distinct accounts, so that no softlock pause changes the path taken.
    let mut known = Vec::new();
    for i in 0..53 {
        let email = unique_email(&format!("timing{i}"));
        expect(&ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?, 201)?;
        known.push(email);
    }
    let time = |email: &str| -> Result<(f64, Answer)> {
        let started = Instant::now();
        let a = login(ctx, email, "a wrong password here", None, "192.0.2.77", "probe/1.0")?;
        Ok((started.elapsed().as_secs_f64() * 1000.0, a))
    };
    // Warm both paths (connections, caches, the blocking pool) before measuring.
    for email in known.iter().take(3) {
        time(email)?;
        time(&unique_email("warm"))?;
    }
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    let mut bodies = Vec::new();
    // Pairs alternate which case goes first, so that whatever the previous request left the
    // servers doing weighs on both cases alike.
    for (i, email) in known.iter().skip(3).enumerate() {
        let stranger = unique_email("nobody");
        let order: [(&str, bool); 2] = if i % 2 == 0 {
            [(email, true), (&stranger, false)]
        } else {
            [(&stranger, false), (email, true)]
        };
        for (address, exists) in order {
            let (ms, a) = time(address)?;
            if exists {
                wrong.push(ms);
            } else {
                unknown.push(ms);
            }
            bodies.push((a.status, a.body));
        }
    }
    ensure!(bodies.windows(2).all(|w| w[0] == w[1]), "every answer is the same");
    let (w, u) = (median(wrong), median(unknown));
    eprintln!("login timing: median wrong password {w:.1} ms, median unknown email {u:.1} ms (50 each)");
    ensure!((w - u).abs() / w.max(u) < 0.10, "medians differ by 10% or more: {w:.1} vs {u:.1} ms");
    Ok(())
}

fn event_kinds(ctx: &Ctx, id: &str, token: &str) -> Result<Vec<String>> {
    let events = ctx.api.get(&format!("{}/security-events", users(id)), Some(token))?;
    expect(&events, 200)?;
    Ok(events.body["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default())
}

fn required_mfa_without_an_enrolled_factor_asks_for_an_email_code(ctx: &Ctx) -> Result<()> {
    let email = unique_email("mustmfa");
    let id = ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?.str("id");
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    // Required, with only an authenticator named, and none enrolled yet.
    let patch = json!({"security_settings": {"require_mfa": true, "mfa_methods": ["authenticator"]}});
    expect(&ctx.api.put(&users(&id), &token, &patch, None)?, 200)?;

    let challenge = login(ctx, &email, GOOD_PASSWORD, None, "198.51.100.20", "app/1.0")?;
    expect_problem(&challenge, 401, "mfa-required")?;
    assert_eq!(challenge.body["methods"], json!(["email"]), "{}", challenge.body);
    let challenge_id = challenge.str("challenge_id");
    let sent = ctx.api.post(
        "/api/v1/auth/mfa/send",
        None,
        &json!({"challenge_id": challenge_id, "method": "email"}),
    )?;
    expect(&sent, 202)?;
    let code = ctx.stack.last_code_for(&email).expect("a code in the outbox");
    let done = mfa(ctx, &challenge_id, "email", &code)?;
    expect(&done, 200)?;
    ensure!(done.str("access_token").len() > 20);
    Ok(())
}

fn an_email_change_needs_the_password_and_a_code_from_the_new_address(ctx: &Ctx) -> Result<()> {
    let old = unique_email("mover");
    let new = unique_email("moved");
    let id = ctx.api.signup(&old, GOOD_PASSWORD, Value::Null)?.str("id");
    let token = ctx.api.login(&old, GOOD_PASSWORD)?;
    let path = format!("{}/email", users(&id));
    let start = |body: Value, token: &str| ctx.api.post(&path, Some(token), &body);

    // The profile update refuses the field and says where it is changed.
    let patched = ctx.api.put(&users(&id), &token, &json!({"email": new}), None)?;
    expect_problem(&patched, 403, "forbidden")?;
    ensure!(patched.body["errors"][0]["detail"].as_str().unwrap_or_default().contains("/email"));

    // The current password is the recent authentication it needs.
    expect_problem(&start(json!({"email": new}), &token)?, 401, "unauthenticated")?;
    expect_problem(
        &start(json!({"email": new, "current_password": "not the password at all"}), &token)?,
        401,
        "unauthenticated",
    )?;
    let bad = start(json!({"email": "not an address", "current_password": GOOD_PASSWORD}), &token)?;
    expect_problem(&bad, 400, "validation-failed")?;
    assert_eq!(bad.body["errors"][0]["field"], "email");
    let taken = unique_email("taken");
    ctx.api.signup(&taken, GOOD_PASSWORD, Value::Null)?;
    expect_problem(
        &start(json!({"email": taken, "current_password": GOOD_PASSWORD}), &token)?,
        409,
        "conflict",
    )?;
    expect_problem(
        &start(json!({"email": old, "current_password": GOOD_PASSWORD}), &token)?,
        409,
        "conflict",
    )?;
    let other = ctx.api.login(&taken, GOOD_PASSWORD)?;
    expect_problem(
        &start(json!({"email": new, "current_password": GOOD_PASSWORD}), &other)?,
        403,
        "forbidden",
    )?;

    // Started: a code to the new address, a notice (no code) to the old one.
    let started = start(json!({"email": new.to_uppercase(), "current_password": GOOD_PASSWORD}), &token)?;
    expect(&started, 202)?;
    assert_eq!(started.body["pending_email"], json!(new));
    let code = ctx.stack.last_code_for(&new).expect("a code sent to the new address");
    let notices = ctx.stack.messages_for(&old);
    let notice = notices.last().expect("a notice to the old address");
    ensure!(notice.1.is_none() && notice.0.contains("was requested"), "{notice:?}");
    ensure!(!notice.0.contains(&new), "the notice names the new address in full: {}", notice.0);

    // Nothing changed yet: the old address still logs in, the new one does not.
    let before = ctx.api.get(&users(&id), Some(&token))?;
    assert_eq!(before.body["email"], json!(old));
    let version = before.body["version"].as_u64().unwrap();
    expect_problem(
        &ctx.api.post("/api/v1/auth/login", None, &json!({"email": new, "password": GOOD_PASSWORD}))?,
        401,
        "unauthenticated",
    )?;

    let confirm =
        |code: &str| ctx.api.post(&format!("{path}/confirm"), Some(&token), &json!({ "code": code }));
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let refused = confirm(wrong)?;
    expect_problem(&refused, 400, "validation-failed")?;
    ensure!(refused.body["detail"].as_str().unwrap_or_default().contains("4 tries left"), "{}", refused.body);
    let done = confirm(&code)?;
    expect(&done, 200)?;
    assert_eq!(done.body["email"], json!(new));
    assert_eq!(done.body["email_verified"], json!(true));
    assert_eq!(done.body["version"], json!(version + 1));
    assert_eq!(done.etag, Some(format!("\"{}\"", version + 1)));
    // Read-your-writes, the code works once, and only the new address logs in.
    assert_eq!(ctx.api.get(&users(&id), Some(&token))?.body["email"], json!(new));
    expect_problem(&confirm(&code)?, 409, "conflict")?;
    expect_problem(
        &ctx.api.post("/api/v1/auth/login", None, &json!({"email": old, "password": GOOD_PASSWORD}))?,
        401,
        "unauthenticated",
    )?;
    let token = ctx.api.login(&new, GOOD_PASSWORD)?;
    let kinds = event_kinds(ctx, &id, &token)?;
    for kind in ["email_change_requested", "email_change_failure", "email_changed"] {
        ensure!(kinds.iter().any(|k| k == kind), "no {kind} event in {kinds:?}");
    }
    assert_not_stored_in_clear(ctx, &[&old, &new])
}

fn sms_codes_work_once_the_number_is_confirmed(ctx: &Ctx) -> Result<()> {
    let email = unique_email("texted");
    let id = ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?.str("id");
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    let path = format!("{}/mfa/sms", users(&id));
    // A number unique to this test run, so the outbox holds only this test's messages for it.
    let digits: String = id.chars().filter(char::is_ascii_digit).take(8).collect();
    let number = format!("+336{digits:0<8}");
    let typed = format!("{} {} {}", &number[..3], &number[3..7], &number[7..]);

    // Enrolment needs the password, and a number with its country code.
    expect_problem(
        &ctx.api.post(&path, Some(&token), &json!({"phone_number": typed}))?,
        401,
        "unauthenticated",
    )?;
    let bad = ctx.api.post(
        &path,
        Some(&token),
        &json!({"phone_number": "06 12 34 56 78", "current_password": GOOD_PASSWORD}),
    )?;
    expect_problem(&bad, 400, "validation-failed")?;
    assert_eq!(bad.body["errors"][0]["field"], "phone_number");
    assert_eq!(bad.body["errors"][0]["rule"], "country_code");
    let started = ctx.api.post(
        &path,
        Some(&token),
        &json!({"phone_number": typed, "current_password": GOOD_PASSWORD}),
    )?;
    expect(&started, 202)?;
    ensure!(started.str("pending_phone").ends_with(&number[number.len() - 2..]), "{}", started.body);
    ensure!(!started.body.to_string().contains(&number), "the answer shows the number masked");
    let code = ctx.stack.last_code_for(&number).expect("a code texted to the number");
    let confirm =
        |code: &str| ctx.api.post(&format!("{path}/confirm"), Some(&token), &json!({ "code": code }));
    let wrong = if code == "000000" { "000001" } else { "000000" };
    expect_problem(&confirm(wrong)?, 400, "validation-failed")?;
    let enrolled = confirm(&code)?;
    expect(&enrolled, 200)?;
    assert_eq!(enrolled.body["enrolled"], "sms");

    // The account requires a second factor: the login offers SMS (not email: a factor is enrolled).
    let patch = json!({"security_settings": {"require_mfa": true, "mfa_methods": ["sms"]}});
    expect(&ctx.api.put(&users(&id), &token, &patch, None)?, 200)?;
    let challenge = login(ctx, &email, GOOD_PASSWORD, None, "198.51.100.30", "app/1.0")?;
    expect_problem(&challenge, 401, "mfa-required")?;
    assert_eq!(challenge.body["methods"], json!(["sms"]), "{}", challenge.body);
    let challenge_id = challenge.str("challenge_id");
    let send = |method: &str| {
        ctx.api.post("/api/v1/auth/mfa/send", None, &json!({"challenge_id": challenge_id, "method": method}))
    };
    expect_problem(&send("email")?, 400, "bad-request")?;
    expect(&send("sms")?, 202)?;
    let code = ctx.stack.last_code_for(&number).expect("a sign-in code texted");
    // A code is good only for the method it was sent by.
    expect_problem(&mfa(ctx, &challenge_id, "email", &code)?, 400, "bad-request")?;
    let done = mfa(ctx, &challenge_id, "sms", &code)?;
    expect(&done, 200)?;
    let token = done.str("access_token");

    // Removing the number needs a fresh proof: the password and a code from the factor (here
    // through a step-up, which texts the code first); then the login falls back to an email code.
    expect_problem(&ctx.api.delete_with(&path, &token, &json!({}))?, 403, "step-up-required")?;
    let password_only = ctx.api.delete_with(&path, &token, &json!({"current_password": GOOD_PASSWORD}))?;
    expect_problem(&password_only, 403, "step-up-required")?;
    let step_up = |body: Value| ctx.api.post("/api/v1/auth/step-up", Some(&token), &body);
    expect(&step_up(json!({"current_password": GOOD_PASSWORD, "method": "sms"}))?, 202)?;
    let code = ctx.stack.last_code_for(&number).expect("a step-up code texted");
    expect(&step_up(json!({"current_password": GOOD_PASSWORD, "method": "sms", "code": code}))?, 200)?;
    let removed = ctx.api.delete_with(&path, &token, &json!({}))?;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let after = login(ctx, &email, GOOD_PASSWORD, None, "198.51.100.30", "app/1.0")?;
    assert_eq!(after.body["methods"], json!(["email"]), "{}", after.body);
    let kinds = event_kinds(ctx, &id, &token)?;
    for kind in ["mfa_enrolment_started", "sms_enrolment_failure", "mfa_enrolled", "mfa_removed"] {
        ensure!(kinds.iter().any(|k| k == kind), "no {kind} event in {kinds:?}");
    }
    assert_not_stored_in_clear(ctx, &[&number])
}
