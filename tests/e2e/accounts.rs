//! Accounts, login and profiles through the edge, with the origin as the source of truth.

use anyhow::{ensure, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::time::UnixMillis;
use domain::token::{access_signing_input, signed, SigningKey, Subject, TokenPolicy, VerifyingKey};
use e2e::api::{unique_email, Answer, GOOD_PASSWORD};
use e2e::http::now;
use serde_json::{json, Value};

use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    ("accounts::the_product_flow_runs_over_http", the_product_flow_runs_over_http),
    ("accounts::bad_tokens_get_401", bad_tokens_get_401),
    ("accounts::other_users_accounts_are_403", other_users_accounts_are_403),
    ("accounts::read_only_fields_are_403_and_named", read_only_fields_are_403_and_named),
    ("accounts::bad_fields_are_400_naming_the_rule", bad_fields_are_400_naming_the_rule),
    ("accounts::tier_features_are_403", tier_features_are_403),
    ("accounts::password_rules_are_named", password_rules_are_named),
    ("accounts::duplicate_emails_are_409_whatever_their_case", duplicate_emails_are_409_whatever_their_case),
    ("accounts::stale_if_match_is_412", stale_if_match_is_412),
    ("accounts::public_signup_is_free_and_user_only", public_signup_is_free_and_user_only),
    ("accounts::users_move_between_free_and_premium_only", users_move_between_free_and_premium_only),
    (
        "accounts::unknown_email_and_wrong_password_answer_alike",
        unknown_email_and_wrong_password_answer_alike,
    ),
    ("accounts::the_database_holds_no_email_or_name_in_clear", the_database_holds_no_email_or_name_in_clear),
    ("accounts::reads_follow_writes_over_100_pairs", reads_follow_writes_over_100_pairs),
    ("accounts::repeated_reads_are_served_from_kv", repeated_reads_are_served_from_kv),
    ("accounts::jwks_publishes_the_signing_key", jwks_publishes_the_signing_key),
    ("accounts::answers_match_the_openapi_document", answers_match_the_openapi_document),
    ("accounts::every_change_is_in_the_audit_log", every_change_is_in_the_audit_log),
];

pub fn expect(answer: &Answer, status: u16) -> Result<()> {
    ensure!(answer.status == status, "expected {status}, got {}: {}", answer.status, answer.body);
    Ok(())
}

pub fn expect_problem(answer: &Answer, status: u16, slug: &str) -> Result<()> {
    expect(answer, status)?;
    ensure!(answer.content_type == "application/problem+json", "content-type {:?}", answer.content_type);
    ensure!(answer.problem_slug() == slug, "expected problem {slug}, got {}", answer.body);
    Ok(())
}

