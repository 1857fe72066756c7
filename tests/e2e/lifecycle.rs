//! The account's lifecycle beyond login: real delivery (SMTP on loopback, an HTTP SMS
//! provider) through the durable outbox, password reset, email verification, and retention.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::api::{unique_email, Api, GOOD_PASSWORD};
use e2e::sms::SmsProvider;
use e2e::smtp::SmtpServer;
use e2e::{Backend, Stack};
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "lifecycle::smtp_delivery_survives_a_server_down_for_a_while",
        smtp_delivery_survives_a_server_down_for_a_while,
    ),
    (
        "lifecycle::a_reset_code_works_once_and_ends_every_session",
        a_reset_code_works_once_and_ends_every_session,
    ),
    (
        "lifecycle::forgot_password_answers_the_same_for_unknown_emails",
        forgot_password_answers_the_same_for_unknown_emails,
    ),
    ("lifecycle::signup_verification_marks_the_email_verified", signup_verification_marks_the_email_verified),
    ("lifecycle::retention_purges_each_class_at_its_age", retention_purges_each_class_at_its_age),
];

const NEW_PASSWORD: &str = "a fresh horse battery staple";
const DAY_MS: u64 = 86_400_000;

/// Waits (up to 30 s) for a code sent to `to` in the local outbox whose text contains `what`.
fn wait_for_code(ctx: &Ctx, to: &str, what: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = ctx.stack.messages_for(to).into_iter().rev().find(|(text, _)| text.contains(what));
        if let Some((_, Some(code))) = found {
            return Ok(code);
        }
        ensure!(Instant::now() < deadline, "no message with {what:?} to {to}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The code a mail's body gives after "code: " (the reset and verification emails).
fn code_in(body: &str) -> Result<String> {
    let after = body
        .split_once("code: ")
        .or_else(|| body.split_once("code : "))
        .map(|(_, rest)| rest)
        .context("no code in the mail")?;
    Ok(after.split_whitespace().next().unwrap_or_default().to_owned())
}

fn smtp_delivery_survives_a_server_down_for_a_while(_: &Ctx) -> Result<()> {
    let mut smtp = SmtpServer::start()?;
    let sms = SmsProvider::start("AC0123456789abcdef", "sms-auth-token")?;
    let backend = Backend::from_env()?;
    let stack = Stack::start_configured(
        &[("IP_SIGNUP_PER_HOUR", "1000"), ("IP_LOGIN_PER_MINUTE", "1000"), ("IP_RECOVERY_PER_HOUR", "5")],
        &[
            ("ORIGIN_SMTP_URL", &smtp.url()),
            ("ORIGIN_SMTP_FROM", "Music AI <no-reply@music.test>"),
            ("ORIGIN_SMS_URL", &sms.url()),
            ("ORIGIN_SMS_ACCOUNT_SID", &sms.account_sid),
            ("ORIGIN_SMS_AUTH_TOKEN", &sms.auth_token),
            ("ORIGIN_SMS_FROM", "+15005550006"),
        ],
        backend,
    )?;
    let api = Api::new(stack.edge_url());

    // Signup: the verification email goes out over SMTP, in the profile's language.
    let email = unique_email("smtp");
    let created =
        api.signup(&email, GOOD_PASSWORD, json!({"display_name": "Élodie", "language": "fr-FR"}))?;
    expect(&created, 201)?;
    let id = created.str("id");
    let welcome = smtp.wait_for(&email, 1, Duration::from_secs(30))?;
    let mail = &welcome[0];
    assert_eq!(mail.from, "no-reply@music.test");
    assert_eq!(mail.subject(), "Confirmez votre adresse");
    let body = mail.body();
    ensure!(body.contains("Bienvenue") && body.contains("/verify-email#code="), "{body}");
    let message_id = mail.header("Message-ID").unwrap_or_default();
    ensure!(message_id.starts_with("<msg_") && message_id.ends_with("@music.test>"), "{message_id}");
    let verified = api.post("/api/v1/auth/email/verify", None, &json!({"code": code_in(&body)?}))?;
    expect(&verified, 200)?;
    assert_eq!(verified.body, json!({"user_id": id, "email_verified": true}));

    // An SMS through the provider's Messages API: form fields, basic auth, idempotency key.
    let token = api.login(&email, GOOD_PASSWORD)?;
    let phone = "+33612345678";
    let enrol = api.post(
        &format!("{}/mfa/sms", users(&id)),
        Some(&token),
        &json!({"phone_number": phone, "current_password": GOOD_PASSWORD}),
    )?;
    expect(&enrol, 202).or_else(|_| expect(&enrol, 200))?;
    let texts = sms.wait_for(phone, 1, Duration::from_secs(30))?;
    assert_eq!(texts[0].from, "+15005550006");
    ensure!(texts[0].body.starts_with("Votre code pour ajouter ce téléphone"), "{}", texts[0].body);
    ensure!(texts[0].idempotency_key.starts_with("msg_"), "{:?}", texts[0]);
    assert!(sms.refused().is_empty(), "{:?}", sms.refused());

    // The mail server goes down; a reset email is asked for: it waits in the outbox.
    smtp.pause();
    let asked = api.post("/api/v1/auth/password/forgot", None, &json!({"email": email}))?;
    expect(&asked, 202)?;
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(smtp.mails_to(&email).len(), 1, "only the welcome mail while the server is down");
    // Back up: the retry delivers it, exactly once.
    smtp.resume()?;
    let mails = smtp.wait_for(&email, 2, Duration::from_secs(60))?;
    let reset_mail = &mails[1];
    assert_eq!(reset_mail.subject(), "Réinitialisez votre mot de passe");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(smtp.mails_to(&email).len(), 2, "the reset mail arrived once");

    // The code in it resets the password; a notice follows.
    let code = code_in(&reset_mail.body())?;
    let reset =
        api.post("/api/v1/auth/password/reset", None, &json!({"code": code, "new_password": NEW_PASSWORD}))?;
    expect(&reset, 200)?;
    let mails = smtp.wait_for(&email, 3, Duration::from_secs(30))?;
    assert_eq!(mails[2].subject(), "Votre mot de passe a été réinitialisé");
    api.login(&email, NEW_PASSWORD)?;

    // Recovery is limited per client address (5 an hour here): the sixth asking is refused.
    let from = |n: u32| -> Result<e2e::api::Answer> {
        let request = e2e::http::client()
            .post(api.url("/api/v1/auth/password/forgot"))
            .header("cf-connecting-ip", "203.0.113.77")
            .json(&json!({"email": unique_email(&format!("limited{n}"))}));
        e2e::api::send(request)
    };
    for n in 0..5 {
        expect(&from(n)?, 202)?;
    }
    let refused = from(5)?;
    expect_problem(&refused, 429, "rate-limited")?;
    ensure!(
        refused.header("ratelimit-policy").is_some_and(|p| p.starts_with("\"ip-recovery\"")),
        "{:?}",
        refused.headers
    );
    Ok(())
}

fn a_reset_code_works_once_and_ends_every_session(ctx: &Ctx) -> Result<()> {
    let api = &ctx.api;
    let email = unique_email("reset");
    let created = api.signup(&email, GOOD_PASSWORD, Value::Null)?;
    expect(&created, 201)?;
    let id = created.str("id");
    let login = api.post("/api/v1/auth/login", None, &json!({"email": email, "password": GOOD_PASSWORD}))?;
    expect(&login, 200)?;
    let (access, refresh) = (login.str("access_token"), login.str("refresh_token"));
    expect(&api.get(&users(&id), Some(&access))?, 200)?;
    // Wrong passwords put the account in a softlock pause.
    let mut paused = false;
    for _ in 0..6 {
        let a = api.post(
            "/api/v1/auth/login",
            None,
            &json!({"email": email, "password": "wrong password 1234"}),
        )?;
        paused |= a.status == 429;
    }
    ensure!(paused, "six wrong passwords pause the account's logins");

    expect(&api.post("/api/v1/auth/password/forgot", None, &json!({"email": email}))?, 202)?;
    let code = wait_for_code(ctx, &email, "reset")?;
    // The policy holds: a weak password is refused, and the code is not spent by that.
    let weak =
        api.post("/api/v1/auth/password/reset", None, &json!({"code": code, "new_password": "password"}))?;
    expect_problem(&weak, 400, "validation-failed")?;
    let reset =
        api.post("/api/v1/auth/password/reset", None, &json!({"code": code, "new_password": NEW_PASSWORD}))?;
    expect(&reset, 200)?;
    ensure!(reset.body["sessions_ended"].as_u64() >= Some(1), "{}", reset.body);
    // Once only.
    let again = api.post(
        "/api/v1/auth/password/reset",
        None,
        &json!({"code": code, "new_password": "another fine passphrase"}),
    )?;
    expect_problem(&again, 401, "unauthenticated")?;
    // Every session ended: the access token and the refresh token are refused.
    expect(&api.get(&users(&id), Some(&access))?, 401)?;
    expect(&api.post("/api/v1/auth/refresh", None, &json!({"refresh_token": refresh}))?, 401)?;
    // The old password is refused, the new one works at once (the softlock was cleared).
    let old = api.post("/api/v1/auth/login", None, &json!({"email": email, "password": GOOD_PASSWORD}))?;
    expect(&old, 401)?;
    let token = api.login(&email, NEW_PASSWORD)?;
    // The notice, the audit entry and the security event.
    wait_for_code(ctx, &email, "reset").ok();
    ensure!(
        ctx.stack
            .messages_for(&email)
            .iter()
            .any(|(text, code)| code.is_none() && text.contains("was just reset")),
        "a notice of the reset"
    );
    let audit = api.get(&format!("{}/audit", users(&id)), Some(&token))?;
    ensure!(
        audit.body["entries"].as_array().is_some_and(|e| e.iter().any(|e| e["action"] == "password_reset")),
        "{}",
        audit.body
    );
    // A garbled code is refused the same way.
    let garbled = api.post(
        "/api/v1/auth/password/reset",
        None,
        &json!({"code": "not-a-code", "new_password": NEW_PASSWORD}),
    )?;
    expect_problem(&garbled, 401, "unauthenticated")?;
    let bad_body = api.post("/api/v1/auth/password/reset", None, &json!({"code": 12}))?;
    expect_problem(&bad_body, 400, "bad-request")?;
    Ok(())
}

fn forgot_password_answers_the_same_for_unknown_emails(ctx: &Ctx) -> Result<()> {
    let api = &ctx.api;
    let email = unique_email("forgot");
    expect(&api.signup(&email, GOOD_PASSWORD, Value::Null)?, 201)?;
    let known = api.post("/api/v1/auth/password/forgot", None, &json!({"email": email}))?;
    let unknown_email = unique_email("nobody");
    let unknown = api.post("/api/v1/auth/password/forgot", None, &json!({"email": unknown_email}))?;
    expect(&known, 202)?;
    expect(&unknown, 202)?;
    assert_eq!(known.body, unknown.body);
    assert_eq!(known.content_type, unknown.content_type);
    wait_for_code(ctx, &email, "reset")?;
    std::thread::sleep(Duration::from_millis(500));
    assert!(ctx.stack.messages_for(&unknown_email).is_empty());
    // A malformed address is a 400 (it tells nothing about accounts).
    expect_problem(
        &api.post("/api/v1/auth/password/forgot", None, &json!({"email": "not an address"}))?,
        400,
        "validation-failed",
    )?;
    // Per account: three codes an hour; a fourth request still answers 202 but sends nothing.
    for _ in 0..3 {
        expect(&api.post("/api/v1/auth/password/forgot", None, &json!({"email": email}))?, 202)?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let count =
        || ctx.stack.messages_for(&email).iter().filter(|(t, c)| c.is_some() && t.contains("reset")).count();
    while count() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(), 3, "three reset codes in the hour, not four");

    // A figure, not a check (the machine is shared): the answer's time for a known address
    // (with an account; limited by now, yet it answers before looking) and an unknown one.
    let fresh = unique_email("forgot-timing");
    expect(&api.signup(&fresh, GOOD_PASSWORD, Value::Null)?, 201)?;
    let mut times: [Vec<u128>; 2] = [Vec::new(), Vec::new()];
    for round in 0..20 {
        for (i, address) in [fresh.clone(), unique_email("nobody")].iter().enumerate() {
            let started = Instant::now();
            expect(&api.post("/api/v1/auth/password/forgot", None, &json!({"email": address}))?, 202)?;
            if round > 0 {
                times[i].push(started.elapsed().as_micros());
            }
        }
    }
    for t in &mut times {
        t.sort_unstable();
    }
    eprintln!(
        "forgot-password answer, median of 19: known address {:.1} ms, unknown {:.1} ms",
        times[0][9] as f64 / 1000.0,
        times[1][9] as f64 / 1000.0
    );
    Ok(())
}

fn signup_verification_marks_the_email_verified(ctx: &Ctx) -> Result<()> {
    let api = &ctx.api;
    let email = unique_email("verify");
    let created = api.signup(&email, GOOD_PASSWORD, Value::Null)?;
    expect(&created, 201)?;
    assert_eq!(created.body["email_verified"], false);
    let id = created.str("id");
    let token = api.login(&email, GOOD_PASSWORD)?;
    let before = api.get(&users(&id), Some(&token))?;
    assert_eq!(before.body["email_verified"], false);
    let version = before.body["version"].as_i64().unwrap_or_default();

    let code = wait_for_code(ctx, &email, "confirm this address")?;
    let done = api.post("/api/v1/auth/email/verify", None, &json!({"code": code}))?;
    expect(&done, 200)?;
    assert_eq!(done.body, json!({"user_id": id, "email_verified": true}));
    // The owner reads the new version at once (the gate and KV were told).
    let after = api.get(&users(&id), Some(&token))?;
    assert_eq!(after.body["email_verified"], true);
    assert_eq!(after.body["version"].as_i64(), Some(version + 1));
    // Once only; and a verified address needs no new code.
    expect_problem(
        &api.post("/api/v1/auth/email/verify", None, &json!({"code": code}))?,
        401,
        "unauthenticated",
    )?;
    let resend = api.post(&format!("{}/email/verification", users(&id)), Some(&token), &json!({}))?;
    expect_problem(&resend, 409, "conflict")?;
    // Another unverified account can ask for a new code, which works.
    let other = unique_email("verify-resend");
    let created = api.signup(&other, GOOD_PASSWORD, Value::Null)?;
    let other_id = created.str("id");
    let other_token = api.login(&other, GOOD_PASSWORD)?;
    let first = wait_for_code(ctx, &other, "confirm this address")?;
    let resent =
        api.post(&format!("{}/email/verification", users(&other_id)), Some(&other_token), &json!({}))?;
    expect(&resent, 202)?;
    let second = wait_for_code(ctx, &other, "confirm this address")?;
    ensure!(first != second, "a new code");
    expect(&api.post("/api/v1/auth/email/verify", None, &json!({"code": second}))?, 200)?;
    Ok(())
}

/// Runs `origin cleanup --at now+offset` and answers its per-class report.
fn cleanup_at(stack: &Stack, start: u64, offset_ms: u64) -> Result<Value> {
    let at = (start + offset_ms).to_string();
    let (code, out, err) = stack.origin_cli(&["cleanup", "--at", &at])?;
    ensure!(code == 0, "cleanup failed: {err}");
    let summary: Value = serde_json::from_str(&out)?;
    Ok(summary["classes"].clone())
}

fn retention_purges_each_class_at_its_age(_: &Ctx) -> Result<()> {
    let stack = Stack::start_configured(
        &[("IP_SIGNUP_PER_HOUR", "1000"), ("IP_LOGIN_PER_MINUTE", "1000")],
        &[],
        Backend::from_env()?,
    )?;
    let api = Api::new(stack.edge_url());
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    // One of everything: an account (audit entries, a verification code and its email, a
    // login with its history, security events and events), a used reset code, a job run,
    // an MFA challenge, and a provisioned account never activated.
    let email = unique_email("retention");
    let created = api.signup(&email, GOOD_PASSWORD, Value::Null)?;
    expect(&created, 201)?;
    let id = created.str("id");
    let token = api.login(&email, GOOD_PASSWORD)?;
    expect(&api.get(&users(&id), Some(&token))?, 200)?;
    expect(&api.post("/api/v1/auth/password/forgot", None, &json!({"email": email}))?, 202)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(code) = stack
            .messages_for(&email)
            .into_iter()
            .rev()
            .find(|(t, _)| t.contains("reset"))
            .and_then(|(_, c)| c)
        {
            break code;
        }
        ensure!(Instant::now() < deadline, "no reset code");
        std::thread::sleep(Duration::from_millis(50));
    };
    expect(
        &api.post("/api/v1/auth/password/reset", None, &json!({"code": code, "new_password": NEW_PASSWORD}))?,
        200,
    )?;
    let risky = api.post("/api/v1/auth/login", None, &json!({"email": email, "password": NEW_PASSWORD}))?;
    expect(&risky, 200)?;
    let csv = stack.dir.path().join("people.csv");
    std::fs::write(&csv, format!("email,tier\n{},free\n", unique_email("never-activated")))?;
    let (code, _, err) =
        stack.origin_cli(&["provision-users", "--file", csv.to_str().unwrap_or_default()])?;
    ensure!(code == 0, "provisioning failed: {err}");
    // Events reach the origin through the queue: wait until the user's insights count some.
    let token = api.login(&email, NEW_PASSWORD)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let insights = api.get(&format!("{}/insights", users(&id)), Some(&token))?;
        if insights.body["activity_30d"].as_object().is_some_and(|a| !a.is_empty()) {
            break;
        }
        ensure!(Instant::now() < deadline, "no event reached the origin: {}", insights.body);
        std::thread::sleep(Duration::from_millis(200));
    }
    // After the last successful login (which resets it): a wrong password leaves a softlock
    // counter, short-lived sign-in state kept a day.
    let wrong =
        api.post("/api/v1/auth/login", None, &json!({"email": email, "password": "wrong password 1234"}))?;
    expect(&wrong, 401)?;

    // For each class, a run a day before its age removes nothing of it, a run two days after
    // removes some. (Runs go forward in time; each class's data is from `start` or the minutes
    // after it, and the softlock counter lives a day after the failure.)
    // Unactivated accounts are measured from their activation deadline, 14 days on.
    let age_of = |rule: &domain::retention::Rule| {
        let base =
            if rule.class == domain::retention::DataClass::UnactivatedAccounts { 14 * DAY_MS } else { 0 };
        base + rule.age_days * DAY_MS
    };
    let mut rules: Vec<_> = domain::retention::RULES.to_vec();
    rules.sort_by_key(|r| age_of(r));
    for rule in &rules {
        let name = serde_json::to_value(rule.class)?.as_str().unwrap_or_default().to_owned();
        let age = age_of(rule);
        if age >= 2 * DAY_MS {
            let before = cleanup_at(&stack, start, age - DAY_MS)?;
            assert_eq!(before[&name]["removed"], 0, "{name} a day before its age: {before}");
        }
        let after = cleanup_at(&stack, start, age + 2 * DAY_MS)?;
        ensure!(
            after[&name]["removed"].as_u64() > Some(0),
            "{name} a day after its age ({} days): {after}",
            rule.age_days
        );
        assert_eq!(after[&name]["age_days"], rule.age_days);
    }
    // The audit trail keeps a summary of what it had.
    let db_audit = api.get(&format!("{}/audit", users(&id)), Some(&api.login(&email, NEW_PASSWORD)?))?;
    let entries = db_audit.body["entries"].as_array().cloned().unwrap_or_default();
    ensure!(!entries.is_empty() && entries.iter().all(|e| e["action"] == "summary"), "{}", db_audit.body);
    ensure!(entries.iter().any(|e| e["old"] == "password_reset"), "{}", db_audit.body);
    Ok(())
}
