//! Entitlements and metering (issue 19): service clients and their tokens (OAuth 2.0 client
//! credentials), usage reports exact under concurrency and idempotent on retries, scopes, and
//! the entitlements view after a downgrade and after each write (read-your-writes via the gate).

use anyhow::{ensure, Context, Result};
use e2e::api::{send, unique_email, Answer, Api, GOOD_PASSWORD};
use e2e::http::client;
use serde_json::{json, Value};

use crate::accounts::{expect, expect_problem, users};
use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "entitlements::twenty_parallel_reports_at_nine_playlists_admit_exactly_the_tenth",
        twenty_parallel_reports_at_nine_playlists_admit_exactly_the_tenth,
    ),
    (
        "entitlements::a_retried_report_with_the_same_key_counts_once",
        a_retried_report_with_the_same_key_counts_once,
    ),
    ("entitlements::a_token_without_usage_write_is_refused", a_token_without_usage_write_is_refused),
    (
        "entitlements::a_downgrade_makes_the_excess_read_only_and_keeps_it",
        a_downgrade_makes_the_excess_read_only_and_keeps_it,
    ),
    (
        "entitlements::a_wrong_secret_a_revoked_client_and_other_grants_are_refused",
        a_wrong_secret_a_revoked_client_and_other_grants_are_refused,
    ),
    (
        "entitlements::entitlements_come_from_the_cache_until_a_write_moves_the_epoch",
        entitlements_come_from_the_cache_until_a_write_moves_the_epoch,
    ),
];

/// A service client made by the shared admin: (client id, secret).
fn service_client(ctx: &Ctx, name: &str, scopes: &[&str]) -> Result<(String, String)> {
    let created = ctx.api.post(
        "/api/v1/service-clients",
        Some(&ctx.admin_token),
        &json!({ "name": name, "scopes": scopes }),
    )?;
    expect(&created, 201)?;
    let (id, secret) = (created.str("client_id"), created.str("client_secret"));
    ensure!(
        id.starts_with("svc_") && secret.starts_with("svs_"),
        "a client without its credentials: {}",
        created.body
    );
    Ok((id, secret))
}

/// A token request with HTTP Basic client authentication (RFC 6749 §2.3.1).
fn token_request(ctx: &Ctx, id: &str, secret: &str, form: &str) -> Result<Answer> {
    send(
        client()
            .post(ctx.api.url("/api/v1/oauth/token"))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned()),
    )
}

fn service_token(ctx: &Ctx, id: &str, secret: &str) -> Result<String> {
    let answer = token_request(ctx, id, secret, "grant_type=client_credentials")?;
    expect(&answer, 200)?;
    ensure!(answer.str("token_type") == "Bearer", "token_type in {}", answer.body);
    ensure!(answer.header("cache-control").as_deref() == Some("no-store"), "a token answer is not stored");
    Ok(answer.str("access_token"))
}

fn report(api: &Api, token: &str, user: &str, resource: &str, delta: i64, key: &str) -> Result<Answer> {
    api.post(
        &format!("{}/usage", users(user)),
        Some(token),
        &json!({ "resource": resource, "delta": delta, "idempotency_key": key }),
    )
}

fn entitlements(ctx: &Ctx, token: &str, user: &str) -> Result<Answer> {
    ctx.api.get(&format!("{}/entitlements", users(user)), Some(token))
}

/// A fresh free user: (id, their access token).
fn free_user(ctx: &Ctx, prefix: &str) -> Result<(String, String)> {
    let email = unique_email(prefix);
    let created = ctx.api.signup(&email, GOOD_PASSWORD, json!({}))?;
    expect(&created, 201)?;
    Ok((created.str("id"), ctx.api.login(&email, GOOD_PASSWORD)?))
}

fn unique_key(label: &str) -> String {
    unique_email(label).replace('@', "-")
}