/// (field, kind, rule) of each entry of a problem's `errors`.
fn field_errors(answer: &Answer) -> Vec<(String, String, String)> {
    answer.body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                    (s("field"), s("kind"), s("rule"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Signs up a free user and logs them in: (id, email, token).
pub fn new_user(ctx: &Ctx, profile: Value) -> Result<(String, String, String)> {
    let email = unique_email("user");
    let created = ctx.api.signup(&email, GOOD_PASSWORD, profile)?;
    expect(&created, 201)?;
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    Ok((created.str("id"), email, token))
}

/// A premium user created by the admin, logged in: (id, token).
pub fn new_premium_user(ctx: &Ctx) -> Result<(String, String)> {
    let email = unique_email("premium");
    let created = ctx.api.post(
        "/api/v1/users",
        Some(&ctx.admin_token),
        &json!({"email": email, "password": GOOD_PASSWORD, "tier": "premium"}),
    )?;
    expect(&created, 201)?;
    Ok((created.str("id"), ctx.api.login(&email, GOOD_PASSWORD)?))
}

pub fn users(id: &str) -> String {
    format!("/api/v1/users/{id}")
}

/// The view with the fields that differ per run (id, email, timestamps) removed.
fn stable(view: &Value) -> Value {
    let mut v = view.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["id", "email", "created_at", "updated_at"] {
            o.remove(k);
        }
    }
    v
}

fn the_product_flow_runs_over_http(ctx: &Ctx) -> Result<()> {
    let api = &ctx.api;
    let email = unique_email("jean");
    // An admin creates a premium user with the product description's example profile.
    let created = api.post(
        "/api/v1/users",
        Some(&ctx.admin_token),
        &json!({
            "email": email.to_uppercase(),
            "password": "mot_de_passe_securise",
            "tier": "premium",
            "profile": {"display_name": "Jean Dupont", "language": "fr", "timezone": "Europe/Paris"}
        }),
    )?;
    expect(&created, 201)?;
    let id = created.str("id");
    ensure!(id.starts_with("usr_") && id.len() == 36, "id {id}");
    assert_eq!(created.headers.get("location").unwrap(), &format!("/api/v1/users/{id}"));
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    assert_eq!(created.str("email"), email, "emails are stored lower-cased");
    let expected = json!({
        "email_verified": false,
        "role": "user",
        "tier": "premium",
        "display_name": "Jean Dupont",
        "language": "fr",
        "timezone": "Europe/Paris",
        "ai_preferences": {
            "personalization_level": "standard",
            "learning_rate": 0.1,
            "custom_model_training": false,
            "bias_mitigation_enabled": true,
            "mood_detection_enabled": true,
            "federated_learning_opt_in": false
        },
        "security_settings": {
            "require_mfa": false,
            "mfa_methods": ["email"],
            "session_timeout_minutes": 1440,
            "risk_score_threshold": 0.7,
            "anomaly_detection_enabled": true
        },
        "limits": {
            "api_requests_per_hour": 5000,
            "playlists": null,
            "storage_mb": 10240,
            "integrations": ["spotify", "apple_music", "youtube_music", "amazon_music", "lastfm", "discord", "cloud_sync"],
            "support": "priority (2 h SLA)",
            "max_open_sessions": 10
        },
        "version": 1
    });
    assert_eq!(stable(&created.body), expected);

    // The user logs in with the same email in another case.
    let login =
        api.post("/api/v1/auth/login", None, &json!({"email": email, "password": "mot_de_passe_securise"}))?;
    expect(&login, 200)?;
    assert_eq!(login.str("token_type"), "Bearer");
    assert_eq!(login.body["expires_in"], 900);
    assert_eq!(login.str("user_id"), id);
    assert_eq!(login.str("tier"), "premium");
    let token = login.str("access_token");

    // Reads the profile.
    let read = api.get(&users(&id), Some(&token))?;
    expect(&read, 200)?;
    assert_eq!(read.body, created.body);
    assert_eq!(read.etag.as_deref(), Some("\"1\""));

    // Updates the display name and AI preferences.
    let updated = api.put(
        &users(&id),
        &token,
        &json!({"display_name": "Jeanne Dupont", "ai_preferences": {"personalization_level": "advanced", "mood_detection_enabled": true}}),
        None,
    )?;
    expect(&updated, 200)?;
    let mut after_update = expected.clone();
    after_update["display_name"] = json!("Jeanne Dupont");
    after_update["ai_preferences"]["personalization_level"] = json!("advanced");
    after_update["version"] = json!(2);
    assert_eq!(stable(&updated.body), after_update);
    assert_eq!(updated.etag.as_deref(), Some("\"2\""));

    // An admin upgrades the user to enterprise: the limits switch.
    let upgraded =
        api.post(&format!("{}/upgrade", users(&id)), Some(&ctx.admin_token), &json!({"tier": "enterprise"}))?;
    expect(&upgraded, 200)?;
    let mut after_upgrade = after_update.clone();
    after_upgrade["tier"] = json!("enterprise");
    after_upgrade["version"] = json!(3);
    after_upgrade["limits"] = json!({
        "api_requests_per_hour": 50000,
        "playlists": null,
        "storage_mb": 102400,
        "integrations": ["all", "team_collaboration", "custom_models", "salesforce", "microsoft_365", "jira", "slack", "notion"],
        "support": "dedicated 24/7",
        "max_open_sessions": 25
    });
    // Zero-trust for enterprise: the upgrade turns the second factor on.
    after_upgrade["security_settings"]["require_mfa"] = json!(true);
    assert_eq!(stable(&upgraded.body), after_upgrade);
    // The user's next read sees it at once, and a new login carries the new tier.
    assert_eq!(stable(&api.get(&users(&id), Some(&token))?.body), after_upgrade);
    let relogin =
        api.post("/api/v1/auth/login", None, &json!({"email": email, "password": "mot_de_passe_securise"}))?;
    expect_problem(&relogin, 401, "mfa-required")?;
    let enterprise_token = ctx.stack.login_with_email_code(api, &email, "mot_de_passe_securise")?;
    let claims = api.get("/api/v1/auth/token", Some(&enterprise_token))?;
    assert_eq!(claims.body["tier"], "enterprise", "{}", claims.body);

    // And reads their insights.
    let insights = api.get(&format!("{}/insights", users(&id)), Some(&token))?;
    expect(&insights, 200)?;
    assert_eq!(insights.str("user_id"), id);
    assert_eq!(insights.str("tier"), "enterprise");
    assert_eq!(insights.body["account_age_days"], 0);
    assert_eq!(insights.body["limits"], after_upgrade["limits"]);
    // API usage is the gate's exact count: signup-free reads and writes of this flow, as the
    // user (the admin's calls count against the admin).
    assert_eq!(
        insights.body["usage"],
        json!({"api_requests": {"used": 4, "limit": 50000, "window_secs": 3600}})
    );
    ensure!(insights.body["last_login_at"].is_string(), "last login recorded: {}", insights.body);
    Ok(())
}

fn token_policy() -> TokenPolicy {
    TokenPolicy {
        issuer: "user-management-edge".into(),
        audience: "user-management-api".into(),
        ttl_secs: 900,
        leeway_secs: 30,
    }
}

fn bad_tokens_get_401(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let path = users(&id);
    let key = SigningKey::from_seed_b64(&ctx.stack.secrets.jwt_kid, &ctx.stack.secrets.jwt_seed_b64)?;
    // Tokens minted here belong to the user's real session, so only the property under test
    // differs from a good token.
    let claims = ctx.api.get("/api/v1/auth/token", Some(&token))?;
    let sid = claims.str("sid");
    let subject = Subject { user_id: &id, tier: "free", role: "user", session_id: Some(&sid), org: None };
    let mint = |key: &SigningKey, at: UnixMillis| {
        let input = access_signing_input(key.kid(), &token_policy(), &subject, "t", at).unwrap();
        signed(&input, pair(key).sk.sign(input.as_bytes(), None).as_ref())
    };

    // The stack's own key, used correctly, is accepted (the cases below differ by one thing).
    expect(&ctx.api.get(&path, Some(&mint(&key, now())))?, 200)?;

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "an access token is required"),
        ("expired", Some(mint(&key, UnixMillis(now().0 - 16 * 60 * 1000))), "the token has expired"),
        ("tampered", Some(tamper(&token)), "the token's signature is invalid"),
        (
            "wrongly signed",
            Some(mint(
                &SigningKey::from_seed_b64(
                    &ctx.stack.secrets.jwt_kid,
                    "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
                )?,
                now(),
            )),
            "the token's signature is invalid",
        ),
        (
            "alg swapped to HS256",
            Some(hs256_swap(&token, &key)),
            "the token's algorithm \"HS256\" is not allowed (only EdDSA)",
        ),
        ("alg none", Some(alg_none(&token)), "the token's algorithm \"none\" is not allowed (only EdDSA)"),
        ("garbage", Some("abc.def".into()), "the token is not a well-formed JWT"),
    ];
    for (name, bad, detail) in cases {
        let answer = ctx.api.get(&path, bad.as_deref())?;
        expect_problem(&answer, 401, "unauthenticated").map_err(|e| e.context(name))?;
        assert_eq!(answer.str("detail"), detail, "{name}");
    }
    Ok(())
}

