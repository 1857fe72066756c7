//! Data rights (issue 13): the export archive, erasure (scheduled, cancelled, immediate, with
//! nothing left in SQLite, KV or the Durable Object), consents and the GPC signal.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::api::{unique_email, Answer, GOOD_PASSWORD};
use e2e::http::client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use e2e::api::Api;
use e2e::http::SignedCall;
use e2e::{Backend, Stack};

use crate::accounts::{expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "rights::an_export_after_a_step_up_holds_every_section_as_the_manifest_says",
        an_export_after_a_step_up_holds_every_section_as_the_manifest_says,
    ),
    (
        "rights::an_export_needs_a_fresh_proof_and_is_downloaded_three_times_at_most",
        an_export_needs_a_fresh_proof_and_is_downloaded_three_times_at_most,
    ),
    (
        "rights::a_scheduled_erasure_ends_sessions_refuses_login_and_can_be_cancelled",
        a_scheduled_erasure_ends_sessions_refuses_login_and_can_be_cancelled,
    ),
    (
        "rights::an_immediate_erasure_leaves_no_trace_in_sqlite_kv_or_the_durable_object",
        an_immediate_erasure_leaves_no_trace_in_sqlite_kv_or_the_durable_object,
    ),
    (
        "rights::a_due_erasure_runs_in_the_cleanup_job_and_the_edge_cron_wipes_its_part",
        a_due_erasure_runs_in_the_cleanup_job_and_the_edge_cron_wipes_its_part,
    ),
    (
        "rights::an_under_13_signup_cannot_log_in_until_a_parent_consents",
        an_under_13_signup_cannot_log_in_until_a_parent_consents,
    ),
    (
        "rights::withdrawing_analytics_stops_events_and_gpc_opts_out_of_sharing",
        withdrawing_analytics_stops_events_and_gpc_opts_out_of_sharing,
    ),
];

fn signup_and_login(ctx: &Ctx, prefix: &str) -> Result<(String, String, String)> {
    let email = unique_email(prefix);
    let created = ctx.api.signup(&email, GOOD_PASSWORD, json!({ "display_name": "Rights Tester" }))?;
    expect(&created, 201)?;
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    Ok((created.str("id"), email, token))
}

fn step_up(ctx: &Ctx, token: &str) -> Result<()> {
    let answer =
        ctx.api.post("/api/v1/auth/step-up", Some(token), &json!({ "current_password": GOOD_PASSWORD }))?;
    expect(&answer, 200)
}

/// Starts an export and polls its `Location` until the archive comes; the ZIP's bytes.
fn export(ctx: &Ctx, id: &str, token: &str) -> Result<(String, Vec<u8>)> {
    let started = ctx.api.post(&format!("{}/export", users(id)), Some(token), &json!({}))?;
    expect(&started, 202)?;
    let location = started.header("location").context("no Location")?;
    ensure!(location == started.str("location"), "Location and body differ: {}", started.body);
    let asked = Instant::now();
    let deadline = asked + Duration::from_secs(30);
    loop {
        let response = client().get(ctx.api.url(&location)).bearer_auth(token).send()?;
        match response.status().as_u16() {
            202 => {
                ensure!(response.headers().get("retry-after").is_some(), "a 202 without Retry-After");
                ensure!(Instant::now() < deadline, "the export was not ready within 30 s");
                std::thread::sleep(Duration::from_millis(200));
            }
            200 => {
                let kind =
                    response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
                ensure!(kind == "application/zip", "content-type {kind}");
                let bytes = response.bytes()?.to_vec();
                eprintln!(
                    "export: {} bytes, downloaded {} ms after the request",
                    bytes.len(),
                    asked.elapsed().as_millis()
                );
                return Ok((location, bytes));
            }
            other => anyhow::bail!("the export answered {other}: {}", response.text()?),
        }
    }
}

/// Each file of a ZIP by name.
fn unzip(bytes: &[u8]) -> Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    let mut files = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i)?;
        ensure!(file.compression() == zip::CompressionMethod::Deflated, "{} is not deflated", file.name());
        let mut content = Vec::new();
        file.read_to_end(&mut content)?;
        files.insert(file.name().to_owned(), content);
    }
    Ok(files)
}