fn twenty_parallel_reports_at_nine_playlists_admit_exactly_the_tenth(ctx: &Ctx) -> Result<()> {
    let (client, secret) = service_client(ctx, "playlists service", &["usage:write", "entitlements:read"])?;
    let token = service_token(ctx, &client, &secret)?;
    let (user, user_token) = free_user(ctx, "meter-parallel")?;
    let nine = report(&ctx.api, &token, &user, "playlists", 9, &unique_key("nine"))?;
    expect(&nine, 200)?;
    assert_eq!((nine.body["used"].as_u64(), nine.body["remaining"].as_u64()), (Some(9), Some(1)));

    let answers: Vec<Answer> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (api, token, user) = (&ctx.api, &token, &user);
                scope.spawn(move || report(api, token, user, "playlists", 1, &unique_key(&format!("p{i}"))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a reporting thread panicked")).collect::<Result<_>>()
    })?;
    let admitted: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let refused: Vec<&Answer> = answers.iter().filter(|a| a.status == 403).collect();
    ensure!(
        admitted.len() == 1 && refused.len() == 19,
        "expected 1 admitted and 19 refused, got {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(admitted[0].body["used"], 10);
    for refusal in &refused {
        expect_problem(refusal, 403, "entitlement-exceeded")?;
        assert_eq!(
            (refusal.body["resource"].as_str(), refusal.body["limit"].as_u64()),
            (Some("playlists"), Some(10))
        );
        ensure!(refusal.str("detail").contains("is 10"), "the refusal names the limit: {}", refusal.body);
    }
    let seen = entitlements(ctx, &user_token, &user)?;
    expect(&seen, 200)?;
    assert_eq!(
        seen.body["playlists"],
        json!({ "limit": 10, "used": 10, "remaining": 0, "read_only": false })
    );
    Ok(())
}

fn a_retried_report_with_the_same_key_counts_once(ctx: &Ctx) -> Result<()> {
    let (client, secret) = service_client(ctx, "storage service", &["usage:write"])?;
    let token = service_token(ctx, &client, &secret)?;
    let (user, user_token) = free_user(ctx, "meter-retry")?;
    let key = unique_key("upload");
    let first = report(&ctx.api, &token, &user, "storage_bytes", 40_000_000, &key)?;
    expect(&first, 200)?;
    assert_eq!(
        (first.body["used"].as_u64(), first.body["replayed"].as_bool()),
        (Some(40_000_000), Some(false))
    );
    // The retries, some at once: the same answer, counted once.
    let retries: Vec<Answer> = std::thread::scope(|scope| {
        let api = &ctx.api;
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| report(api, &token, &user, "storage_bytes", 40_000_000, &key)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a retry panicked")).collect::<Result<_>>()
    })?;
    for retry in &retries {
        expect(retry, 200)?;
        assert_eq!(
            (retry.body["used"].as_u64(), retry.body["replayed"].as_bool()),
            (Some(40_000_000), Some(true))
        );
    }
    // A new key counts; one past the 100 MB refuses, and its retry is refused the same way.
    expect(&report(&ctx.api, &token, &user, "storage_bytes", 50_000_000, &unique_key("second"))?, 200)?;
    let over_key = unique_key("over");
    let over = report(&ctx.api, &token, &user, "storage_bytes", 20_000_000, &over_key)?;
    expect_problem(&over, 403, "entitlement-exceeded")?;
    assert_eq!(
        (over.body["limit"].as_u64(), over.body["used"].as_u64()),
        (Some(100_000_000), Some(90_000_000))
    );
    let again = report(&ctx.api, &token, &user, "storage_bytes", 20_000_000, &over_key)?;
    expect_problem(&again, 403, "entitlement-exceeded")?;
    assert_eq!(again.body["replayed"], true);
    // The key of another report: refused, nothing counted.
    let reused = report(&ctx.api, &token, &user, "storage_bytes", 1, &key)?;
    expect_problem(&reused, 409, "conflict")?;
    // Deleting is always admitted.
    let freed = report(&ctx.api, &token, &user, "storage_bytes", -30_000_000, &unique_key("delete"))?;
    expect(&freed, 200)?;
    assert_eq!(freed.body["used"], 60_000_000);
    let seen = entitlements(ctx, &user_token, &user)?;
    assert_eq!(seen.body["storage"]["used_bytes"], 60_000_000);
    assert_eq!(seen.body["storage"]["limit_bytes"], 100_000_000);
    Ok(())
}

fn a_token_without_usage_write_is_refused(ctx: &Ctx) -> Result<()> {
    let (client, secret) = service_client(ctx, "read-only service", &["entitlements:read"])?;
    let token = service_token(ctx, &client, &secret)?;
    let (user, user_token) = free_user(ctx, "meter-scope")?;
    let refused = report(&ctx.api, &token, &user, "playlists", 1, &unique_key("scope"))?;
    expect_problem(&refused, 403, "forbidden")?;
    assert_eq!(
        (refused.str("error"), refused.str("scope")),
        ("insufficient_scope".into(), "usage:write".into())
    );
    // It may read what its scope allows, for any user.
    let read = entitlements(ctx, &token, &user)?;
    expect(&read, 200)?;
    assert_eq!(read.body["playlists"]["used"], 0);
    ensure!(
        read.header("ratelimit-policy").is_some_and(|p| p.starts_with("\"service\"")),
        "a service's limit"
    );
    // A client that may not ask for usage:write does not get it by asking.
    let asked = token_request(ctx, &client, &secret, "grant_type=client_credentials&scope=usage%3Awrite")?;
    expect_problem(&asked, 400, "bad-request")?;
    assert_eq!(asked.str("error"), "invalid_scope");
    // A user's own token cannot report usage, and a service token is no user token.
    let as_user = report(&ctx.api, &user_token, &user, "playlists", 1, &unique_key("user"))?;
    expect_problem(&as_user, 401, "unauthenticated")?;
    let profile = ctx.api.get(&users(&user), Some(&token))?;
    expect_problem(&profile, 401, "unauthenticated")?;
    // Nothing was counted.
    let seen = entitlements(ctx, &user_token, &user)?;
    assert_eq!(seen.body["playlists"]["used"], 0);
    Ok(())
}

fn a_downgrade_makes_the_excess_read_only_and_keeps_it(ctx: &Ctx) -> Result<()> {
    let (client, secret) = service_client(ctx, "playlists service", &["usage:write"])?;
    let token = service_token(ctx, &client, &secret)?;
    let (user, user_token) = free_user(ctx, "meter-downgrade")?;
    let upgrade = |tier: &str| -> Result<()> {
        let answer = ctx.api.post(
            &format!("{}/upgrade", users(&user)),
            Some(&user_token),
            &json!({ "tier": tier }),
        )?;
        expect(&answer, 200)
    };
    upgrade("premium")?;
    let premium = entitlements(ctx, &user_token, &user)?;
    assert_eq!(premium.body["tier"], "premium");
    assert_eq!(premium.body["playlists"]["limit"], Value::Null);
    expect(&report(&ctx.api, &token, &user, "playlists", 15, &unique_key("fifteen"))?, 200)?;

    upgrade("free")?;
    let free = entitlements(ctx, &user_token, &user)?;
    expect(&free, 200)?;
    assert_eq!(free.body["tier"], "free");
    assert_eq!(free.body["playlists"], json!({ "limit": 10, "used": 15, "remaining": 0, "read_only": true }));
    let restrictions = free.body["restrictions"].as_array().context("restrictions")?;
    ensure!(
        restrictions.iter().any(|r| r
            .as_str()
            .is_some_and(|r| r.starts_with("playlists: 15 used") && r.contains("read-only"))),
        "the read-only playlists are not named: {restrictions:?}"
    );
    // Nothing more may be added; deleting is admitted.
    let more = report(&ctx.api, &token, &user, "playlists", 1, &unique_key("more"))?;
    expect_problem(&more, 403, "entitlement-exceeded")?;
    assert_eq!((more.body["limit"].as_u64(), more.body["used"].as_u64()), (Some(10), Some(15)));
    let fewer = report(&ctx.api, &token, &user, "playlists", -1, &unique_key("fewer"))?;
    expect(&fewer, 200)?;
    assert_eq!((fewer.body["used"].as_u64(), fewer.body["read_only"].as_bool()), (Some(14), Some(true)));
    // An admin sees the same.
    let by_admin = entitlements(ctx, &ctx.admin_token, &user)?;
    assert_eq!(by_admin.body["playlists"]["used"], 14);
    // Another user may not look.
    let (_, other_token) = free_user(ctx, "meter-other")?;
    expect_problem(&entitlements(ctx, &other_token, &user)?, 403, "forbidden")?;
    Ok(())
}

fn a_wrong_secret_a_revoked_client_and_other_grants_are_refused(ctx: &Ctx) -> Result<()> {
    let (client_id, secret) = service_client(ctx, "composer", &["entitlements:read"])?;
    let wrong = token_request(ctx, &client_id, "svs_not-the-secret", "grant_type=client_credentials")?;
    expect_problem(&wrong, 401, "unauthenticated")?;
    assert_eq!(wrong.str("error"), "invalid_client");
    ensure!(
        wrong.header("www-authenticate").is_some_and(|h| h.starts_with("Basic")),
        "401 without WWW-Authenticate"
    );
    let unknown =
        token_request(ctx, "svc_00000000000000000000000000000000", &secret, "grant_type=client_credentials")?;
    assert_eq!((unknown.status, unknown.str("error")), (401, "invalid_client".into()));
    let password = token_request(ctx, &client_id, &secret, "grant_type=password&username=a&password=b")?;
    assert_eq!((password.status, password.str("error")), (400, "unsupported_grant_type".into()));
    // The secret in the body (client_secret_post) works too; as JSON it is not a token request.
    let posted = send(
        client_builder(ctx)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}")),
    )?;
    expect(&posted, 200)?;
    assert_eq!(posted.str("scope"), "entitlements:read");
    let as_json = send(client_builder(ctx).json(&json!({ "grant_type": "client_credentials" })))?;
    expect_problem(&as_json, 415, "unsupported-media-type")?;

    // Revoked: no new token, and the tokens it holds stop working at the origin.
    let token = posted.str("access_token");
    let revoked = send(
        client()
            .delete(ctx.api.url(&format!("/api/v1/service-clients/{client_id}")))
            .bearer_auth(&ctx.admin_token),
    )?;
    expect(&revoked, 200)?;
    ensure!(revoked.body["revoked_at"].is_string(), "revoked_at in {}", revoked.body);
    let after = token_request(ctx, &client_id, &secret, "grant_type=client_credentials")?;
    assert_eq!((after.status, after.str("error")), (401, "invalid_client".into()));
    let (user, _) = free_user(ctx, "meter-revoked")?;
    expect_problem(&entitlements(ctx, &token, &user)?, 401, "unauthenticated")?;
    // Only admins manage clients.
    let (_, user_token) = free_user(ctx, "meter-not-admin")?;
    let denied = ctx.api.post(
        "/api/v1/service-clients",
        Some(&user_token),
        &json!({ "name": "x", "scopes": ["usage:write"] }),
    )?;
    expect_problem(&denied, 403, "forbidden")?;
    let listed = ctx.api.get("/api/v1/service-clients", Some(&ctx.admin_token))?;
    expect(&listed, 200)?;
    let mine = listed.body["clients"]
        .as_array()
        .context("clients")?
        .iter()
        .find(|c| c["client_id"] == client_id.as_str())
        .cloned();
    ensure!(
        mine.is_some_and(|c| c["revoked_at"].is_string() && c.get("client_secret").is_none()),
        "the list: {}",
        listed.body
    );
    Ok(())
}