/// The key pair of a seed, by an Ed25519 other than the edge's (WebCrypto).
fn pair(key: &SigningKey) -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*key.seed()))
}

fn verifying_key(key: &SigningKey) -> VerifyingKey {
    key.verifying_key(pair(key).pk.as_ref().try_into().unwrap())
}

/// The token with its role claim changed to admin and the signature kept.
fn tamper(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    let forged = URL_SAFE_NO_PAD.encode(payload.replace("\"role\":\"user\"", "\"role\":\"admin\""));
    format!("{}.{forged}.{}", parts[0], parts[2])
}

fn hs256_swap(token: &str, key: &SigningKey) -> String {
    use hmac_sha256_for_tests as h;
    let payload = token.split('.').nth(1).unwrap();
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{}","typ":"at+jwt"}}"#, key.kid()));
    let input = format!("{header}.{payload}");
    let public = verifying_key(key).to_jwk()["x"].as_str().unwrap().to_owned();
    let mac = h::mac(&URL_SAFE_NO_PAD.decode(public).unwrap(), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac))
}

fn alg_none(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#))
}

mod hmac_sha256_for_tests {
    use domain::signing::SharedSecret;

    /// HMAC-SHA256 through the domain's signing code path would need a 32-byte key; the
    /// public key is 32 bytes, so it can be used as is.
    pub fn mac(key: &[u8], message: &[u8]) -> Vec<u8> {
        let secret = SharedSecret::new(key).unwrap();
        hex::decode(secret.hmac_hex(message)).unwrap()
    }
}

