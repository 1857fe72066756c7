//! `provision-users`: bulk onboarding from CSV or JSON. Each row is validated on its own (a
//! bad row is reported with its number and the good rows are still created); new users get an
//! activation token instead of a password, so no argon2 hash is computed here and 100,000 rows
//! take seconds. Re-running a file creates nothing new: rows whose email exists are counted as
//! existing. The activation tokens are written beside the input (`<file>.activations.csv`),
//! for the welcome emails.
//!
//! CSV columns: `email` (required), `tier`, `display_name`, `language`, `timezone`.
//! JSON: an array of objects with the same keys.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use domain::email::Email;
use domain::identity::Role;
use domain::profile;
use domain::tier::Tier;
use domain::time::UnixMillis;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::files::{csv_line, write_private};
use super::JobOptions;
use crate::crypto::random_16;
use crate::store::UserRow;
use crate::AppState;

/// Activation tokens are valid for 14 days; the cleanup job removes accounts not activated by then.
pub const ACTIVATION_TTL_MS: u64 = 14 * 86_400_000;
const CHUNK: usize = 1_000;
/// How many row errors the summary lists (all are counted).
const ERRORS_LISTED: usize = 100;

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    email: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

/// The rows of a file, each with its number (CSV: the line's data row, from 1) or the error
/// that made it unreadable.
fn read_rows(path: &Path) -> anyhow::Result<Vec<(usize, Result<Row, String>)>> {
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let items: Vec<Value> =
            serde_json::from_str(&text).with_context(|| format!("{} is not a JSON array", path.display()))?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, serde_json::from_value(v).map_err(|e| e.to_string())))
            .collect())
    } else {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_path(path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(reader
            .deserialize::<Row>()
            .enumerate()
            .map(|(i, r)| (i + 1, r.map_err(|e| e.to_string())))
            .collect())
    }
}

/// A valid row as a new user: its row, its activation token's hash, its normalised email and
/// its line of the activations file.
fn check(state: &AppState, row: Row, now: UnixMillis) -> Result<(UserRow, String, String, String), String> {
    let email = Email::parse(&row.email).map_err(|e| format!("email: {e}"))?;
    let tier = match row.tier.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => t.parse::<Tier>().map_err(|e| format!("tier: {e}"))?,
        None => Tier::Free,
    };
    let mut input = Map::new();
    for (key, value) in
        [("display_name", row.display_name), ("language", row.language), ("timezone", row.timezone)]
    {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            input.insert(key.to_owned(), Value::String(v));
        }
    }
    let profile = profile::new_profile(tier, &Value::Object(input)).map_err(|e| e.summary())?;
    let account = state
        .accounts
        .new_account(&email, tier, Role::User, profile, None, now)
        .map_err(|e| e.to_string())?;
    let token = format!("act_{}{}", hex::encode(random_16()), hex::encode(random_16()));
    let line = csv_line(&[email.as_str(), &token]);
    Ok((account.row, token_hash(&token), email.as_str().to_owned(), line))
}

