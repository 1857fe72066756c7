//! The integration hub's jobs (issue 15).
//!
//! - `refresh-integrations`: renews every active token that expires within
//!   `domain::integrations::REFRESH_AHEAD_MS`; the new tokens are stored by compare-and-set
//!   (a concurrent run's refresh wins, this one counts a race). A provider answering
//!   `invalid_grant` (or a token that expires with no refresh token) marks the integration
//!   `needs_reconnect` and emails the user once, through the durable outbox.
//! - `sync-integrations`: Spotify's recently played and saved tracks become `track_played`
//!   events (`domain::listening`), their ids derived from the play so a re-sync stores nothing
//!   twice; the cursor per integration makes each run ask only for what is newer, and a 429
//!   stops that integration's sync until its `Retry-After` has passed.

use domain::identity::UserId;
use domain::integrations::{self, SyncCursor};
use domain::listening::{self, TrackPlayed};
use domain::time::UnixMillis;
use serde_json::{json, Value};

use super::JobOptions;
use crate::integrations::connector::{self, api_json, ConnectorError, Tokens};
use crate::integrations::open_tokens;
use crate::integrations::providers::Provider;
use crate::store::integrations::{SyncOutcome, TokenUpdate};
use crate::store::{EventRow, IntegrationRow};
use crate::AppState;

/// Integrations handled per run (the next run takes the rest).
const BATCH: u32 = 1_000;
/// Pages of saved tracks read per sync (50 each).
const MAX_SAVED_PAGES: usize = 20;

fn uid(row: &IntegrationRow) -> anyhow::Result<UserId> {
    row.user_id.parse().map_err(|_| anyhow::anyhow!("bad user id {}", row.user_id))
}

/// Renews the tokens about to expire.
pub async fn refresh(state: &AppState, _options: &JobOptions, now: UnixMillis) -> anyhow::Result<Value> {
    let due = state.store.refresh_due(now.saturating_add_ms(integrations::REFRESH_AHEAD_MS), BATCH).await?;
    let (mut refreshed, mut raced, mut reconnect, mut errors) = (0u64, 0u64, 0u64, 0u64);
    for row in &due {
        let account = state.accounts.load(&uid(row)?).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let tokens = open_tokens(&account.data_key, row).map_err(|e| anyhow::anyhow!("{e}"))?;
        let refresh_token = tokens.as_ref().and_then(|t| t.refresh_token.clone());
        let Some(provider) = state.config.integrations.get(&row.service) else {
            errors += 1;
            continue;
        };
        let outcome = match refresh_token {
            None => Err(ConnectorError::InvalidGrant),
            Some(rt) => {
                let redirect =
                    format!("{}/api/v1/integrations/{}/callback", state.config.public_url, row.service);
                match connector::for_provider(provider, redirect) {
                    Ok(c) => c.refresh(&rt).await,
                    Err(e) => Err(e),
                }
            }
        };
        match outcome {
            Ok(granted) => {
                let json = serde_json::to_vec(&granted.tokens)?;
                let sealed = account
                    .data_key
                    .seal(&json, &format!("{}/integration/{}/tokens", row.user_id, row.service));
                let stored = state
                    .store
                    .replace_tokens(&TokenUpdate {
                        user_id: &row.user_id,
                        service: &row.service,
                        expected_version: row.token_version,
                        tokens_sealed: &sealed,
                        expires_at: integrations::expiry(now, granted.expires_in_secs),
                        at: now,
                    })
                    .await?;
                if stored {
                    refreshed += 1;
                } else {
                    raced += 1;
                }
            }
            Err(ConnectorError::InvalidGrant) => {
                if state
                    .accounts
                    .integration_needs_reconnect(row, "invalid_grant", now)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                {
                    reconnect += 1;
                }
            }
            Err(e) => {
                tracing::warn!(service = %row.service, error = %e, "token refresh failed");
                errors += 1;
            }
        }
    }
    Ok(json!({
        "due": due.len(),
        "refreshed": refreshed,
        "raced": raced,
        "needs_reconnect": reconnect,
        "errors": errors,
    }))
}

/// What one integration's sync read.
struct Read {
    events: Vec<EventRow>,
    cursor: SyncCursor,
    /// The provider answered 429 part-way: what was read before it is kept.
    limited: Option<Option<String>>,
}

