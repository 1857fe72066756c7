//! The integration hub (issue 15), end to end: the edge, the origin, and a real OAuth 2.0
//! authorization server with a Spotify-like API and a Last.fm-like endpoint
//! (`e2e::oauth::FakeProvider`), started for each test on the port the stack's origins were
//! configured with. The browser's part (following the authorize URL, coming back with the
//! binding cookie) is played by a client that follows no redirect.

use anyhow::{ensure, Context, Result};
use e2e::api::{send, unique_email, Answer, GOOD_PASSWORD};
use e2e::oauth::{FakeProvider, Track};
use serde_json::{json, Value};

use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "integrations::the_catalogue_lists_seventeen_services_with_tier_rules",
        the_catalogue_lists_seventeen_services_with_tier_rules,
    ),
    (
        "integrations::a_free_user_asking_for_slack_gets_403_naming_the_rule",
        a_free_user_asking_for_slack_gets_403_naming_the_rule,
    ),
    (
        "integrations::spotify_connects_with_pkce_refreshes_syncs_and_disconnects",
        spotify_connects_with_pkce_refreshes_syncs_and_disconnects,
    ),
    (
        "integrations::discord_slack_and_google_calendar_connect_refresh_and_revoke",
        discord_slack_and_google_calendar_connect_refresh_and_revoke,
    ),
    ("integrations::lastfm_connects_with_its_signed_session", lastfm_connects_with_its_signed_session),
    (
        "integrations::a_local_integration_gets_a_scoped_key_shown_once",
        a_local_integration_gets_a_scoped_key_shown_once,
    ),
    (
        "integrations::a_state_works_once_for_its_service_and_browser",
        a_state_works_once_for_its_service_and_browser,
    ),
    (
        "integrations::invalid_grant_marks_needs_reconnect_and_mails_the_user",
        invalid_grant_marks_needs_reconnect_and_mails_the_user,
    ),
    ("integrations::a_rate_limited_sync_waits_for_retry_after", a_rate_limited_sync_waits_for_retry_after),
    (
        "integrations::a_downgrade_disables_what_the_new_tier_does_not_allow",
        a_downgrade_disables_what_the_new_tier_does_not_allow,
    ),
];

fn expect(answer: &Answer, status: u16) -> Result<()> {
    ensure!(answer.status == status, "expected {status}, got {}: {}", answer.status, answer.body);
    Ok(())
}

/// A user of `tier` (free: signed up; others: created by the admin), logged in: (id, email, token).
fn user(ctx: &Ctx, tier: &str) -> Result<(String, String, String)> {
    let email = unique_email(&format!("hub-{tier}"));
    if tier == "free" {
        let created = ctx.api.signup(&email, GOOD_PASSWORD, json!({}))?;
        expect(&created, 201)?;
        return Ok((created.str("id"), email.clone(), ctx.api.login(&email, GOOD_PASSWORD)?));
    }
    let created = ctx.api.post(
        "/api/v1/users",
        Some(&ctx.admin_token),
        &json!({ "email": email, "password": GOOD_PASSWORD, "tier": tier }),
    )?;
    expect(&created, 201)?;
    // Enterprise and VIP accounts must use a second factor (their floor): the emailed code.
    let token = if tier == "premium" {
        ctx.api.login(&email, GOOD_PASSWORD)?
    } else {
        ctx.stack.login_with_email_code(&ctx.api, &email, GOOD_PASSWORD)?
    };
    Ok((created.str("id"), email, token))
}

fn browser() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?)
}