fn client_builder(ctx: &Ctx) -> reqwest::blocking::RequestBuilder {
    client().post(ctx.api.url("/api/v1/oauth/token"))
}

fn entitlements_come_from_the_cache_until_a_write_moves_the_epoch(ctx: &Ctx) -> Result<()> {
    let (client, secret) = service_client(ctx, "playlists service", &["usage:write", "entitlements:read"])?;
    let token = service_token(ctx, &client, &secret)?;
    let (user, user_token) = free_user(ctx, "meter-cache")?;
    let first = entitlements(ctx, &user_token, &user)?;
    expect(&first, 200)?;
    assert_eq!(first.source_of(), "origin");
    assert_eq!(first.body["user_id"], user.as_str());
    let second = entitlements(ctx, &user_token, &user)?;
    assert_eq!((second.source_of(), &second.body), ("cache", &first.body));
    // A report moves the user's epoch before it is answered: the next read is the origin's.
    expect(&report(&ctx.api, &token, &user, "playlists", 2, &unique_key("two"))?, 200)?;
    let by_service = entitlements(ctx, &token, &user)?;
    assert_eq!((by_service.source_of(), by_service.body["playlists"]["used"].as_u64()), ("origin", Some(2)));
    let by_user = entitlements(ctx, &user_token, &user)?;
    assert_eq!((by_user.source_of(), by_user.body["playlists"]["used"].as_u64()), ("cache", Some(2)));
    // So does a consent change: personalization withdrawn, the AI features follow at once.
    let consents = ctx.api.put(
        &format!("{}/consents", users(&user)),
        &user_token,
        &json!({ "consents": { "personalization": false } }),
        None,
    )?;
    expect(&consents, 200)?;
    let after = entitlements(ctx, &user_token, &user)?;
    assert_eq!(after.source_of(), "origin");
    assert_eq!(after.body["ai_features"]["personalization_levels"], json!([]));
    Ok(())
}

trait Source {
    fn source_of(&self) -> &str;
}

impl Source for Answer {
    fn source_of(&self) -> &str {
        self.headers.get("x-entitlements-source").and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}
