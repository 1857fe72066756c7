//! Passkeys: the account page in headless Chromium with its virtual WebAuthn authenticator (a
//! platform passkey with user verification, and a roaming security key), and the WebAuthn
//! operations' refusals over plain HTTP. Screenshots land in `target/e2e-screenshots/<test>/`.

use std::time::Duration;

use anyhow::{ensure, Result};
use e2e::api::{unique_email, GOOD_PASSWORD};
use serde_json::json;

use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "passkeys::a_platform_passkey_signs_in_alone_and_as_second_factor_and_a_clone_is_refused",
        a_platform_passkey_signs_in_alone_and_as_second_factor_and_a_clone_is_refused,
    ),
    (
        "passkeys::a_security_key_is_a_second_factor_and_refused_once_its_backup_flag_changes",
        a_security_key_is_a_second_factor_and_refused_once_its_backup_flag_changes,
    ),
    ("passkeys::webauthn_operations_refuse_bad_input", webauthn_operations_refuse_bad_input),
];

/// A new account and the browser script's environment for it.
fn new_user(ctx: &Ctx, prefix: &str) -> Result<(String, Vec<(&'static str, String)>)> {
    let email = unique_email(prefix);
    let answer = ctx.api.signup(&email, GOOD_PASSWORD, json!({}))?;
    ensure!(answer.status == 201, "signup: {} {}", answer.status, answer.body);
    let env = vec![
        ("EDGE_LOCAL_URL", ctx.stack.edge_localhost_url()),
        ("USER_EMAIL", email),
        ("USER_PASSWORD", GOOD_PASSWORD.to_owned()),
    ];
    Ok((answer.str("id"), env))
}

fn a_platform_passkey_signs_in_alone_and_as_second_factor_and_a_clone_is_refused(ctx: &Ctx) -> Result<()> {
    let (id, mut env) = new_user(ctx, "passkey")?;
    env.extend([
        ("EDGE_URL", ctx.stack.edge_url()),
        ("USER_ID", id.clone()),
        ("ADMIN_TOKEN", ctx.admin_token.clone()),
    ]);
    let output =
        e2e::browser::run("passkeys-platform.mjs", "passkeys-platform", &env, Duration::from_secs(120))?;
    ensure!(
        output.contains("passkey-list.png") && output.contains("signed-in.png"),
        "screenshots:\n{output}"
    );
    // What the page did, seen from the API: the events the origin recorded (the account is
    // enterprise now, so the admin reads them).
    let token = ctx.admin_token.clone();
    let events = ctx.api.get(&format!("/api/v1/users/{id}/security-events"), Some(&token))?;
    let kinds: Vec<&str> =
        events.body["events"].as_array().into_iter().flatten().filter_map(|e| e["kind"].as_str()).collect();
    for kind in
        ["mfa_enrolled", "passkey_counter_regressed", "step_up", "mfa_removed", "passkey_refused_model"]
    {
        ensure!(kinds.contains(&kind), "no {kind} event: {kinds:?}");
    }
    let listed = ctx.api.get(&format!("/api/v1/users/{id}/passkeys"), Some(&token))?;
    ensure!(listed.status == 200 && listed.body["passkeys"] == json!([]), "removed: {}", listed.body);
    Ok(())
}

fn a_security_key_is_a_second_factor_and_refused_once_its_backup_flag_changes(ctx: &Ctx) -> Result<()> {
    let (id, env) = new_user(ctx, "seckey")?;
    // A session elsewhere, which the page lists and ends.
    ctx.api.login(&env[1].1, GOOD_PASSWORD)?;
    e2e::browser::run("passkeys-security-key.mjs", "passkeys-security-key", &env, Duration::from_secs(90))?;
    // The password alone no longer signs in: the login asks for the key.
    let login =
        ctx.api.post("/api/v1/auth/login", None, &json!({ "email": env[1].1, "password": GOOD_PASSWORD }))?;
    ensure!(login.status == 401 && login.problem_slug() == "mfa-required", "{}", login.body);
    ensure!(
        login.body["methods"] == json!(["webauthn", "totp", "recovery_code"]),
        "methods: {}",
        login.body["methods"]
    );
    // An email code is no way around the factors: the challenge does not offer it.
    let code = ctx.api.post(
        "/api/v1/auth/mfa",
        None,
        &json!({ "challenge_id": login.body["challenge_id"], "method": "email", "code": "000000" }),
    )?;
    ensure!(code.status == 400, "{}", code.body);
    let listed = ctx.api.get(&format!("/api/v1/users/{id}/passkeys"), Some(&ctx.admin_token))?;
    ensure!(listed.body["passkeys"][0]["kind"] == "security_key", "{}", listed.body);
    let events = ctx.api.get(&format!("/api/v1/users/{id}/security-events"), Some(&ctx.admin_token))?;
    let changed = events.body["events"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["kind"] == "passkey_backup_eligibility_changed");
    ensure!(changed, "no passkey_backup_eligibility_changed event: {}", events.body);
    Ok(())
}

fn webauthn_operations_refuse_bad_input(ctx: &Ctx) -> Result<()> {
    let api = &ctx.api;
    let email = unique_email("pkbad");
    let id = api.signup(&email, GOOD_PASSWORD, json!({}))?.str("id");
    let token = api.login(&email, GOOD_PASSWORD)?;
    let base = format!("/api/v1/users/{id}/passkeys");

    // Registration needs a recent authentication.
    let wrong = api.post(&format!("{base}/options"), Some(&token), &json!({ "current_password": "nope" }))?;
    ensure!(wrong.status == 401 && wrong.content_type == "application/problem+json", "{}", wrong.body);
    let options =
        api.post(&format!("{base}/options"), Some(&token), &json!({ "current_password": GOOD_PASSWORD }))?;
    ensure!(options.status == 200, "{}", options.body);
    ensure!(options.body["public_key"]["rp"]["id"] == "localhost", "{}", options.body);
    ensure!(
        options.body["public_key"]["authenticatorSelection"]["residentKey"] == "required",
        "{}",
        options.body
    );
    ensure!(
        options.body["public_key"]["authenticatorSelection"]["userVerification"] == "required",
        "{}",
        options.body
    );

    // A malformed answer is a 400 naming the problem; a forged one does not verify.
    let ceremony = options.body["ceremony_id"].as_str().unwrap_or_default().to_owned();
    let malformed =
        api.post(&base, Some(&token), &json!({ "ceremony_id": ceremony, "credential": {"id": 1} }))?;
    ensure!(malformed.status == 400 && malformed.problem_slug() == "bad-request", "{}", malformed.body);
    let forged = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": { "attestationObject": "o2NmbXRkbm9uZQ", "clientDataJSON": "e30" },
        "extensions": {}
    });
    let refused = api.post(&base, Some(&token), &json!({ "ceremony_id": ceremony, "credential": forged }))?;
    ensure!(
        refused.status == 400 && refused.problem_slug() == "validation-failed",
        "a forged registration: {} {}",
        refused.status,
        refused.body
    );
    // The ceremony was taken by that attempt: it is single-use.
    let again = api.post(&base, Some(&token), &json!({ "ceremony_id": ceremony, "credential": forged }))?;
    ensure!(again.status == 401, "a used ceremony: {} {}", again.status, again.body);

    // Another user's passkeys are not reachable; an unknown passkey is a 404.
    let other = api.get(&format!("/api/v1/users/{}/passkeys", ctx.admin_id), Some(&token))?;
    ensure!(other.status == 403, "{}", other.body);
    let rename = api.patch(&format!("{base}/nope"), &token, &json!({ "label": "x" }))?;
    ensure!(rename.status == 404, "{}", rename.body);
    let blank = api.patch(&format!("{base}/nope"), &token, &json!({ "label": "   " }))?;
    ensure!(blank.status == 400 && blank.problem_slug() == "validation-failed", "{}", blank.body);

    // Passwordless: options are public; an unknown ceremony is refused.
    let pw = api.post("/api/v1/auth/passkey/options", None, &json!({}))?;
    ensure!(pw.status == 200 && pw.body["mediation"] == "conditional", "{}", pw.body);
    let unknown = api.post(
        "/api/v1/auth/passkey",
        None,
        &json!({ "ceremony_id": "wac_nope", "credential": {
            "id": "AAAA", "rawId": "AAAA", "type": "public-key",
            "response": { "authenticatorData": "AAAA", "clientDataJSON": "e30", "signature": "AAAA", "userHandle": null },
            "extensions": {}
        } }),
    )?;
    ensure!(unknown.status == 401 && unknown.problem_slug() == "unauthenticated", "{}", unknown.body);

    Ok(())
}