fn other_users_accounts_are_403(ctx: &Ctx) -> Result<()> {
    let (alice, _, alice_token) = new_user(ctx, Value::Null)?;
    let (bob, _, _) = new_user(ctx, Value::Null)?;
    let _ = alice;
    for answer in [
        ctx.api.get(&users(&bob), Some(&alice_token))?,
        ctx.api.put(&users(&bob), &alice_token, &json!({"display_name": "mallory"}), None)?,
        ctx.api.get(&format!("{}/insights", users(&bob)), Some(&alice_token))?,
        ctx.api.post(&format!("{}/upgrade", users(&bob)), Some(&alice_token), &json!({"tier": "premium"}))?,
    ] {
        expect_problem(&answer, 403, "forbidden")?;
    }
    // An admin may read anyone.
    expect(&ctx.api.get(&users(&bob), Some(&ctx.admin_token))?, 200)?;
    Ok(())
}

fn read_only_fields_are_403_and_named(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    for (field, value) in [
        ("id", json!("usr_00000000000000000000000000000000")),
        ("email", json!("other@example.com")),
        ("email_verified", json!(true)),
        ("role", json!("admin")),
        ("tier", json!("vip")),
        ("limits", json!({"api_requests_per_hour": null})),
        ("version", json!(99)),
        ("created_at", json!("2020-01-01T00:00:00Z")),
        ("updated_at", json!("2020-01-01T00:00:00Z")),
    ] {
        let answer = ctx.api.put(&users(&id), &token, &json!({ field: value }), None)?;
        expect_problem(&answer, 403, "forbidden")?;
        assert_eq!(field_errors(&answer), vec![(field.to_owned(), "forbidden".into(), "read_only".into())]);
    }
    // Unknown fields are 400, never silently ignored.
    let answer = ctx.api.put(
        &users(&id),
        &token,
        &json!({"nickname": "x", "ai_preferences": {"volume": 11}}),
        None,
    )?;
    expect_problem(&answer, 400, "validation-failed")?;
    assert_eq!(
        field_errors(&answer),
        vec![
            ("ai_preferences.volume".into(), "unknown".into(), "unknown_field".into()),
            ("nickname".into(), "unknown".into(), "unknown_field".into()),
        ]
    );
    // Nothing changed.
    assert_eq!(ctx.api.get(&users(&id), Some(&token))?.body["version"], 1);
    Ok(())
}