/// What the user's browser does at the provider: opens the authorize URL, which redirects to
/// the callback; answers the callback's query parameters.
fn approve(authorize_url: &str) -> Result<Vec<(String, String)>> {
    let response = browser()?.get(authorize_url).send()?;
    ensure!(response.status().as_u16() == 302, "the authorize page answered {}", response.status());
    let location = response.headers().get("location").context("no location")?.to_str()?.to_owned();
    let url = reqwest::Url::parse(&location)?;
    Ok(url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The binding cookie a connect answer set (`name=value`).
fn binding(answer: &Answer) -> Result<String> {
    let cookie = answer.header("set-cookie").context("no set-cookie")?;
    ensure!(
        cookie.starts_with("__Host-um-integration=")
            && cookie.contains("Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("Path=/"),
        "cookie: {cookie}"
    );
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

fn callback(ctx: &Ctx, service: &str, params: &[(String, String)], cookie: Option<&str>) -> Result<Answer> {
    let mut request =
        browser()?.get(ctx.api.url(&format!("/api/v1/integrations/{service}/callback"))).query(params);
    if let Some(c) = cookie {
        request = request.header("cookie", c);
    }
    send(request)
}

fn connect(ctx: &Ctx, id: &str, token: &str, service: &str) -> Result<Answer> {
    ctx.api.post(&format!("/api/v1/users/{id}/integrations/{service}"), Some(token), &json!({}))
}

fn listed(ctx: &Ctx, id: &str, token: &str) -> Result<Vec<Value>> {
    let answer = ctx.api.get(&format!("/api/v1/users/{id}/integrations"), Some(token))?;
    expect(&answer, 200)?;
    Ok(answer.body["integrations"].as_array().cloned().unwrap_or_default())
}

fn one(ctx: &Ctx, id: &str, token: &str, service: &str) -> Result<Value> {
    listed(ctx, id, token)?
        .into_iter()
        .find(|i| i["service"] == service)
        .with_context(|| format!("{service} is not listed"))
}

/// Connects `service` through the whole flow; answers the callback's answer.
fn connect_fully(ctx: &Ctx, id: &str, token: &str, service: &str) -> Result<Answer> {
    let started = connect(ctx, id, token, service)?;
    expect(&started, 200)?;
    let cookie = binding(&started)?;
    let params = approve(&started.str("authorize_url"))?;
    ensure!(param(&params, "state") == Some(started.str("state").as_str()), "the state came back changed");
    let done = callback(ctx, service, &params, Some(&cookie))?;
    expect(&done, 200)?;
    Ok(done)
}

/// The origin CLI's JSON summary of a job.
fn job(ctx: &Ctx, name: &str) -> Result<Value> {
    let (code, stdout, stderr) = ctx.stack.origin_cli(&[name])?;
    ensure!(code == 0, "{name} exited {code}: {stderr}");
    Ok(serde_json::from_str(&stdout)?)
}

/// The fake provider for this test, on the stack's provider port (one test at a time).
fn provider(ctx: &Ctx) -> Result<(std::sync::MutexGuard<'_, ()>, FakeProvider)> {
    let guard = ctx.provider_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok((guard, FakeProvider::start_on(ctx.provider_port)?))
}

fn disconnect(ctx: &Ctx, id: &str, token: &str, service: &str) -> Result<Answer> {
    send(
        reqwest::blocking::Client::new()
            .delete(ctx.api.url(&format!("/api/v1/users/{id}/integrations/{service}")))
            .bearer_auth(token),
    )
}

fn the_catalogue_lists_seventeen_services_with_tier_rules(ctx: &Ctx) -> Result<()> {
    let (_, _, token) = user(ctx, "free")?;
    let answer = ctx.api.get("/api/v1/integrations", Some(&token))?;
    expect(&answer, 200)?;
    assert_eq!(answer.body["count"], 17);
    let list = answer.body["integrations"].as_array().context("integrations")?;
    let ids: Vec<&str> = list.iter().filter_map(|s| s["service"].as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "spotify",
            "apple_music",
            "youtube_music",
            "amazon_music",
            "lastfm",
            "discord",
            "twitter",
            "instagram",
            "slack",
            "notion",
            "google_calendar",
            "salesforce",
            "microsoft_365",
            "jira",
            "ableton_live",
            "logic_pro",
            "fl_studio"
        ]
    );
    let by_id = |id: &str| list.iter().find(|s| s["service"] == id).cloned().unwrap_or_default();
    let tiers = |id: &str| -> Vec<(String, String)> {
        by_id(id)["tiers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (t["tier"].as_str().unwrap_or("").to_owned(), t["grant"].as_str().unwrap_or("").to_owned())
            })
            .collect()
    };
    let pairs =
        |v: &[(&str, &str)]| v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        tiers("spotify"),
        pairs(&[("free", "basic"), ("premium", "full"), ("enterprise", "full"), ("vip", "full")])
    );
    assert_eq!(tiers("slack"), pairs(&[("enterprise", "full"), ("vip", "full")]));
    assert_eq!(tiers("discord"), pairs(&[("premium", "full"), ("enterprise", "full"), ("vip", "full")]));
    assert_eq!(by_id("spotify")["yours"], "basic");
    assert_eq!(by_id("slack")["yours"], Value::Null);
    assert_eq!(by_id("spotify")["auth"], "oauth2_pkce");
    assert_eq!(by_id("lastfm")["auth"], "lastfm");
    assert_eq!(by_id("fl_studio")["auth"], "local");
    assert_eq!(by_id("salesforce")["category"], "enterprise");
    Ok(())
}

fn a_free_user_asking_for_slack_gets_403_naming_the_rule(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = user(ctx, "free")?;
    let refused = connect(ctx, &id, &token, "slack")?;
    expect(&refused, 403)?;
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.body["rule"], "tier_integrations");
    assert_eq!(refused.body["tier"], "free");
    assert_eq!(refused.body["service"], "slack");
    assert_eq!(refused.body["allowed"], json!(["spotify_basic"]));
    assert_eq!(
        refused.body["detail"],
        "the free tier may not connect Slack (rule tier_integrations: the free tier allows spotify_basic)"
    );
    // An unknown service is a 404; another user's integrations a 403.
    expect(&connect(ctx, &id, &token, "myspace")?, 404)?;
    let (other, _, _) = user(ctx, "free")?;
    expect(&ctx.api.get(&format!("/api/v1/users/{other}/integrations"), Some(&token))?, 403)?;
    assert!(listed(ctx, &id, &token)?.is_empty());
    Ok(())
}