fn millis_of(rfc3339: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn track_event(user: &str, track: &Value, at: u64, source: &str) -> Option<EventRow> {
    let id = track.get("id")?.as_str()?;
    let first_artist = track.pointer("/artists/0");
    let played = TrackPlayed {
        provider: "spotify".into(),
        provider_track_id: id.to_owned(),
        title: track.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
        artist: first_artist
            .and_then(|a| a.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        artist_id: first_artist.and_then(|a| a.get("id")).and_then(Value::as_str).map(str::to_owned),
        genres: Vec::new(),
        duration_ms: track.get("duration_ms").and_then(Value::as_u64).unwrap_or(0),
        played_ms: None,
        // Spotify closed its audio-features endpoint to new applications (November 2024).
        features: None,
        popularity: track
            .get("popularity")
            .and_then(Value::as_u64)
            .and_then(|p| u8::try_from(p.min(100)).ok()),
        source: source.to_owned(),
    };
    Some(EventRow {
        id: listening::event_id("spotify", user, id, UnixMillis(at)),
        kind: domain::wire::event::EventKind::TrackPlayed,
        user_id: Some(user.to_owned()),
        class: Some(listening::CLASS.into()),
        at,
        data: serde_json::to_value(&played).ok()?,
    })
}

async fn get(http: &reqwest::Client, url: &str, tokens: &Tokens) -> Result<Value, ConnectorError> {
    let response = http
        .get(url)
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .map_err(|_| ConnectorError::Unreachable("request failed".into()))?;
    api_json(response).await
}

/// Reads what is new since `cursor`: recently played (after the newest play seen), then saved
/// tracks (newest first, down to the newest one seen).
async fn read_spotify(
    http: &reqwest::Client,
    provider: &Provider,
    tokens: &Tokens,
    user: &str,
    cursor: SyncCursor,
) -> Result<Read, ConnectorError> {
    let mut read = Read { events: Vec::new(), cursor, limited: None };
    let url =
        provider.api_url(&format!("/v1/me/player/recently-played?limit=50&after={}", cursor.played_after));
    let played = get(http, &url, tokens).await?;
    let mut times = Vec::new();
    for item in played.get("items").and_then(Value::as_array).into_iter().flatten() {
        let Some(at) = item.get("played_at").and_then(Value::as_str).and_then(millis_of) else { continue };
        if !cursor.is_new_play(at) {
            continue;
        }
        if let Some(e) = item.get("track").and_then(|t| track_event(user, t, at, "recently_played")) {
            read.events.push(e);
            times.push(at);
        }
    }
    read.cursor = read.cursor.advance(&times, &[]);
    let mut saved_times = Vec::new();
    let mut next = Some(provider.api_url("/v1/me/tracks?limit=50&offset=0"));
    'pages: for _ in 0..MAX_SAVED_PAGES {
        let Some(url) = next.take() else { break };
        let page = match get(http, &url, tokens).await {
            Ok(p) => p,
            Err(ConnectorError::RateLimited { retry_after }) => {
                read.limited = Some(retry_after);
                break;
            }
            Err(e) => return Err(e),
        };
        for item in page.get("items").and_then(Value::as_array).into_iter().flatten() {
            let Some(at) = item.get("added_at").and_then(Value::as_str).and_then(millis_of) else { continue };
            if !cursor.is_new_save(at) {
                // Newest first: everything after this was seen by an earlier sync.
                break 'pages;
            }
            if let Some(e) = item.get("track").and_then(|t| track_event(user, t, at, "saved")) {
                read.events.push(e);
                saved_times.push(at);
            }
        }
        // Only follow the provider's own API: a `next` elsewhere is not followed.
        next = page
            .get("next")
            .and_then(Value::as_str)
            .filter(|n| n.starts_with(&provider.api_base))
            .map(str::to_owned);
    }
    // A sync stopped by a 429 before the saved tracks' end keeps its saved cursor, so the next
    // run reads them again from the newest (the event ids dedupe what it had already stored).
    if read.limited.is_none() {
        read.cursor = read.cursor.advance(&[], &saved_times);
    }
    Ok(read)
}

/// Syncs the music services' listening into `track_played` events (Spotify today).
pub async fn sync(state: &AppState, _options: &JobOptions, now: UnixMillis) -> anyhow::Result<Value> {
    let Some(provider) = state.config.integrations.get("spotify") else {
        return Ok(json!({ "spotify": "not configured" }));
    };
    let http = connector::http_client().map_err(|e| anyhow::anyhow!("{e}"))?;
    let rows = state.store.sync_due("spotify", now, BATCH).await?;
    let (mut synced, mut stored, mut duplicates, mut limited, mut errors, mut no_consent) =
        (0u64, 0, 0, 0u64, 0u64, 0u64);
    for row in &rows {
        let id = uid(row)?;
        if !state.accounts.collects_events(&id).await.map_err(|e| anyhow::anyhow!("{e}"))? {
            // The `analytics` consent is withdrawn: nothing about the user's listening is kept.
            no_consent += 1;
            continue;
        }
        let account = state.accounts.load(&id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let Some(tokens) = open_tokens(&account.data_key, row).map_err(|e| anyhow::anyhow!("{e}"))? else {
            continue;
        };
        let cursor: SyncCursor = serde_json::from_str(&row.sync_cursor).unwrap_or_default();
        let (cursor_after, retry_at, error) =
            match read_spotify(&http, provider, &tokens, &row.user_id, cursor).await {
                Ok(read) => {
                    let (s, d) = state.store.store_events(&read.events, now).await?;
                    stored += s;
                    duplicates += d;
                    match read.limited {
                        None => {
                            synced += 1;
                            (read.cursor, None, None)
                        }
                        Some(retry_after) => {
                            limited += 1;
                            (
                                read.cursor,
                                Some(integrations::retry_at(retry_after.as_deref(), now)),
                                Some("rate_limited"),
                            )
                        }
                    }
                }
                Err(ConnectorError::RateLimited { retry_after }) => {
                    limited += 1;
                    (cursor, Some(integrations::retry_at(retry_after.as_deref(), now)), Some("rate_limited"))
                }
                Err(e) => {
                    tracing::warn!(service = "spotify", error = %e, "sync failed");
                    errors += 1;
                    (cursor, None, Some("sync_failed"))
                }
            };
        let cursor_json = serde_json::to_string(&cursor_after)?;
        state
            .store
            .record_sync(&SyncOutcome {
                user_id: &row.user_id,
                service: &row.service,
                cursor: &cursor_json,
                at: now,
                retry_at,
                error,
            })
            .await?;
    }
    Ok(json!({
        "integrations": rows.len(),
        "synced": synced,
        "events_stored": stored,
        "events_duplicate": duplicates,
        "rate_limited": limited,
        "skipped_without_consent": no_consent,
        "errors": errors,
    }))
}