fn an_export_after_a_step_up_holds_every_section_as_the_manifest_says(ctx: &Ctx) -> Result<()> {
    let (id, email, token) = signup_and_login(ctx, "export")?;
    // Some history: a profile change, an upgrade, a second login, a consent, a TOTP factor.
    expect(&ctx.api.patch(&users(&id), &token, &json!({ "display_name": "Exported Name" }))?, 200)?;
    expect(
        &ctx.api.post(&format!("{}/upgrade", users(&id)), Some(&token), &json!({ "tier": "premium" }))?,
        200,
    )?;
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    let consent = ctx.api.put(
        &format!("{}/consents", users(&id)),
        &token,
        &json!({ "consents": { "marketing": true } }),
        None,
    )?;
    expect(&consent, 200)?;
    let enrol = ctx.api.post(
        &format!("{}/mfa/totp", users(&id)),
        Some(&token),
        &json!({ "current_password": GOOD_PASSWORD }),
    )?;
    expect(&enrol, 201)?;
    let secret = enrol.str("secret");
    ensure!(!secret.is_empty(), "no TOTP secret in {}", enrol.body);
    step_up(ctx, &token)?;

    let (_, zip) = export(ctx, &id, &token)?;
    let files = unzip(&zip)?;
    let manifest: Value = serde_json::from_slice(files.get("manifest.json").context("no manifest.json")?)?;
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["user_id"], id.as_str());
    ensure!(manifest["generated_at"].as_str().is_some_and(|t| t.ends_with('Z')), "generated_at: {manifest}");
    let sections = manifest["sections"].as_array().context("no sections")?;
    let names: Vec<&str> = sections.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        vec![
            "profile",
            "security_settings",
            "ai_preferences",
            "tier_history",
            "sessions",
            "login_history",
            "security_events",
            "audit_trail",
            "consents",
            "mfa_factors",
            "analytics_events",
            "insights",
            "organization",
            "usage",
            "integrations",
            "personalization"
        ]
    );
    let mut parsed = std::collections::BTreeMap::new();
    for section in sections {
        let file = section["file"].as_str().context("no file")?;
        let bytes = files.get(file).with_context(|| format!("{file} is listed but not in the archive"))?;
        assert_eq!(section["sha256"].as_str(), Some(hex::encode(Sha256::digest(bytes)).as_str()), "{file}");
        assert_eq!(section["bytes"].as_u64(), Some(bytes.len() as u64), "{file}");
        let value: Value = serde_json::from_slice(bytes)?;
        let count = value.as_array().map_or(1, Vec::len) as u64;
        assert_eq!(section["count"].as_u64(), Some(count), "{file}");
        parsed.insert(section["name"].as_str().unwrap_or_default().to_owned(), value);
    }
    assert_eq!(files.len(), sections.len() + 1, "files beyond the manifest's");

    // What the account did is there.
    assert_eq!(parsed["profile"]["email"], email.as_str());
    assert_eq!(parsed["profile"]["display_name"], "Exported Name");
    assert_eq!(parsed["profile"]["tier"], "premium");
    let tiers: Vec<(Value, Value)> = parsed["tier_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from"].clone(), t["to"].clone()))
        .collect();
    assert_eq!(tiers, vec![(Value::Null, json!("free")), (json!("free"), json!("premium"))]);
    let logins = parsed["login_history"].as_array().unwrap();
    ensure!(logins.len() >= 2, "two logins, got {logins:?}");
    // The origin's login history keeps the network (/24, /64), country and device; the
    // addresses themselves are in the sessions the gate holds.
    ensure!(
        logins.iter().all(|l| l["context"].get("network").is_some()),
        "logins without their network: {logins:?}"
    );
    let sessions = parsed["sessions"].as_array().unwrap();
    ensure!(
        sessions.len() >= 2 && sessions.iter().all(|s| s["ip"].is_string()),
        "sessions with their IPs: {sessions:?}"
    );
    let actions: Vec<&str> =
        parsed["audit_trail"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for wanted in ["create", "profile_update", "tier_change", "consent", "export_requested"] {
        ensure!(actions.contains(&wanted), "{wanted} missing from the audit trail {actions:?}");
    }
    let marketing =
        parsed["consents"].as_array().unwrap().iter().find(|c| c["purpose"] == "marketing").cloned();
    assert_eq!(
        marketing.map(|m| (m["granted"].clone(), m["source"].clone())),
        Some((json!(true), json!("user")))
    );
    let factors = &parsed["mfa_factors"];
    ensure!(factors.as_array().unwrap().iter().any(|f| f["type"] == "totp"), "no TOTP factor: {factors}");
    assert!(parsed["ai_preferences"].get("personalization_level").is_some());
    assert!(parsed["security_settings"].is_object());
    assert_eq!(parsed["insights"]["user_id"], id.as_str());
    // Metadata only: no secret, hash or code anywhere in the archive.
    let everything: Vec<u8> = files.values().flatten().copied().collect();
    let text = String::from_utf8_lossy(&everything);
    ensure!(!text.contains(&secret), "the TOTP secret is in the export");
    ensure!(!text.contains("argon2"), "a password hash is in the export");
    ensure!(!text.contains(GOOD_PASSWORD), "the password is in the export");
    Ok(())
}