fn spotify_connects_with_pkce_refreshes_syncs_and_disconnects(ctx: &Ctx) -> Result<()> {
    let (_lock, fake) = provider(ctx)?;
    // Tokens that are due for renewal at once.
    fake.set_token_lifetime(60);
    let (id, _, token) = user(ctx, "free")?;
    let started = connect(ctx, &id, &token, "spotify")?;
    expect(&started, 200)?;
    let url = reqwest::Url::parse(&started.str("authorize_url"))?;
    let query: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    assert_eq!(url.path(), "/authorize");
    assert_eq!(param(&query, "client_id"), Some("test-spotify"));
    assert_eq!(param(&query, "code_challenge_method"), Some("S256"));
    assert_eq!(param(&query, "code_challenge").map(str::len), Some(43));
    // The free tier's basic scopes only.
    assert_eq!(param(&query, "scope"), Some("user-read-email user-read-recently-played user-library-read"));
    assert!(started.body.get("binding").is_none(), "the binding left the body for the cookie");
    let cookie = binding(&started)?;
    let params = approve(&started.str("authorize_url"))?;
    let done = callback(ctx, "spotify", &params, Some(&cookie))?;
    expect(&done, 200)?;
    assert_eq!(done.body["status"], "active");
    assert_eq!(done.body["account"], "spotify-listener");
    assert_eq!(done.body["user_id"], id.as_str());
    assert!(fake.calls().contains(&"pkce verified".to_owned()), "calls: {:?}", fake.calls());
    // Tokens: never answered, never stored in clear.
    let live = fake.live_access_tokens();
    assert_eq!(live.len(), 1);
    let listing = ctx.api.get(&format!("/api/v1/users/{id}/integrations"), Some(&token))?;
    ensure!(!listing.body.to_string().contains(&live[0]), "the list shows the token");
    assert_eq!(ctx.stack.stored_in_clear(live[0].as_bytes())?, None);
    let before = one(ctx, &id, &token, "spotify")?;
    assert_eq!(before["status"], "active");
    assert_eq!(
        before["scopes"],
        json!(["user-read-email", "user-read-recently-played", "user-library-read"])
    );

    // The refresh job renews a token that expires within 5 minutes.
    let summary = job(ctx, "refresh-integrations")?;
    ensure!(summary["refreshed"].as_u64() >= Some(1), "refresh: {summary}");
    ensure!(fake.calls().contains(&"token refresh_token".to_owned()), "calls: {:?}", fake.calls());
    let after = fake.live_access_tokens();
    assert_eq!(after.len(), 2, "the refreshed token is live beside the first (until it expires)");
    assert_eq!(
        ctx.stack.stored_in_clear(after.iter().find(|t| **t != live[0]).context("new")?.as_bytes())?,
        None
    );

    // The sync: two plays and one saved track become three track_played events, once.
    for (n, at) in [("1", "2026-11-30T10:00:00.000Z"), ("2", "2026-11-30T10:04:00.000Z")] {
        fake.add_play(Track {
            id: format!("track{n}"),
            name: format!("Song {n}"),
            artist: "Artist".into(),
            duration_ms: 200_000,
            at: at.into(),
        });
    }
    fake.add_saved(Track {
        id: "track9".into(),
        name: "Saved".into(),
        artist: "Other".into(),
        duration_ms: 180_000,
        at: "2026-11-29T08:00:00Z".into(),
    });
    let first = job(ctx, "sync-integrations")?;
    assert_eq!(first["events_stored"], 3, "{first}");
    assert_eq!(first["rate_limited"], 0);
    let second = job(ctx, "sync-integrations")?;
    assert_eq!(second["events_stored"], 0, "{second}");
    assert_eq!(second["events_duplicate"], 0, "the cursor asks only for what is newer: {second}");
    assert!(one(ctx, &id, &token, "spotify")?["last_sync_at"].is_string());

    // Disconnect: Spotify has no revocation endpoint; the tokens are deleted.
    let removed = disconnect(ctx, &id, &token, "spotify")?;
    expect(&removed, 200)?;
    assert_eq!(removed.body["removed"], true);
    assert_eq!(removed.body["revoked_at_provider"], false);
    assert!(listed(ctx, &id, &token)?.is_empty());
    expect(&disconnect(ctx, &id, &token, "spotify")?, 404)?;
    Ok(())
}