fn bad_fields_are_400_naming_the_rule(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let cases = [
        (json!({"display_name": ""}), "display_name", "length"),
        (json!({"display_name": "x".repeat(101)}), "display_name", "length"),
        (json!({"language": "not a tag!"}), "language", "bcp47"),
        (json!({"timezone": "Mars/Olympus_Mons"}), "timezone", "iana_zone"),
        (json!({"ai_preferences": {"learning_rate": 0}}), "ai_preferences.learning_rate", "range"),
        (json!({"ai_preferences": {"learning_rate": 1.5}}), "ai_preferences.learning_rate", "range"),
        (
            json!({"ai_preferences": {"personalization_level": "extreme"}}),
            "ai_preferences.personalization_level",
            "enum",
        ),
        (
            json!({"ai_preferences": {"mood_detection_enabled": "yes"}}),
            "ai_preferences.mood_detection_enabled",
            "type",
        ),
        (json!({"security_settings": {"mfa_methods": ["pigeon"]}}), "security_settings.mfa_methods", "enum"),
        (
            json!({"security_settings": {"mfa_methods": ["sms", "sms"]}}),
            "security_settings.mfa_methods",
            "unique",
        ),
        (
            json!({"security_settings": {"session_timeout_minutes": 0}}),
            "security_settings.session_timeout_minutes",
            "range",
        ),
        (
            json!({"security_settings": {"risk_score_threshold": -0.1}}),
            "security_settings.risk_score_threshold",
            "range",
        ),
    ];
    for (patch, field, rule) in cases {
        let answer = ctx.api.put(&users(&id), &token, &patch, None)?;
        expect_problem(&answer, 400, "validation-failed")?;
        assert_eq!(
            field_errors(&answer),
            vec![(field.to_owned(), "invalid".into(), rule.to_owned())],
            "{patch}"
        );
    }
    // Malformed JSON and a wrong media type are refused before anything else.
    let raw = e2e::api::send(
        e2e::http::client()
            .put(ctx.api.url(&users(&id)))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{"),
    )?;
    expect_problem(&raw, 400, "bad-request")?;
    let text = e2e::api::send(
        e2e::http::client()
            .put(ctx.api.url(&users(&id)))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body("{}"),
    )?;
    expect_problem(&text, 415, "unsupported-media-type")?;
    Ok(())
}

fn tier_features_are_403(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let answer = ctx.api.put(
        &users(&id),
        &token,
        &json!({"ai_preferences": {"personalization_level": "advanced"}}),
        None,
    )?;
    expect_problem(&answer, 403, "forbidden")?;
    assert_eq!(
        field_errors(&answer),
        vec![("ai_preferences.personalization_level".into(), "tier_feature".into(), "tier_feature".into())]
    );
    let answer = ctx.api.put(
        &users(&id),
        &token,
        &json!({"ai_preferences": {"custom_model_training": true}}),
        None,
    )?;
    expect_problem(&answer, 403, "forbidden")?;
    assert_eq!(
        answer.body["errors"][0]["detail"],
        "custom model training is not part of the free tier (enterprise and vip have it)"
    );
    Ok(())
}

fn password_rules_are_named(ctx: &Ctx) -> Result<()> {
    let email = unique_email("pw");
    let local = email.split('@').next().unwrap().to_owned();
    for (password, rule) in [
        ("short".to_owned(), "min_length"),
        ("x".repeat(129), "max_length"),
        ("1qaz2wsx3edc".to_owned(), "common_password"),
        (format!("my {local} password"), "contains_email"),
    ] {
        let answer = ctx.api.signup(&email, &password, Value::Null)?;
        expect_problem(&answer, 400, "validation-failed")?;
        assert_eq!(field_errors(&answer), vec![("password".into(), "invalid".into(), rule.to_owned())]);
    }
    let answer = ctx.api.signup("not-an-email", GOOD_PASSWORD, Value::Null)?;
    expect_problem(&answer, 400, "validation-failed")?;
    assert_eq!(field_errors(&answer), vec![("email".into(), "invalid".into(), "shape".into())]);
    Ok(())
}

fn duplicate_emails_are_409_whatever_their_case(ctx: &Ctx) -> Result<()> {
    let email = unique_email("dup");
    expect(&ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?, 201)?;
    let again = ctx.api.signup(&format!("  {}  ", email.to_uppercase()), GOOD_PASSWORD, Value::Null)?;
    expect_problem(&again, 409, "conflict")?;
    assert_eq!(again.str("detail"), "a user with this email already exists");
    Ok(())
}

fn stale_if_match_is_412(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    let first = ctx.api.put(&users(&id), &token, &json!({"display_name": "One"}), Some("\"1\""))?;
    expect(&first, 200)?;
    assert_eq!(first.etag.as_deref(), Some("\"2\""));
    let stale = ctx.api.put(&users(&id), &token, &json!({"display_name": "Two"}), Some("\"1\""))?;
    expect_problem(&stale, 412, "precondition-failed")?;
    assert_eq!(stale.body["current_version"], 2);
    let read = ctx.api.get(&users(&id), Some(&token))?;
    assert_eq!(read.str("display_name"), "One");
    let malformed = ctx.api.put(&users(&id), &token, &json!({"display_name": "Two"}), Some("W/\"x\""))?;
    expect_problem(&malformed, 400, "bad-request")?;
    Ok(())
}

fn public_signup_is_free_and_user_only(ctx: &Ctx) -> Result<()> {
    let email = unique_email("public");
    let paid = ctx.api.post(
        "/api/v1/users",
        None,
        &json!({"email": email, "password": GOOD_PASSWORD, "tier": "premium"}),
    )?;
    expect_problem(&paid, 403, "forbidden")?;
    let admin = ctx.api.post(
        "/api/v1/users",
        None,
        &json!({"email": email, "password": GOOD_PASSWORD, "role": "admin"}),
    )?;
    expect_problem(&admin, 403, "forbidden")?;
    let free = ctx.api.signup(&email, GOOD_PASSWORD, Value::Null)?;
    expect(&free, 201)?;
    assert_eq!(free.str("tier"), "free");
    assert_eq!(free.str("role"), "user");
    assert_eq!(free.body["limits"]["api_requests_per_hour"], 100);
    Ok(())
}

fn users_move_between_free_and_premium_only(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, json!({"ai_preferences": {"personalization_level": "standard"}}))?;
    let upgrade = |tier: &str, token: &str| {
        ctx.api.post(&format!("{}/upgrade", users(&id)), Some(token), &json!({ "tier": tier }))
    };
    let premium = upgrade("premium", &token)?;
    expect(&premium, 200)?;
    assert_eq!(premium.body["limits"]["api_requests_per_hour"], 5000);
    expect_problem(&upgrade("enterprise", &token)?, 403, "forbidden")?;
    expect_problem(&upgrade("vip", &token)?, 403, "forbidden")?;
    let free = upgrade("free", &token)?;
    expect(&free, 200)?;
    assert_eq!(free.body["limits"]["api_requests_per_hour"], 100);
    let vip = upgrade("vip", &ctx.admin_token)?;
    expect(&vip, 200)?;
    assert_eq!(vip.body["limits"]["api_requests_per_hour"], Value::Null);
    expect_problem(&upgrade("gold", &ctx.admin_token)?, 400, "bad-request")?;
    Ok(())
}