fn an_export_needs_a_fresh_proof_and_is_downloaded_three_times_at_most(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = signup_and_login(ctx, "export-proof")?;
    let refused = ctx.api.post(&format!("{}/export", users(&id)), Some(&token), &json!({}))?;
    expect_problem(&refused, 403, "step-up-required")?;
    // Someone else's export: refused; an admin's: allowed without a step-up.
    let (other, _, other_token) = signup_and_login(ctx, "export-other")?;
    expect_problem(
        &ctx.api.post(&format!("{}/export", users(&id)), Some(&other_token), &json!({}))?,
        403,
        "forbidden",
    )?;
    let by_admin = ctx.api.post(&format!("{}/export", users(&other)), Some(&ctx.admin_token), &json!({}))?;
    expect(&by_admin, 202)?;

    // With the password in the request instead of a step-up.
    let started = ctx.api.post(
        &format!("{}/export", users(&id)),
        Some(&token),
        &json!({ "current_password": GOOD_PASSWORD }),
    )?;
    expect(&started, 202)?;
    let location = started.str("location");
    // A second request while it runs, or once it is done, names an export of this user only.
    let (again, _) = export(ctx, &id, &{
        step_up(ctx, &token)?;
        token.clone()
    })?;
    ensure!(again.starts_with(&format!("{}/exports/exp_", users(&id))), "{again}");
    let fetch = |path: &str, token: &str| -> Result<u16> {
        Ok(client().get(ctx.api.url(path)).bearer_auth(token).send()?.status().as_u16())
    };
    // Wait for the first one, then download it up to the limit.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = fetch(&location, &token)?;
    while first == 202 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        first = fetch(&location, &token)?;
    }
    assert_eq!(first, 200);
    assert_eq!(fetch(&location, &other_token)?, 403, "another user's export");
    assert_eq!(fetch(&location, &token)?, 200);
    assert_eq!(fetch(&location, &token)?, 200);
    let used_up = ctx.api.get(&location, Some(&token))?;
    expect_problem(&used_up, 410, "gone")?;
    expect_problem(
        &ctx.api.get(&format!("{}/exports/exp_0000", users(&id)), Some(&token))?,
        404,
        "not-found",
    )?;
    // Audited: the request and each download.
    let audit = ctx.api.get(&format!("{}/audit", users(&id)), Some(&token))?;
    let downloads = audit.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "export_downloaded")
        .count();
    ensure!(downloads >= 4, "{downloads} downloads audited: {}", audit.body);
    Ok(())
}