fn discord_slack_and_google_calendar_connect_refresh_and_revoke(ctx: &Ctx) -> Result<()> {
    let (_lock, fake) = provider(ctx)?;
    fake.set_token_lifetime(60);
    for (service, tier, pkce, account) in [
        ("discord", "premium", true, "discord-listener"),
        ("slack", "enterprise", false, "slack-listener"),
        ("google_calendar", "enterprise", true, "listener@calendar.test"),
    ] {
        let (id, _, token) = user(ctx, tier)?;
        let started = connect(ctx, &id, &token, service)?;
        expect(&started, 200)?;
        let url = reqwest::Url::parse(&started.str("authorize_url"))?;
        let query: Vec<(String, String)> =
            url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        assert_eq!(param(&query, "code_challenge").is_some(), pkce, "{service}");
        if service == "google_calendar" {
            assert_eq!(param(&query, "access_type"), Some("offline"));
        }
        let cookie = binding(&started)?;
        let done = callback(ctx, service, &approve(url.as_str())?, Some(&cookie))?;
        expect(&done, 200)?;
        assert_eq!(done.body["account"], account, "{service}");
        let refreshes = |f: &FakeProvider| f.calls().iter().filter(|c| *c == "token refresh_token").count();
        let before = refreshes(&fake);
        let summary = job(ctx, "refresh-integrations")?;
        assert_eq!(refreshes(&fake), before + 1, "{service}: {summary}");
        let item = one(ctx, &id, &token, service)?;
        assert_eq!(item["status"], "active");
        let client = format!("test-{service}");
        let removed = disconnect(ctx, &id, &token, service)?;
        expect(&removed, 200)?;
        assert_eq!(removed.body["revoked_at_provider"], true, "{service}");
        assert!(fake.calls().contains(&format!("revoke {client}")), "{service}: {:?}", fake.calls());
        assert!(listed(ctx, &id, &token)?.is_empty());
    }
    // Every grant was revoked: nothing the provider issued still works.
    assert!(fake.live_access_tokens().is_empty(), "live: {:?}", fake.live_access_tokens());
    Ok(())
}

fn lastfm_connects_with_its_signed_session(ctx: &Ctx) -> Result<()> {
    let (_lock, fake) = provider(ctx)?;
    let (id, _, token) = user(ctx, "premium")?;
    let started = connect(ctx, &id, &token, "lastfm")?;
    expect(&started, 200)?;
    let url = reqwest::Url::parse(&started.str("authorize_url"))?;
    assert_eq!(url.path(), "/api/auth/");
    let cookie = binding(&started)?;
    let params = approve(url.as_str())?;
    assert!(param(&params, "token").is_some_and(|t| t.starts_with("lfmtoken-")), "{params:?}");
    let done = callback(ctx, "lastfm", &params, Some(&cookie))?;
    expect(&done, 200)?;
    assert_eq!(done.body["account"], "lastfm-listener");
    assert!(fake.calls().contains(&"lastfm auth.getSession".to_owned()), "{:?}", fake.calls());
    let item = one(ctx, &id, &token, "lastfm")?;
    assert_eq!((item["status"].as_str(), item["expires_at"].is_null()), (Some("active"), true));
    let session = fake.live_access_tokens();
    assert_eq!(ctx.stack.stored_in_clear(session[0].as_bytes())?, None);
    let removed = disconnect(ctx, &id, &token, "lastfm")?;
    expect(&removed, 200)?;
    assert_eq!(removed.body["revoked_at_provider"], false);
    Ok(())
}