async fn provision_file(
    state: &AppState,
    path: &Path,
    options: &JobOptions,
    now: UnixMillis,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    let rows = read_rows(path)?;
    let total = rows.len();
    let progress = options.progress(total as u64, "provisioning");
    let mut errors = Vec::new();
    let mut error_count = 0usize;
    let mut created = 0u64;
    let mut tokens = String::from("email,activation_token\n");
    let expires = now.saturating_add_ms(ACTIVATION_TTL_MS);
    let mut chunk: Vec<(UserRow, Option<(String, UnixMillis)>)> = Vec::with_capacity(CHUNK);
    let mut chunk_lines: Vec<String> = Vec::with_capacity(CHUNK);
    for (number, row) in rows {
        match row.and_then(|r| check(state, r, now)) {
            Ok((user, hash, email, line)) => {
                // During a master-key rotation an existing user may be indexed under a retired
                // key, which the insert's conflict check does not see: counted as existing.
                if state.accounts.keyring.has_retired()
                    && state.accounts.find_by_email(&email).await?.is_some()
                {
                    continue;
                }
                chunk_lines.push(line);
                chunk.push((user, Some((hash, expires))));
            }
            Err(e) => {
                error_count += 1;
                if errors.len() < ERRORS_LISTED {
                    errors.push(json!({ "row": number, "error": e }));
                }
            }
        }
        if chunk.len() == CHUNK {
            created += flush(state, &mut chunk, &mut chunk_lines, &mut tokens, now).await?;
            progress.inc(CHUNK as u64);
        }
    }
    let rest = chunk.len() as u64;
    created += flush(state, &mut chunk, &mut chunk_lines, &mut tokens, now).await?;
    progress.inc(rest);
    progress.finish();
    let tokens_path = PathBuf::from(format!("{}.activations.csv", path.display()));
    if created > 0 {
        // Activation tokens are credentials: the file is the origin user's only (0600).
        write_private(&tokens_path, tokens).with_context(|| format!("writing {}", tokens_path.display()))?;
    }
    let valid = (total - error_count) as u64;
    Ok(json!({
        "file": path.display().to_string(),
        "rows": total,
        "created": created,
        "existing": valid - created,
        "failed": error_count,
        "errors": errors,
        "activation_tokens": if created > 0 { Value::String(tokens_path.display().to_string()) } else { Value::Null },
        "seconds": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    }))
}

/// Inserts a chunk; the token lines of the rows actually created join `tokens`.
async fn flush(
    state: &AppState,
    chunk: &mut Vec<(UserRow, Option<(String, UnixMillis)>)>,
    lines: &mut Vec<String>,
    tokens: &mut String,
    now: UnixMillis,
) -> anyhow::Result<u64> {
    if chunk.is_empty() {
        return Ok(0);
    }
    let created: std::collections::HashSet<String> =
        state.store.insert_provisioned(chunk, "system:provision-users", now).await?.into_iter().collect();
    for ((user, _), line) in chunk.iter().zip(lines.iter()) {
        if created.contains(&user.id) {
            tokens.push_str(line);
            crate::metrics::signup(&user.tier, "provisioning");
        }
    }
    chunk.clear();
    lines.clear();
    Ok(created.len() as u64)
}

/// Provisions `file`, or every `.csv`/`.json` file in the inbox (each moved to
/// `inbox/processed/` once done).
pub async fn run(
    state: &AppState,
    file: Option<PathBuf>,
    options: &JobOptions,
    now: UnixMillis,
) -> anyhow::Result<Value> {
    if let Some(path) = file {
        return provision_file(state, &path, options, now).await;
    }
    let mut files = Vec::new();
    if let Ok(entries) = fs::read_dir(&options.inbox) {
        for entry in entries.flatten() {
            let path = entry.path();
            let wanted = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("json"));
            if path.is_file() && wanted && !path.to_string_lossy().ends_with(".activations.csv") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut summaries = Vec::new();
    for path in files {
        summaries.push(provision_file(state, &path, options, now).await?);
        let done = options.inbox.join("processed");
        fs::create_dir_all(&done)?;
        if let Some(name) = path.file_name() {
            fs::rename(&path, done.join(name))?;
            let tokens = PathBuf::from(format!("{}.activations.csv", path.display()));
            if tokens.exists() {
                if let Some(t) = tokens.file_name() {
                    fs::rename(&tokens, done.join(t))?;
                }
            }
        }
    }
    Ok(json!({ "inbox": options.inbox.display().to_string(), "files": summaries }))
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::testing::TestOrigin;

    #[tokio::test]
    async fn the_activations_file_is_private_and_its_cells_cannot_be_formulas() {
        let origin = TestOrigin::start().await;
        let input = origin.dir.path().join("people.csv");
        fs::write(&input, "email,tier\n\"=1+2@example.com\",free\nplain@example.com,premium\n").unwrap();
        let summary =
            run(&origin.state, Some(input.clone()), &origin.options(), UnixMillis(1_700_000_000_000))
                .await
                .unwrap();
        assert_eq!(summary["created"], 2, "{summary}");
        let path = PathBuf::from(format!("{}.activations.csv", input.display()));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "email,activation_token");
        assert!(lines[1].starts_with("'=1+2@example.com,act_"), "{text}");
        assert!(lines[2].starts_with("plain@example.com,act_"), "{text}");
    }
}
