//! A small, real OAuth 2.0 authorization server and music API for the integration tests, on a
//! loopback port (axum on its own runtime thread, stopped on drop). It serves the endpoints of
//! the provider presets the tests exercise, on one host: Spotify (`/authorize`, `/api/token`,
//! `/v1/me`, recently played, saved tracks), Discord, Slack, Google (authorize, token,
//! RFC 7009 revoke, identity), and Last.fm (`/api/auth/`, `auth.getSession` with its MD5
//! signature checked). It checks what a provider checks: the client's credentials (a client
//! `X`'s secret is `X-secret`), the redirect URI, single-use codes, PKCE S256 (RFC 7636) when
//! the authorisation carried a challenge, refresh tokens (rotated; `invalid_grant` once
//! revoked, or in its `invalid_grant` mode), and bearer tokens on the API (401 otherwise). It
//! records every call, and can answer the music API with 429 and a `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A play or a saved track in the fake Spotify library.
#[derive(Debug, Clone)]
pub struct Track {
    pub id: String,
    pub name: String,
    pub artist: String,
    pub duration_ms: u64,
    /// When it was played (recently played) or saved (saved tracks), RFC 3339.
    pub at: String,
}

#[derive(Default)]
struct World {
    /// code → (client id, redirect URI, PKCE challenge, scope)
    codes: HashMap<String, (String, String, Option<String>, String)>,
    /// Last.fm token → api key
    lastfm_tokens: HashMap<String, String>,
    access: HashMap<String, String>,
    refresh: HashMap<String, String>,
    token_lifetime_secs: u64,
    invalid_grant: bool,
    rate_limited: Option<u64>,
    played: Vec<Track>,
    saved: Vec<Track>,
    calls: Vec<String>,
    revoked: Vec<String>,
    counter: u64,
}

type Shared = Arc<Mutex<World>>;