fn a_local_integration_gets_a_scoped_key_shown_once(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = user(ctx, "enterprise")?;
    let first = connect(ctx, &id, &token, "ableton_live")?;
    expect(&first, 201)?;
    let key = first.str("key");
    ensure!(
        key.starts_with("umk_ableton_live_") && key.len() == "umk_ableton_live_".len() + 32,
        "key: {key}"
    );
    assert_eq!(first.body["scopes"], json!(["projects:read", "listening:write"]));
    assert_eq!(ctx.stack.stored_in_clear(key.as_bytes())?, None);
    let item = one(ctx, &id, &token, "ableton_live")?;
    assert_eq!(item["status"], "active");
    assert_eq!(item["auth"], "local");
    ensure!(!item.to_string().contains(&key), "the list shows the key");
    let second = connect(ctx, &id, &token, "ableton_live")?;
    expect(&second, 201)?;
    assert_ne!(second.str("key"), key);
    let removed = disconnect(ctx, &id, &token, "ableton_live")?;
    expect(&removed, 200)?;
    assert!(listed(ctx, &id, &token)?.is_empty());
    // A premium account may not connect a desktop tool.
    let (pid, _, ptoken) = user(ctx, "premium")?;
    let refused = connect(ctx, &pid, &ptoken, "fl_studio")?;
    expect(&refused, 403)?;
    assert_eq!(refused.body["rule"], "tier_integrations");
    Ok(())
}

fn a_state_works_once_for_its_service_and_browser(ctx: &Ctx) -> Result<()> {
    let (_lock, fake) = provider(ctx)?;
    let (id, _, token) = user(ctx, "premium")?;
    let started = connect(ctx, &id, &token, "spotify")?;
    let cookie = binding(&started)?;
    let params = approve(&started.str("authorize_url"))?;
    let code = param(&params, "code").context("code")?.to_owned();
    let with_state =
        |state: &str| vec![("code".to_owned(), code.clone()), ("state".to_owned(), state.to_owned())];
    // A state nobody issued.
    let wrong = callback(ctx, "spotify", &with_state(&"ab".repeat(32)), Some(&cookie))?;
    expect(&wrong, 400)?;
    assert_eq!(wrong.body["detail"], "invalid state: the state is unknown or was used already");
    // The right state from another browser (no binding cookie) is refused, and spent.
    let elsewhere = callback(ctx, "spotify", &params, None)?;
    expect(&elsewhere, 400)?;
    assert_eq!(elsewhere.body["detail"], "invalid state: the state was issued to another browser");
    let after = callback(ctx, "spotify", &params, Some(&cookie))?;
    expect(&after, 400)?;
    // A state for Spotify presented at Discord's callback.
    let started = connect(ctx, &id, &token, "spotify")?;
    let cookie = binding(&started)?;
    let params = approve(&started.str("authorize_url"))?;
    let crossed = callback(ctx, "discord", &params, Some(&cookie))?;
    expect(&crossed, 400)?;
    assert_eq!(crossed.body["detail"], "invalid state: the state was issued for another service");
    // A good one works once; its replay is refused.
    let started = connect(ctx, &id, &token, "spotify")?;
    let cookie = binding(&started)?;
    let params = approve(&started.str("authorize_url"))?;
    expect(&callback(ctx, "spotify", &params, Some(&cookie))?, 200)?;
    let replayed = callback(ctx, "spotify", &params, Some(&cookie))?;
    expect(&replayed, 400)?;
    assert_eq!(replayed.body["detail"], "invalid state: the state is unknown or was used already");
    // Only the good one reached the token endpoint.
    assert_eq!(fake.calls().iter().filter(|c| *c == "token authorization_code").count(), 1);
    expect(&disconnect(ctx, &id, &token, "spotify")?, 200)?;
    Ok(())
}