fn a_scheduled_erasure_ends_sessions_refuses_login_and_can_be_cancelled(ctx: &Ctx) -> Result<()> {
    let (id, email, token) = signup_and_login(ctx, "erase-later")?;
    // The current password is required, and only an admin may erase at once.
    expect_problem(&ctx.api.delete_with(&users(&id), &token, &json!({}))?, 403, "step-up-required")?;
    let wrong = ctx.api.delete_with(
        &users(&id),
        &token,
        &json!({ "current_password": "not the password at all" }),
    )?;
    expect_problem(&wrong, 401, "unauthenticated")?;
    let now = ctx.api.delete_with(
        &users(&id),
        &token,
        &json!({ "current_password": GOOD_PASSWORD, "immediately": true }),
    )?;
    expect_problem(&now, 403, "forbidden")?;

    let scheduled =
        ctx.api.delete_with(&users(&id), &token, &json!({ "current_password": GOOD_PASSWORD }))?;
    expect(&scheduled, 202)?;
    assert_eq!(scheduled.body["sessions_ended"], 1);
    let due = scheduled.str("erasure_due_at");
    ensure!(!due.is_empty(), "no due date: {}", scheduled.body);
    // Sessions end at once.
    expect_problem(&ctx.api.get(&users(&id), Some(&token))?, 401, "unauthenticated")?;
    // The user was told by email.
    ensure!(
        ctx.stack
            .messages_for(&email)
            .iter()
            .any(|(text, _)| text.contains("will be erased") && text.contains("/erasure/cancel")),
        "no erasure notice for {email}"
    );
    // Login is refused with a problem that says how to cancel; a wrong password learns nothing.
    let login =
        ctx.api.post("/api/v1/auth/login", None, &json!({ "email": email, "password": GOOD_PASSWORD }))?;
    expect_problem(&login, 403, "erasure-pending")?;
    assert_eq!(login.str("cancel"), format!("{}/erasure/cancel", users(&id)));
    assert_eq!(login.str("erasure_due_at"), due);
    let wrong = ctx.api.post(
        "/api/v1/auth/login",
        None,
        &json!({ "email": email, "password": "not the password at all" }),
    )?;
    expect_problem(&wrong, 401, "unauthenticated")?;

    // Cancelling needs the password; then login works again.
    let cancel = format!("{}/erasure/cancel", users(&id));
    expect_problem(
        &ctx.api.post(&cancel, None, &json!({ "password": "not the password at all" }))?,
        401,
        "unauthenticated",
    )?;
    expect_problem(&ctx.api.post(&cancel, None, &json!({}))?, 400, "bad-request")?;
    let cancelled = ctx.api.post(&cancel, None, &json!({ "password": GOOD_PASSWORD }))?;
    expect(&cancelled, 200)?;
    assert_eq!(cancelled.body["erasure_cancelled"], true);
    expect_problem(&ctx.api.post(&cancel, None, &json!({ "password": GOOD_PASSWORD }))?, 409, "conflict")?;
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    let read = ctx.api.get(&users(&id), Some(&token))?;
    expect(&read, 200)?;
    let audit = ctx.api.get(&format!("{}/audit", users(&id)), Some(&token))?;
    let actions: Vec<&str> =
        audit.body["entries"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    ensure!(actions.contains(&"erasure_requested") && actions.contains(&"erasure_cancelled"), "{actions:?}");
    Ok(())
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path.display().to_string(), bytes));
            }
        }
    }
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files of the edge's KV (`v3/kv`) and Durable Objects (`v3/do`) that hold the id or the
/// email. The emulator's own request traces (`v3/observability`) are its access log, not the
/// stores an erasure wipes.
fn edge_traces(edge_state: &Path, id: &str, email: &str) -> Result<Vec<String>> {
    let stores: Vec<(String, Vec<u8>)> = [edge_state.join("v3/kv"), edge_state.join("v3/do")]
        .iter()
        .map(|d| files_under(d))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    ensure!(stores.len() >= 2, "the KV and Durable Object files were not found: {stores:?}");
    Ok(stores
        .into_iter()
        .filter(|(_, bytes)| contains(bytes, id.as_bytes()) || contains(bytes, email.as_bytes()))
        .map(|(file, bytes)| {
            format!(
                "{file} (id: {}, email: {})",
                contains(&bytes, id.as_bytes()),
                contains(&bytes, email.as_bytes())
            )
        })
        .collect())
}

/// A cron trigger of the edge, fired through `wrangler dev --test-scheduled`.
fn fire(stack: &Stack, cron: &str) -> Result<()> {
    let url = format!("{}/__scheduled?cron={}", stack.edge_url(), cron.replace(' ', "+"));
    let fired = client().get(url).send()?;
    ensure!(fired.status().is_success(), "the scheduled handler answered {}", fired.status());
    Ok(())
}