pub struct FakeProvider {
    port: u16,
    world: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeProvider {
    /// Starts the server on `port` (the one the stack's origins were configured with).
    pub fn start_on(port: u16) -> Result<Self> {
        let world: Shared = Arc::new(Mutex::new(World { token_lifetime_secs: 3600, ..World::default() }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let app = router(Arc::clone(&world));
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            runtime.block_on(async move {
                // The previous test's server may still be releasing the port for a moment.
                let mut listener = None;
                for _ in 0..50 {
                    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        Ok(l) => {
                            listener = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                    }
                }
                let Some(listener) = listener else {
                    let _ = ready_tx.send(Err(format!("port {port} stayed busy")));
                    return;
                };
                let _ = ready_tx.send(Ok(()));
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        ready_rx.recv().context("the fake provider's thread died")?.map_err(anyhow::Error::msg)?;
        Ok(Self { port, world, stop: Some(stop), thread: Some(thread) })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Tokens issued from now on expire after this long.
    pub fn set_token_lifetime(&self, secs: u64) {
        lock(&self.world).token_lifetime_secs = secs;
    }

    /// Every refresh is answered `invalid_grant` (the user revoked the app at the provider).
    pub fn refuse_refresh(&self) {
        lock(&self.world).invalid_grant = true;
    }

    /// The music API answers 429 with this `Retry-After` (seconds); `None` ends it.
    pub fn rate_limit(&self, retry_after: Option<u64>) {
        lock(&self.world).rate_limited = retry_after;
    }

    pub fn add_play(&self, track: Track) {
        lock(&self.world).played.push(track);
    }

    pub fn add_saved(&self, track: Track) {
        lock(&self.world).saved.push(track);
    }

    /// Every call, in order, as `"<what> <detail>"` (e.g. `token refresh_token`).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.world).calls.clone()
    }

    /// The tokens revoked through the revocation endpoint.
    pub fn revoked(&self) -> Vec<String> {
        lock(&self.world).revoked.clone()
    }

    /// Whether an access token is live.
    pub fn is_live(&self, access_token: &str) -> bool {
        lock(&self.world).access.contains_key(access_token)
    }

    /// The live access tokens (what the origin should hold, not what it answers).
    pub fn live_access_tokens(&self) -> Vec<String> {
        lock(&self.world).access.keys().cloned().collect()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn router(world: Shared) -> Router {
    Router::new()
        // Authorize pages: Spotify, Discord, Slack, Google.
        .route("/authorize", get(authorize))
        .route("/oauth2/authorize", get(authorize))
        .route("/oauth/v2/authorize", get(authorize))
        .route("/o/oauth2/v2/auth", get(authorize))
        // Token endpoints.
        .route("/api/token", post(token))
        .route("/api/oauth2/token", post(token))
        .route("/api/oauth.v2.access", post(token))
        .route("/token", post(token))
        // RFC 7009 revocation (Discord, Slack, Google).
        .route("/api/oauth2/token/revoke", post(revoke))
        .route("/api/auth.revoke", post(revoke))
        .route("/revoke", post(revoke))
        // Identity.
        .route(
            "/v1/me",
            get(|s, h| identity(s, h, json!({ "id": "spotify-listener", "display_name": "Listener" }))),
        )
        .route(
            "/api/users/@me",
            get(|s, h| identity(s, h, json!({ "id": "42", "username": "discord-listener" }))),
        )
        .route("/api/auth.test", get(|s, h| identity(s, h, json!({ "ok": true, "user": "slack-listener" }))))
        .route(
            "/v1/userinfo",
            get(|s, h| identity(s, h, json!({ "sub": "7", "email": "listener@calendar.test" }))),
        )
        // Spotify's music API.
        .route("/v1/me/player/recently-played", get(recently_played))
        .route("/v1/me/tracks", get(saved_tracks))
        // Last.fm.
        .route("/api/auth/", get(lastfm_authorize))
        .route("/2.0/", post(lastfm_api))
        .with_state(world)
}

fn next_id(w: &mut World, prefix: &str) -> String {
    w.counter += 1;
    let mut h = Sha256::new();
    h.update(w.counter.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            .to_be_bytes(),
    );
    format!("{prefix}-{}", &hex::encode(h.finalize())[..24])
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [("location", location.to_owned())]).into_response()
}

async fn authorize(State(world): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" || get("client_id").is_empty() || get("redirect_uri").is_empty() {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let challenge = q.get("code_challenge").cloned();
    if challenge.is_some() && get("code_challenge_method") != "S256" {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let mut w = lock(&world);
    w.calls.push(format!("authorize {}", get("client_id")));
    let code = next_id(&mut w, "code");
    w.codes.insert(code.clone(), (get("client_id"), get("redirect_uri"), challenge, get("scope")));
    let Ok(mut location) = url::Url::parse(&get("redirect_uri")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    location.query_pairs_mut().append_pair("code", &code).append_pair("state", &get("state"));
    redirect(location.as_str())
}

/// The client's id and secret: HTTP Basic (RFC 6749 §2.3.1) or the form's fields.
fn client(headers: &HeaderMap, form: &HashMap<String, String>) -> Option<(String, String)> {
    if let Some(basic) =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        return Some((id.to_owned(), secret.to_owned()));
    }
    Some((form.get("client_id")?.clone(), form.get("client_secret").cloned().unwrap_or_default()))
}

fn tokens(w: &mut World, client_id: &str, scope: &str) -> Value {
    let access = next_id(w, "at");
    let refresh = next_id(w, "rt");
    w.access.insert(access.clone(), client_id.to_owned());
    w.refresh.insert(refresh.clone(), client_id.to_owned());
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": w.token_lifetime_secs,
        "refresh_token": refresh,
        "scope": scope,
    })
}

async fn token(
    State(world): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some((client_id, secret)) = client(&headers, &form) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if secret != format!("{client_id}-secret") {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let mut w = lock(&world);
    w.calls.push(format!("token {grant}"));
    match grant.as_str() {
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            // Single use: taken whatever follows.
            let Some((owner, redirect_uri, challenge, scope)) = w.codes.remove(&code) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            if owner != client_id || form.get("redirect_uri") != Some(&redirect_uri) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            if let Some(challenge) = challenge {
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(Sha256::digest(verifier.as_bytes()));
                if computed != challenge {
                    w.calls.push("pkce mismatch".into());
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                w.calls.push("pkce verified".into());
            }
            let body = tokens(&mut w, &client_id, &scope);
            Json(body).into_response()
        }
        "refresh_token" => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            if w.invalid_grant || w.refresh.get(&presented) != Some(&client_id) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            // Rotation: the presented refresh token is spent.
            w.refresh.remove(&presented);
            let body = tokens(&mut w, &client_id, "");
            let mut body = body;
            if let Some(o) = body.as_object_mut() {
                o.remove("scope");
            }
            Json(body).into_response()
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

async fn revoke(
    State(world): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some((client_id, secret)) = client(&headers, &form) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if secret != format!("{client_id}-secret") {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let mut w = lock(&world);
    w.calls.push(format!("revoke {client_id}"));
    // Revoking a refresh token ends its grant: every access token of the client goes too.
    if w.refresh.remove(&token).is_some() {
        w.access.retain(|_, c| *c != client_id);
    }
    w.access.remove(&token);
    w.revoked.push(token);
    StatusCode::OK.into_response()
}

fn bearer(world: &Shared, headers: &HeaderMap) -> bool {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    lock(world).access.contains_key(token)
}

async fn identity(State(world): State<Shared>, headers: HeaderMap, body: Value) -> Response {
    if !bearer(&world, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    lock(&world).calls.push("identity".into());
    Json(body).into_response()
}

fn track_json(t: &Track) -> Value {
    json!({
        "id": t.id, "name": t.name, "duration_ms": t.duration_ms, "popularity": 50,
        "artists": [{ "id": format!("artist-{}", t.artist.to_lowercase()), "name": t.artist }],
    })
}

fn limited(world: &Shared, what: &str) -> Option<Response> {
    let mut w = lock(world);
    w.calls.push(what.to_owned());
    w.rate_limited.map(|secs| {
        w.calls.push(format!("429 {what}"));
        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())], "rate limited").into_response()
    })
}

async fn recently_played(
    State(world): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !bearer(&world, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some(r) = limited(&world, "recently-played") {
        return r;
    }
    let after: u64 = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let w = lock(&world);
    let items: Vec<Value> = w
        .played
        .iter()
        .filter(|t| epoch_ms(&t.at) > after)
        .map(|t| json!({ "track": track_json(t), "played_at": t.at }))
        .collect();
    Json(json!({ "items": items, "next": null })).into_response()
}

/// Milliseconds since the epoch of `YYYY-MM-DDTHH:MM:SS(.mmm)Z`, as Spotify's `after` takes.
pub fn epoch_ms(rfc3339: &str) -> u64 {
    let parse = || -> Option<u64> {
        let (date, time) = rfc3339.trim_end_matches('Z').split_once('T')?;
        let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
        let (y, m, day) = (d.next()??, d.next()??, d.next()??);
        let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
        let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
        let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
        // Days from civil (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let ms: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
        u64::try_from(((days * 24 + hh) * 60 + mm) * 60 + ss).ok().map(|s| s * 1000 + ms as u64)
    };
    parse().unwrap_or(0)
}

async fn saved_tracks(State(world): State<Shared>, headers: HeaderMap) -> Response {
    if !bearer(&world, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if let Some(r) = limited(&world, "saved-tracks") {
        return r;
    }
    let w = lock(&world);
    let mut saved = w.saved.clone();
    saved.sort_by_key(|t| std::cmp::Reverse(epoch_ms(&t.at)));
    let items: Vec<Value> =
        saved.iter().map(|t| json!({ "track": track_json(t), "added_at": t.at })).collect();
    Json(json!({ "items": items, "next": null })).into_response()
}

async fn lastfm_authorize(State(world): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(api_key), Some(cb)) = (q.get("api_key"), q.get("cb")) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut w = lock(&world);
    w.calls.push(format!("lastfm authorize {api_key}"));
    let token = next_id(&mut w, "lfmtoken");
    w.lastfm_tokens.insert(token.clone(), api_key.clone());
    let Ok(mut location) = url::Url::parse(cb) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    location.query_pairs_mut().append_pair("token", &token);
    redirect(location.as_str())
}

async fn lastfm_api(State(world): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let api_key = get("api_key");
    let mut signed: Vec<(&String, &String)> =
        form.iter().filter(|(k, _)| *k != "format" && *k != "api_sig").collect();
    signed.sort();
    let mut text = String::new();
    for (k, v) in signed {
        text.push_str(k);
        text.push_str(v);
    }
    text.push_str(&format!("{api_key}-secret"));
    let expected = {
        use md5::Digest as _;
        hex::encode(md5::Md5::digest(text.as_bytes()))
    };
    let mut w = lock(&world);
    w.calls.push(format!("lastfm {}", get("method")));
    if get("api_sig") != expected {
        return Json(json!({ "error": 13, "message": "Invalid method signature supplied" })).into_response();
    }
    if get("method") != "auth.getSession" {
        return Json(json!({ "error": 3, "message": "Invalid Method" })).into_response();
    }
    // A token works once, for the key it was issued to.
    match w.lastfm_tokens.remove(&get("token")) {
        Some(owner) if owner == api_key => {
            let key = next_id(&mut w, "lfmsession");
            w.access.insert(key.clone(), api_key);
            Json(json!({ "session": { "name": "lastfm-listener", "key": key, "subscriber": 0 } }))
                .into_response()
        }
        _ => Json(json!({ "error": 4, "message": "Invalid authentication token supplied" })).into_response(),
    }
}

/// The services the tests connect through this server.
pub const SERVICES: [&str; 5] = ["spotify", "discord", "slack", "google_calendar", "lastfm"];

/// The origin's configuration for [`SERVICES`] at `http://127.0.0.1:<port>`: client `test-<id>`
/// with secret `test-<id>-secret`, every base URL on this server.
pub fn origin_vars(port: u16) -> Vec<(String, String)> {
    let base = format!("http://127.0.0.1:{port}");
    SERVICES
        .iter()
        .flat_map(|s| {
            let var = |what: &str| format!("ORIGIN_INTEGRATION_{}_{what}", s.to_ascii_uppercase());
            [
                (var("CLIENT_ID"), format!("test-{s}")),
                (var("CLIENT_SECRET"), format!("test-{s}-secret")),
                (var("AUTH_URL"), base.clone()),
                (var("TOKEN_URL"), base.clone()),
                (var("API_URL"), base.clone()),
            ]
        })
        .collect()
}