fn unknown_email_and_wrong_password_answer_alike(ctx: &Ctx) -> Result<()> {
    let (_, email, _) = new_user(ctx, Value::Null)?;
    let wrong = ctx.api.post(
        "/api/v1/auth/login",
        None,
        &json!({"email": email, "password": "not the password at all"}),
    )?;
    let unknown = ctx.api.post(
        "/api/v1/auth/login",
        None,
        &json!({"email": unique_email("nobody"), "password": "not the password at all"}),
    )?;
    expect_problem(&wrong, 401, "unauthenticated")?;
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.content_type, unknown.content_type);
    Ok(())
}

fn the_database_holds_no_email_or_name_in_clear(ctx: &Ctx) -> Result<()> {
    let email = unique_email("secret");
    let name = format!("Zyxwvuts {}", &email[7..15]);
    expect(&ctx.api.signup(&email, GOOD_PASSWORD, json!({"display_name": name}))?, 201)?;
    let local = email.split('@').next().unwrap().to_owned();
    assert_not_stored_in_clear(ctx, &[&email, &local, &name])
}

/// Fails when the origin's database holds any of `needles` as plain bytes: the SQLite files,
/// or on PostgreSQL a dump of the database (searched for the text and its BYTEA hex).
pub fn assert_not_stored_in_clear(ctx: &Ctx, needles: &[&str]) -> Result<()> {
    for needle in needles {
        if let Some(place) = ctx.stack.stored_in_clear(needle.as_bytes())? {
            anyhow::bail!("{place} holds {needle:?} in clear");
        }
    }
    Ok(())
}

fn reads_follow_writes_over_100_pairs(ctx: &Ctx) -> Result<()> {
    // 200 requests: more than the free tier's hundred an hour, so a premium account.
    let (id, token) = new_premium_user(ctx)?;
    for i in 0..100 {
        let name = format!("Name {i}");
        let written = ctx.api.put(&users(&id), &token, &json!({ "display_name": name }), None)?;
        expect(&written, 200)?;
        let read = ctx.api.get(&users(&id), Some(&token))?;
        expect(&read, 200)?;
        ensure!(read.str("display_name") == name, "pair {i}: wrote {name:?}, read {}", read.body);
        ensure!(read.body["version"] == written.body["version"], "pair {i}: versions differ");
    }
    Ok(())
}

fn repeated_reads_are_served_from_kv(ctx: &Ctx) -> Result<()> {
    let (id, _, token) = new_user(ctx, Value::Null)?;
    // The signup stored the origin's answer in KV and its version in the gate, so even the
    // first read is a cache hit; a write moves the gate forward and the cache with it.
    let first = ctx.api.get(&users(&id), Some(&token))?;
    assert_eq!(first.source.as_deref(), Some("cache"));
    expect(&ctx.api.put(&users(&id), &token, &json!({"language": "de"}), None)?, 200)?;
    let second = ctx.api.get(&users(&id), Some(&token))?;
    assert_eq!(second.source.as_deref(), Some("cache"));
    assert_eq!(second.str("language"), "de");
    Ok(())
}