fn a_due_erasure_runs_in_the_cleanup_job_and_the_edge_cron_wipes_its_part(_ctx: &Ctx) -> Result<()> {
    // A stack of its own whose grace period is zero: a request is due at once, and runs when
    // the weekly cleanup fires.
    let backend = Backend::from_env()?;
    let stack = Stack::start_configured(
        &[("IP_SIGNUP_PER_HOUR", "1000"), ("IP_LOGIN_PER_MINUTE", "1000")],
        &[("ORIGIN_ERASURE_GRACE_DAYS", "0")],
        backend,
    )?;
    let api = Api::new(stack.edge_url());
    let email = unique_email("erase-due");
    let created = api.signup(&email, GOOD_PASSWORD, json!({ "display_name": "Due Tester" }))?;
    expect(&created, 201)?;
    let id = created.str("id");
    let token = api.login(&email, GOOD_PASSWORD)?;
    expect(&api.get(&users(&id), Some(&token))?, 200)?;
    expect(&api.get(&users(&id), Some(&token))?, 200)?;
    let edge_state = stack.edge_state_dir();
    ensure!(
        !edge_traces(&edge_state, &id, &email)?.is_empty(),
        "the edge never held the user: the search would prove nothing"
    );

    let scheduled = api.delete_with(&users(&id), &token, &json!({ "current_password": GOOD_PASSWORD }))?;
    expect(&scheduled, 202)?;
    // Due, not yet run: login still says how to cancel.
    let login =
        api.post("/api/v1/auth/login", None, &json!({ "email": email, "password": GOOD_PASSWORD }))?;
    expect_problem(&login, 403, "erasure-pending")?;

    fire(&stack, "0 3 * * 0")?;
    let secret = stack.secrets.shared_secret()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs: Value =
            SignedCall::new("GET", "/internal/jobs/runs", b"").send(&stack.origin_url(), &secret)?.json()?;
        let done = runs["runs"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["job"] == "cleanup" && r["ok"] == true).cloned());
        if let Some(run) = done {
            assert_eq!(run["summary"]["erasures"], 1, "{run}");
            break;
        }
        ensure!(Instant::now() < deadline, "no finished cleanup run: {runs}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Erased at the origin: the same answer as an unknown email.
    let old = api.post("/api/v1/auth/login", None, &json!({ "email": email, "password": GOOD_PASSWORD }))?;
    let never = json!({ "email": unique_email("never"), "password": GOOD_PASSWORD });
    let unknown = api.post("/api/v1/auth/login", None, &never)?;
    assert_eq!((old.status, &old.body), (unknown.status, &unknown.body));
    // The edge's part waits for its cron, which asks the origin what is left to wipe.
    fire(&stack, "*/15 * * * *")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = edge_traces(&edge_state, &id, &email)?;
        let pending: Value = SignedCall::new("GET", "/internal/erasures/pending", b"")
            .send(&stack.origin_url(), &secret)?
            .json()?;
        if left.is_empty() && pending["user_ids"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        ensure!(Instant::now() < deadline, "the edge still holds the user: {left:#?}; pending: {pending}");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    if let Some(file) = stack.stored_in_clear(id.as_bytes())? {
        anyhow::bail!("the id is still in {file}");
    }
    if let Some(file) = stack.stored_in_clear(email.as_bytes())? {
        anyhow::bail!("the email is still in {file}");
    }
    Ok(())
}

fn an_immediate_erasure_leaves_no_trace_in_sqlite_kv_or_the_durable_object(ctx: &Ctx) -> Result<()> {
    let (id, email, token) = signup_and_login(ctx, "erase-now")?;
    let refresh =
        ctx.api.post("/api/v1/auth/login", None, &json!({ "email": email, "password": GOOD_PASSWORD }))?;
    expect(&refresh, 200)?;
    let refresh_token = refresh.str("refresh_token");
    // Traces everywhere: the KV profile entry (a read fills it), events, history, a consent.
    expect(&ctx.api.get(&users(&id), Some(&token))?, 200)?;
    expect(&ctx.api.get(&users(&id), Some(&token))?, 200)?;
    expect(
        &ctx.api.put(
            &format!("{}/consents", users(&id)),
            &token,
            &json!({ "consents": { "marketing": true } }),
            None,
        )?,
        200,
    )?;
    let edge_state = ctx.stack.edge_state_dir();
    let before = files_under(&edge_state.join("v3/do"))?;
    ensure!(
        before.iter().any(|(_, b)| contains(b, id.as_bytes())),
        "the Durable Object never held the id: the search would prove nothing"
    );
    let kv = files_under(&edge_state.join("v3/kv"))?;
    ensure!(
        kv.iter().any(|(_, b)| contains(b, email.as_bytes())),
        "KV never held the email: the search would prove nothing"
    );
    // The user's events reach the origin (the queue delivers them within seconds).
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctx.stack.stored_in_clear(id.as_bytes())?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }

    // The owner cannot erase at once; an admin can, and the answer says what went.
    let started = Instant::now();
    let erased = ctx.api.delete_with(&users(&id), &ctx.admin_token, &json!({ "immediately": true }))?;
    eprintln!(
        "immediate erasure (origin rows, KV, Durable Object): {} ms, purged {}",
        started.elapsed().as_millis(),
        erased.body["purged"]
    );
    expect(&erased, 200)?;
    assert_eq!(erased.body["erased"], true);
    assert_eq!(erased.body["edge_wiped"], true, "{}", erased.body);
    ensure!(erased.body["purged"]["login_history"].as_u64() >= Some(2), "{}", erased.body);
    assert_eq!(erased.body["purged"]["users"], 1);

    // Tokens refused, refresh refused, login like an unknown email, admin reads and export 404.
    expect_problem(&ctx.api.get(&users(&id), Some(&token))?, 401, "unauthenticated")?;
    expect_problem(
        &ctx.api.post("/api/v1/auth/refresh", None, &json!({ "refresh_token": refresh_token }))?,
        401,
        "unauthenticated",
    )?;
    let old =
        ctx.api.post("/api/v1/auth/login", None, &json!({ "email": email, "password": GOOD_PASSWORD }))?;
    let unknown = ctx.api.post(
        "/api/v1/auth/login",
        None,
        &json!({ "email": unique_email("never"), "password": GOOD_PASSWORD }),
    )?;
    assert_eq!(
        (old.status, &old.body),
        (unknown.status, &unknown.body),
        "an erased account's login differs from an unknown email's"
    );
    expect_problem(&ctx.api.get(&users(&id), Some(&ctx.admin_token))?, 404, "not-found")?;
    expect_problem(
        &ctx.api.post(&format!("{}/export", users(&id)), Some(&ctx.admin_token), &json!({}))?,
        404,
        "not-found",
    )?;
    expect_problem(
        &ctx.api.delete_with(&users(&id), &ctx.admin_token, &json!({ "immediately": true }))?,
        404,
        "not-found",
    )?;

    // Events still queued about the user (the requests above) must not bring the id back.
    std::thread::sleep(Duration::from_secs(3));
    // No trace of the id or the email: the origin's database (SQLite files with their WAL, or
    // a dump of PostgreSQL), and every file of the edge's local KV and Durable Object storage.
    if let Some(file) = ctx.stack.stored_in_clear(id.as_bytes())? {
        anyhow::bail!("the id is still in {file}");
    }
    if let Some(file) = ctx.stack.stored_in_clear(email.as_bytes())? {
        anyhow::bail!("the email is still in {file}");
    }
    let left = edge_traces(&edge_state, &id, &email)?;
    ensure!(left.is_empty(), "the erased user is still in the edge's files: {left:#?}");
    // The address is free again.
    expect(&ctx.api.signup(&email, GOOD_PASSWORD, json!({}))?, 201)?;
    Ok(())
}