fn invalid_grant_marks_needs_reconnect_and_mails_the_user(ctx: &Ctx) -> Result<()> {
    let (_lock, fake) = provider(ctx)?;
    fake.set_token_lifetime(60);
    let (id, email, token) = user(ctx, "free")?;
    connect_fully(ctx, &id, &token, "spotify")?;
    // The user removed the app at the provider: every refresh is refused.
    fake.refuse_refresh();
    let summary = job(ctx, "refresh-integrations")?;
    ensure!(summary["needs_reconnect"].as_u64() >= Some(1), "{summary}");
    let item = one(ctx, &id, &token, "spotify")?;
    assert_eq!(item["status"], "needs_reconnect");
    assert_eq!(item["last_error"], "invalid_grant");
    // The notice goes through the durable outbox (sent by the serving origin's dispatcher).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mail = loop {
        if let Some((text, _)) =
            ctx.stack.messages_for(&email).into_iter().find(|(t, _)| t.contains("Spotify"))
        {
            break text;
        }
        ensure!(std::time::Instant::now() < deadline, "no reconnect mail for {email}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(mail.contains("connect Spotify again"), "{mail}");
    // A second run neither refreshes it again nor mails twice.
    job(ctx, "refresh-integrations")?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(ctx.stack.messages_for(&email).iter().filter(|(t, _)| t.contains("Spotify")).count(), 1);
    // Connecting again makes it active.
    connect_fully(ctx, &id, &token, "spotify")?;
    assert_eq!(one(ctx, &id, &token, "spotify")?["status"], "active");
    expect(&disconnect(ctx, &id, &token, "spotify")?, 200)?;
    Ok(())
}

fn a_rate_limited_sync_waits_for_retry_after(ctx: &Ctx) -> Result<()> {
    let (_lock, fake) = provider(ctx)?;
    let (id, _, token) = user(ctx, "free")?;
    connect_fully(ctx, &id, &token, "spotify")?;
    fake.add_play(Track {
        id: "t1".into(),
        name: "One".into(),
        artist: "A".into(),
        duration_ms: 100_000,
        at: "2026-12-01T09:00:00Z".into(),
    });
    fake.rate_limit(Some(2));
    let limited = job(ctx, "sync-integrations")?;
    assert_eq!(
        (limited["rate_limited"].as_u64(), limited["events_stored"].as_u64()),
        (Some(1), Some(0)),
        "{limited}"
    );
    let item = one(ctx, &id, &token, "spotify")?;
    assert_eq!(item["last_error"], "rate_limited");
    assert!(item["retry_at"].is_string());
    // Before Retry-After has passed, the provider is not called at all.
    fake.rate_limit(None);
    let calls = fake.calls().len();
    let waiting = job(ctx, "sync-integrations")?;
    assert_eq!(waiting["integrations"], 0, "{waiting}");
    assert_eq!(fake.calls().len(), calls);
    std::thread::sleep(std::time::Duration::from_millis(2_200));
    let resumed = job(ctx, "sync-integrations")?;
    assert_eq!(resumed["events_stored"], 1, "{resumed}");
    let item = one(ctx, &id, &token, "spotify")?;
    assert_eq!((item["last_error"].is_null(), item["retry_at"].is_null()), (true, true), "{item}");
    expect(&disconnect(ctx, &id, &token, "spotify")?, 200)?;
    Ok(())
}

fn a_downgrade_disables_what_the_new_tier_does_not_allow(ctx: &Ctx) -> Result<()> {
    let (_lock, _fake) = provider(ctx)?;
    let (id, _, token) = user(ctx, "premium")?;
    connect_fully(ctx, &id, &token, "discord")?;
    let down =
        ctx.api.post(&format!("/api/v1/users/{id}/upgrade"), Some(&token), &json!({ "tier": "free" }))?;
    expect(&down, 200)?;
    assert_eq!(down.body["tier"], "free");
    assert_eq!(down.body["integrations_disabled"], json!(["discord"]));
    let item = one(ctx, &id, &token, "discord")?;
    assert_eq!(item["status"], "disabled");
    // Said once: the profile read afterwards does not carry it.
    let read = ctx.api.get(&format!("/api/v1/users/{id}"), Some(&token))?;
    expect(&read, 200)?;
    assert!(read.body.get("integrations_disabled").is_none(), "{}", read.body);
    // Kept, not deleted: the user can still disconnect it (revoked at the provider).
    let removed = disconnect(ctx, &id, &token, "discord")?;
    expect(&removed, 200)?;
    assert_eq!(removed.body["revoked_at_provider"], true);
    Ok(())
}