fn jwks_publishes_the_signing_key(ctx: &Ctx) -> Result<()> {
    let answer = ctx.api.get("/.well-known/jwks.json", None)?;
    expect(&answer, 200)?;
    let key = SigningKey::from_seed_b64(&ctx.stack.secrets.jwt_kid, &ctx.stack.secrets.jwt_seed_b64)?;
    assert_eq!(answer.body, json!({ "keys": [verifying_key(&key).to_jwk()] }));
    Ok(())
}

fn answers_match_the_openapi_document(ctx: &Ctx) -> Result<()> {
    let doc = ctx.api.get("/api/v1/openapi.json", None)?;
    expect(&doc, 200)?;
    assert_eq!(doc.body["openapi"], "3.1.0");
    let components = doc.body["components"].clone();
    let validate = |schema: &str, answer: &Answer| -> Result<()> {
        let root = json!({ "$ref": format!("#/components/schemas/{schema}"), "components": components });
        let validator = jsonschema::draft202012::new(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
        let errors: Vec<String> =
            validator.iter_errors(&answer.body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        ensure!(errors.is_empty(), "{schema}: {errors:?} in {}", answer.body);
        Ok(())
    };
    // Every path the answers below come from is documented with the status they have.
    let documented = |path: &str, method: &str, status: u16| -> Result<()> {
        let op = &doc.body["paths"][path][method];
        ensure!(
            op["responses"][status.to_string()].is_object(),
            "{method} {path} {status} is not documented"
        );
        Ok(())
    };

    let email = unique_email("openapi");
    let created = ctx.api.signup(&email, GOOD_PASSWORD, json!({"display_name": "Doc"}))?;
    documented("/api/v1/users", "post", 201)?;
    validate("User", &created)?;
    let id = created.str("id");
    let login =
        ctx.api.post("/api/v1/auth/login", None, &json!({"email": email, "password": GOOD_PASSWORD}))?;
    documented("/api/v1/auth/login", "post", 200)?;
    validate("TokenResponse", &login)?;
    let token = login.str("access_token");
    documented("/api/v1/users/{id}", "get", 200)?;
    validate("User", &ctx.api.get(&users(&id), Some(&token))?)?;
    documented("/api/v1/users/{id}", "put", 200)?;
    validate("User", &ctx.api.put(&users(&id), &token, &json!({"timezone": "Asia/Tokyo"}), None)?)?;
    documented("/api/v1/users/{id}", "patch", 200)?;
    validate("User", &ctx.api.patch(&users(&id), &token, &json!({"language": "ja"}))?)?;
    documented("/api/v1/users/{id}/upgrade", "post", 200)?;
    validate(
        "User",
        &ctx.api.post(&format!("{}/upgrade", users(&id)), Some(&token), &json!({"tier": "premium"}))?,
    )?;
    documented("/api/v1/users/{id}/insights", "get", 200)?;
    validate("Insights", &ctx.api.get(&format!("{}/insights", users(&id)), Some(&token))?)?;
    documented("/api/v1/users/{id}/sessions", "get", 200)?;
    let sessions = ctx.api.get(&format!("{}/sessions", users(&id)), Some(&token))?;
    for session in sessions.body["sessions"].as_array().unwrap() {
        validate("Session", &Answer { body: session.clone(), ..sessions.clone() })?;
    }
    documented("/api/v1/auth/refresh", "post", 200)?;
    validate(
        "RefreshResponse",
        &ctx.api.post("/api/v1/auth/refresh", None, &json!({"refresh_token": login.str("refresh_token")}))?,
    )?;
    documented("/api/v1/auth/token", "get", 200)?;
    validate("AccessClaims", &ctx.api.get("/api/v1/auth/token", Some(&token))?)?;
    documented("/.well-known/jwks.json", "get", 200)?;
    validate("Jwks", &ctx.api.get("/.well-known/jwks.json", None)?)?;
    documented("/health", "get", 200)?;
    validate("Health", &ctx.api.get("/health", None)?)?;
    let moved = unique_email("openapi-moved");
    let change = format!("{}/email", users(&id));
    documented("/api/v1/users/{id}/email", "post", 202)?;
    validate(
        "EmailChangeStarted",
        &ctx.api.post(&change, Some(&token), &json!({"email": moved, "current_password": GOOD_PASSWORD}))?,
    )?;
    let code = ctx.stack.last_code_for(&moved).expect("a code sent to the new address");
    documented("/api/v1/users/{id}/email/confirm", "post", 200)?;
    validate("User", &ctx.api.post(&format!("{change}/confirm"), Some(&token), &json!({ "code": code }))?)?;
    // Problems too.
    let problems = [
        ("/api/v1/users/{id}", "get", ctx.api.get(&users(&id), None)?),
        // The account's address is `moved` now: the old one was released by the change.
        ("/api/v1/users", "post", ctx.api.signup(&moved, GOOD_PASSWORD, Value::Null)?),
        ("/api/v1/users/{id}", "put", ctx.api.put(&users(&id), &token, &json!({"role": "admin"}), None)?),
        (
            "/api/v1/users/{id}/email/confirm",
            "post",
            ctx.api.post(&format!("{}/email/confirm", users(&id)), Some(&token), &json!({"code": "1"}))?,
        ),
        ("/api/v1/users/{id}", "put", ctx.api.put(&users(&id), &token, &json!({"language": 5}), None)?),
        (
            "/api/v1/users/{id}",
            "put",
            ctx.api.put(&users(&id), &token, &json!({"language": "fr"}), Some("\"1\""))?,
        ),
        (
            "/api/v1/auth/login",
            "post",
            ctx.api.post(
                "/api/v1/auth/login",
                None,
                &json!({"email": moved, "password": "wrong password!"}),
            )?,
        ),
    ];
    for (path, method, answer) in problems {
        documented(path, method, answer.status)?;
        validate("Problem", &answer)?;
    }
    Ok(())
}

fn every_change_is_in_the_audit_log(ctx: &Ctx) -> Result<()> {
    let email = unique_email("audited");
    let created = ctx.api.post(
        "/api/v1/users",
        Some(&ctx.admin_token),
        &json!({"email": email, "password": GOOD_PASSWORD, "tier": "premium"}),
    )?;
    expect(&created, 201)?;
    let id = created.str("id");
    let token = ctx.api.login(&email, GOOD_PASSWORD)?;
    expect(&ctx.api.put(&users(&id), &token, &json!({"display_name": "Audit Me"}), None)?, 200)?;
    let upgrade = |tier: &str, token: &str| {
        ctx.api.post(&format!("{}/upgrade", users(&id)), Some(token), &json!({ "tier": tier }))
    };
    expect(&upgrade("free", &token)?, 200)?;
    expect(&upgrade("enterprise", &ctx.admin_token)?, 200)?;

    let path = format!("{}/audit", users(&id));
    let audit = ctx.api.get(&path, Some(&token))?;
    expect(&audit, 200)?;
    let entries = audit.body["entries"].as_array().cloned().unwrap_or_default();
    let summary: Vec<(String, String, Value, Value)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_owned(),
                e["actor"].as_str().unwrap_or("").to_owned(),
                e["old"].clone(),
                e["new"].clone(),
            )
        })
        .collect();
    let admin = format!("user:{}:admin", ctx.admin_id);
    let me = format!("user:{id}:user");
    assert_eq!(
        summary,
        vec![
            ("create".to_owned(), admin.clone(), Value::Null, json!("tier=premium role=user")),
            ("profile_update".to_owned(), me.clone(), json!("version=1"), json!("version=2")),
            ("tier_change".to_owned(), me.clone(), json!("premium"), json!("free")),
            ("tier_change".to_owned(), admin.clone(), json!("free"), json!("enterprise")),
        ],
        "{}",
        audit.body
    );
    let doc = ctx.api.get("/api/v1/openapi.json", None)?.body;
    ensure!(doc["paths"]["/api/v1/users/{id}/audit"]["get"]["responses"]["200"].is_object());
    let root = json!({ "$ref": "#/components/schemas/AuditEntry", "components": doc["components"] });
    let validator = jsonschema::draft202012::new(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
    for entry in &entries {
        ensure!(validator.is_valid(entry), "{entry} does not match the documented AuditEntry");
        ensure!(entry["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{entry}");
    }
    ensure!(!audit.body.to_string().contains(&email), "the audit log names no personal data");
    // An admin reads it too; another user may not.
    expect(&ctx.api.get(&path, Some(&ctx.admin_token))?, 200)?;
    let (_, other) = new_premium_user(ctx)?;
    expect_problem(&ctx.api.get(&path, Some(&other))?, 403, "forbidden")?;
    Ok(())
}