fn consent_of(answer: &Answer, purpose: &str) -> (Value, Value) {
    let c = answer.body["consents"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["purpose"] == purpose))
        .cloned()
        .unwrap_or_default();
    (c["granted"].clone(), c["source"].clone())
}

fn withdrawing_analytics_stops_events_and_gpc_opts_out_of_sharing(ctx: &Ctx) -> Result<()> {
    let (id, email, token) = signup_and_login(ctx, "consent")?;
    let path = format!("{}/consents", users(&id));
    let defaults = ctx.api.get(&path, Some(&token))?;
    expect(&defaults, 200)?;
    assert_eq!(defaults.body["consents"].as_array().map(Vec::len), Some(5));
    assert_eq!(consent_of(&defaults, "analytics"), (json!(true), json!("default")));
    assert_eq!(consent_of(&defaults, "marketing"), (json!(false), json!("default")));
    assert_eq!(defaults.body["collects_events"], true);
    expect_problem(
        &ctx.api.put(&path, &token, &json!({ "consents": { "spam": true } }), None)?,
        400,
        "validation-failed",
    )?;
    expect_problem(
        &ctx.api.put(&path, &token, &json!({ "consents": { "analytics": "no" } }), None)?,
        400,
        "validation-failed",
    )?;

    // Events are collected while the consent holds: the insights count this user's requests.
    for _ in 0..3 {
        expect(&ctx.api.get(&users(&id), Some(&token))?, 200)?;
    }
    let count = |ctx: &Ctx| -> Result<u64> {
        let insights = ctx.api.get(&format!("{}/insights", users(&id)), Some(&ctx.admin_token))?;
        expect(&insights, 200)?;
        Ok(insights.body["activity_30d"]["api_request"].as_u64().unwrap_or(0))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(ctx)? < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    ensure!(count(ctx)? >= 3, "the consented requests' events never arrived");

    let withdrawn = ctx.api.put(&path, &token, &json!({ "consents": { "analytics": false } }), None)?;
    expect(&withdrawn, 200)?;
    assert_eq!(consent_of(&withdrawn, "analytics"), (json!(false), json!("user")));
    assert_eq!(withdrawn.body["collects_events"], false);
    // Let the events of the requests so far arrive, then make more: none of them is collected.
    std::thread::sleep(Duration::from_secs(3));
    let logins = |ctx: &Ctx| -> Result<u64> {
        let insights = ctx.api.get(&format!("{}/insights", users(&id)), Some(&ctx.admin_token))?;
        Ok(insights.body["activity_30d"]["login_success"].as_u64().unwrap_or(0))
    };
    let settled = count(ctx)?;
    let settled_logins = logins(ctx)?;
    ensure!(settled_logins >= 1, "the consented login's event never arrived");
    for _ in 0..5 {
        expect(&ctx.api.get(&users(&id), Some(&token))?, 200)?;
    }
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(ctx)?, settled, "events were collected after analytics was withdrawn");
    assert_eq!(logins(ctx)?, settled_logins, "a login was collected after analytics was withdrawn");

    // Sec-GPC: 1 withdraws sale and sharing, recorded with its source; an opt-in under the
    // signal does not take.
    expect(
        &ctx.api.put(&path, &token, &json!({ "consents": { "third_party_integrations": true } }), None)?,
        200,
    )?;
    let gpc = e2e::api::send(client().get(ctx.api.url(&path)).bearer_auth(&token).header("sec-gpc", "1"))?;
    expect(&gpc, 200)?;
    assert_eq!(consent_of(&gpc, "third_party_integrations"), (json!(false), json!("gpc")));
    assert_eq!(consent_of(&gpc, "marketing"), (json!(false), json!("default")));
    let opt_in = e2e::api::send(
        client()
            .put(ctx.api.url(&path))
            .bearer_auth(&token)
            .header("sec-gpc", "1")
            .json(&json!({ "consents": { "marketing": true } })),
    )?;
    expect(&opt_in, 200)?;
    assert_eq!(consent_of(&opt_in, "marketing").0, json!(false));
    let audit = ctx.api.get(&format!("{}/audit", users(&id)), Some(&token))?;
    ensure!(
        audit.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["new"].as_str().is_some_and(|v| v.contains("source=gpc"))),
        "the GPC opt-out is not audited: {}",
        audit.body
    );
    Ok(())
}

/// A birth date `years` years (and a day) before today, UTC.
fn born_years_ago(years: i64) -> String {
    let now = e2e::http::now().0 / 1000;
    let days = i64::try_from(now / 86_400).unwrap() - years * 365 - years / 4 - 2;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 };
    format!("{y:04}-{m:02}-{d:02}")
}

fn child_signup(ctx: &Ctx, email: &str, parent: &str) -> Result<Answer> {
    ctx.api.post(
        "/api/v1/users",
        None,
        &json!({ "email": email, "password": GOOD_PASSWORD, "birth_date": born_years_ago(10),
                 "parent_email": parent, "profile": { "display_name": "Child Name" } }),
    )
}

fn an_under_13_signup_cannot_log_in_until_a_parent_consents(ctx: &Ctx) -> Result<()> {
    let (email, parent) = (unique_email("child"), unique_email("parent"));
    // The age is read first: malformed, future, or a child without a parent's email: 400.
    let bad = ctx.api.post(
        "/api/v1/users",
        None,
        &json!({ "email": email, "password": GOOD_PASSWORD, "birth_date": "2015-02-30" }),
    )?;
    expect_problem(&bad, 400, "validation-failed")?;
    let alone = ctx.api.post(
        "/api/v1/users",
        None,
        &json!({ "email": email, "password": GOOD_PASSWORD, "birth_date": born_years_ago(10) }),
    )?;
    expect_problem(&alone, 400, "validation-failed")?;
    assert_eq!(alone.body["errors"][0]["field"], "parent_email");

    let pending = child_signup(ctx, &email, &parent)?;
    expect(&pending, 202)?;
    assert_eq!(pending.str("status"), "pending_parental_consent");
    let id = pending.str("id");
    // No login until the parent consents: the same answer as a wrong password.
    let login =
        ctx.api.post("/api/v1/auth/login", None, &json!({ "email": email, "password": GOOD_PASSWORD }))?;
    expect_problem(&login, 401, "unauthenticated")?;
    // The parent got a single-use link; the child's name was not kept.
    let (_, token) =
        ctx.stack.messages_for(&parent).into_iter().last().context("no message to the parent")?;
    let token = token.context("no token in the parent's message")?;
    let consent = "/api/v1/auth/parental-consent";
    expect_problem(
        &ctx.api.post(consent, None, &json!({ "token": token, "decision": "maybe" }))?,
        400,
        "validation-failed",
    )?;
    let granted = ctx.api.post(consent, None, &json!({ "token": token, "decision": "grant" }))?;
    expect(&granted, 200)?;
    assert_eq!(granted.str("method"), "email_link");
    expect_problem(
        &ctx.api.post(consent, None, &json!({ "token": token, "decision": "grant" }))?,
        404,
        "not-found",
    )?;
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    let view = ctx.api.get(&users(&id), Some(&token))?;
    expect(&view, 200)?;
    ensure!(
        view.body["display_name"] != "Child Name",
        "the child's name was stored before consent: {}",
        view.body
    );
    // A minor: personalisation and marketing off by default.
    let consents = ctx.api.get(&format!("{}/consents", users(&id)), Some(&token))?;
    assert_eq!(consent_of(&consents, "personalization").0, json!(false));
    assert_eq!(consent_of(&consents, "marketing").0, json!(false));
    let audit = ctx.api.get(&format!("{}/audit", users(&id)), Some(&token))?;
    ensure!(
        audit.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "parental_consent" && e["new"] == "granted method=email_link"),
        "the consent and its method are not recorded: {}",
        audit.body
    );

    // A refusal deletes the account: the address is free, the login like an unknown email's.
    let (email2, parent2) = (unique_email("child"), unique_email("parent"));
    expect(&child_signup(ctx, &email2, &parent2)?, 202)?;
    let (_, token2) = ctx.stack.messages_for(&parent2).into_iter().last().context("no message")?;
    let refused =
        ctx.api.post(consent, None, &json!({ "token": token2.unwrap_or_default(), "decision": "refuse" }))?;
    expect(&refused, 200)?;
    assert_eq!(refused.body["erased"], true);
    expect(&child_signup(ctx, &email2, &parent2)?, 202)?;

    // A 14-year-old signs up directly, as a minor.
    let teen = unique_email("teen");
    let created = ctx.api.post(
        "/api/v1/users",
        None,
        &json!({ "email": teen, "password": GOOD_PASSWORD, "birth_date": born_years_ago(14) }),
    )?;
    expect(&created, 201)?;
    let teen_token = ctx.api.login(&teen, GOOD_PASSWORD)?;
    let teen_consents = ctx.api.get(&format!("{}/consents", users(&created.str("id"))), Some(&teen_token))?;
    assert_eq!(consent_of(&teen_consents, "personalization").0, json!(false));
    assert_eq!(consent_of(&teen_consents, "analytics").0, json!(true));
    Ok(())
}
