//! `origin migrate-sqlite-to-postgres`: copies every table of a SQLite database into a
//! PostgreSQL one, rows as they are (sealed blobs stay sealed, ids keep their values), then
//! verifies it: row counts per table, and a sample of users read back from PostgreSQL, equal
//! to their SQLite rows, whose emails decrypt with the keyring and match their blind index.
//!
//! Idempotent: every insert is `ON CONFLICT DO NOTHING` on the table's key, so a second run
//! (or a run after an interrupted one) copies only what is missing. Run it with the origins
//! stopped: rows written meanwhile on either side would make the counts differ.

use std::str::FromStr;

use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{QueryBuilder, Row};

use super::{PostgresStore, SqliteStore, Store, StoreError};
use crate::crypto::{Keyring, WrappedKey};

/// How a column is read from SQLite and written to PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Blob,
    /// An INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL.
    Bool,
}

/// Every table, parents before children (foreign keys), with its columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "users",
        &[
            ("id", Kind::Text),
            ("email_index", Kind::Blob),
            ("email_sealed", Kind::Blob),
            ("data_key_sealed", Kind::Blob),
            ("data_key_master_id", Kind::Text),
            ("role", Kind::Text),
            ("tier", Kind::Text),
            ("email_verified", Kind::Bool),
            ("password_hash", Kind::Text),
            ("profile_sealed", Kind::Blob),
            ("version", Kind::Int),
            ("created_at", Kind::Int),
            ("updated_at", Kind::Int),
            ("last_login_at", Kind::Int),
            ("disabled_at", Kind::Int),
        ],
    ),
    (
        "audit_log",
        &[
            ("id", Kind::Int),
            ("user_id", Kind::Text),
            ("actor", Kind::Text),
            ("action", Kind::Text),
            ("old_value", Kind::Text),
            ("new_value", Kind::Text),
            ("at", Kind::Int),
        ],
    ),
    (
        "login_history",
        &[("id", Kind::Int), ("user_id", Kind::Text), ("context", Kind::Text), ("at", Kind::Int)],
    ),
    ("auth_state", &[("key", Kind::Text), ("value", Kind::Text), ("expires_at", Kind::Int)]),
    (
        "security_events",
        &[
            ("id", Kind::Int),
            ("user_id", Kind::Text),
            ("kind", Kind::Text),
            ("detail", Kind::Text),
            ("at", Kind::Int),
        ],
    ),
    (
        "mfa_totp",
        &[
            ("user_id", Kind::Text),
            ("secret_sealed", Kind::Blob),
            ("confirmed_at", Kind::Int),
            ("last_step", Kind::Int),
        ],
    ),
    ("recovery_codes", &[("user_id", Kind::Text), ("code_hash", Kind::Text), ("used_at", Kind::Int)]),
    (
        "events",
        &[
            ("id", Kind::Text),
            ("user_id", Kind::Text),
            ("kind", Kind::Text),
            ("class", Kind::Text),
            ("at", Kind::Int),
            ("data", Kind::Text),
            ("received_at", Kind::Int),
        ],
    ),
    ("models", &[("name", Kind::Text), ("trained_at", Kind::Int), ("model", Kind::Text)]),
    ("activations", &[("user_id", Kind::Text), ("token_hash", Kind::Text), ("expires_at", Kind::Int)]),
    (
        "job_runs",
        &[
            ("id", Kind::Int),
            ("job", Kind::Text),
            ("trigger", Kind::Text),
            ("started_at", Kind::Int),
            ("finished_at", Kind::Int),
            ("ok", Kind::Bool),
            ("summary", Kind::Text),
        ],
    ),
    ("mfa_sms", &[("user_id", Kind::Text), ("phone_sealed", Kind::Blob), ("confirmed_at", Kind::Int)]),
    (
        "webauthn_credentials",
        &[
            ("id", Kind::Text),
            ("user_id", Kind::Text),
            ("user_handle", Kind::Text),
            ("passkey", Kind::Text),
            ("counter", Kind::Int),
            ("aaguid", Kind::Text),
            ("backup_eligible", Kind::Bool),
            ("backup_state", Kind::Bool),
            ("discoverable", Kind::Bool),
            ("transports", Kind::Text),
            ("label", Kind::Text),
            ("created_at", Kind::Int),
            ("last_used_at", Kind::Int),
        ],
    ),
    (
        "consents",
        &[
            ("user_id", Kind::Text),
            ("purpose", Kind::Text),
            ("granted", Kind::Bool),
            ("at", Kind::Int),
            ("source", Kind::Text),
            ("policy_version", Kind::Text),
        ],
    ),
    (
        "exports",
        &[
            ("id", Kind::Text),
            ("user_id", Kind::Text),
            ("requested_by", Kind::Text),
            ("created_at", Kind::Int),
            ("ready_at", Kind::Int),
            ("expires_at", Kind::Int),
            ("downloads", Kind::Int),
            ("archive_sealed", Kind::Blob),
        ],
    ),
    (
        "erasure_requests",
        &[
            ("user_id", Kind::Text),
            ("asked_at", Kind::Int),
            ("due_at", Kind::Int),
            ("requested_by", Kind::Text),
        ],
    ),
    (
        "erasures",
        &[
            ("subject", Kind::Text),
            ("asked_at", Kind::Int),
            ("ran_at", Kind::Int),
            ("requested_by", Kind::Text),
            ("purged", Kind::Text),
        ],
    ),
    ("edge_wipes", &[("user_id", Kind::Text), ("erased_at", Kind::Int)]),
    ("parental_consents", &[("user_id", Kind::Text), ("token_hash", Kind::Text), ("expires_at", Kind::Int)]),
    ("sms_send_counts", &[("scope", Kind::Text), ("day", Kind::Int), ("count", Kind::Int)]),
    ("edge_nonces", &[("nonce", Kind::Text), ("seen_at", Kind::Int)]),
    (
        "outbox",
        &[
            ("id", Kind::Text),
            ("user_id", Kind::Text),
            ("channel", Kind::Text),
            ("message_sealed", Kind::Blob),
            ("created_at", Kind::Int),
            ("attempts", Kind::Int),
            ("next_attempt_at", Kind::Int),
            ("claimed_until", Kind::Int),
            ("sent_at", Kind::Int),
            ("failed_at", Kind::Int),
            ("last_error", Kind::Text),
        ],
    ),
    (
        "one_time_codes",
        &[
            ("code_hash", Kind::Text),
            ("user_id", Kind::Text),
            ("purpose", Kind::Text),
            ("created_at", Kind::Int),
            ("expires_at", Kind::Int),
            ("used_at", Kind::Int),
        ],
    ),
    (
        "orgs",
        &[
            ("id", Kind::Text),
            ("slug", Kind::Text),
            ("name", Kind::Text),
            ("tier", Kind::Text),
            ("seats", Kind::Int),
            ("policies", Kind::Text),
            ("created_by", Kind::Text),
            ("created_at", Kind::Int),
            ("updated_at", Kind::Int),
        ],
    ),
    (
        "org_members",
        &[("org_id", Kind::Text), ("user_id", Kind::Text), ("role", Kind::Text), ("joined_at", Kind::Int)],
    ),
    (
        "org_invitations",
        &[
            ("token_hash", Kind::Text),
            ("id", Kind::Text),
            ("org_id", Kind::Text),
            ("user_id", Kind::Text),
            ("email_index", Kind::Blob),
            ("email_sealed", Kind::Blob),
            ("role", Kind::Text),
            ("created_at", Kind::Int),
            ("expires_at", Kind::Int),
            ("accepted_at", Kind::Int),
            ("accepted_by", Kind::Text),
            ("revoked_at", Kind::Int),
        ],
    ),
    (
        "org_audit",
        &[
            ("id", Kind::Int),
            ("org_id", Kind::Text),
            ("actor", Kind::Text),
            ("action", Kind::Text),
            ("user_id", Kind::Text),
            ("detail", Kind::Text),
            ("at", Kind::Int),
        ],
    ),
    (
        "service_clients",
        &[
            ("id", Kind::Text),
            ("name", Kind::Text),
            ("secret_hash", Kind::Text),
            ("scopes", Kind::Text),
            ("created_at", Kind::Int),
            ("revoked_at", Kind::Int),
        ],
    ),
    (
        "usage_counters",
        &[("user_id", Kind::Text), ("resource", Kind::Text), ("used", Kind::Int), ("updated_at", Kind::Int)],
    ),
    (
        "usage_reports",
        &[
            ("client_id", Kind::Text),
            ("idempotency_key", Kind::Text),
            ("user_id", Kind::Text),
            ("resource", Kind::Text),
            ("delta", Kind::Int),
            ("admitted", Kind::Bool),
            ("used", Kind::Int),
            ("usage_limit", Kind::Int),
            ("created_at", Kind::Int),
        ],
    ),
    (
        "integrations",
        &[
            ("user_id", Kind::Text),
            ("service", Kind::Text),
            ("status", Kind::Text),
            ("scopes", Kind::Text),
            ("tokens_sealed", Kind::Blob),
            ("account_sealed", Kind::Blob),
            ("expires_at", Kind::Int),
            ("token_version", Kind::Int),
            ("connected_at", Kind::Int),
            ("updated_at", Kind::Int),
            ("last_sync_at", Kind::Int),
            ("last_error", Kind::Text),
            ("sync_cursor", Kind::Text),
            ("retry_at", Kind::Int),
        ],
    ),
    (
        "integration_keys",
        &[
            ("key_hash", Kind::Text),
            ("user_id", Kind::Text),
            ("service", Kind::Text),
            ("scopes", Kind::Text),
            ("created_at", Kind::Int),
            ("revoked_at", Kind::Int),
        ],
    ),
    (
        "catalogue_tracks",
        &[
            ("id", Kind::Text),
            ("title", Kind::Text),
            ("artist", Kind::Text),
            ("genre", Kind::Text),
            ("features", Kind::Text),
            ("popularity", Kind::Int),
        ],
    ),
    (
        "taste_profiles",
        &[
            ("user_id", Kind::Text),
            ("profile", Kind::Text),
            ("cursor_at", Kind::Int),
            ("cursor_id", Kind::Text),
            ("updated_at", Kind::Int),
        ],
    ),
    ("moods", &[("user_id", Kind::Text), ("reading", Kind::Text), ("detected_at", Kind::Int)]),
    ("custom_models", &[("user_id", Kind::Text), ("model", Kind::Text), ("trained_at", Kind::Int)]),
    (
        "federated_state",
        &[
            ("id", Kind::Int),
            ("round", Kind::Int),
            ("weights", Kind::Text),
            ("accountant", Kind::Text),
            ("opened_at", Kind::Int),
        ],
    ),
    (
        "federated_updates",
        &[("round", Kind::Int), ("user_id", Kind::Text), ("delta", Kind::Text), ("at", Kind::Int)],
    ),
    (
        "federated_rounds",
        &[
            ("round", Kind::Int),
            ("clients", Kind::Int),
            ("eligible", Kind::Int),
            ("outcome", Kind::Text),
            ("closed_at", Kind::Int),
        ],
    ),
];

/// Tables whose `id` is a BIGSERIAL in PostgreSQL: their sequences move past the copied ids.
const SERIAL_TABLES: [&str; 5] = ["audit_log", "login_history", "security_events", "job_runs", "org_audit"];

/// Rows per multi-row INSERT (at most 15 columns: far below PostgreSQL's 65,535 parameters).
const BATCH: i64 = 500;

/// How many users are read back and decrypted.
const SAMPLE: i64 = 25;

enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Blob(Option<Vec<u8>>),
    Bool(Option<bool>),
}

fn read_cell(row: &sqlx::sqlite::SqliteRow, column: &str, kind: Kind) -> Result<Cell, sqlx::Error> {
    Ok(match kind {
        Kind::Text => Cell::Text(row.try_get(column)?),
        Kind::Int => Cell::Int(row.try_get(column)?),
        Kind::Blob => Cell::Blob(row.try_get(column)?),
        Kind::Bool => Cell::Bool(row.try_get::<Option<i64>, _>(column)?.map(|v| v != 0)),
    })
}

/// Copies `from` (a `sqlite:` URL of an existing file) into `to` (a `postgres://` URL) and
/// verifies the copy; answers the summary. An error when the copy does not verify.
pub async fn sqlite_to_postgres(from: &str, to: &str, keyring: &Keyring) -> anyhow::Result<Value> {
    let file = SqliteConnectOptions::from_str(from)?.get_filename().to_path_buf();
    anyhow::ensure!(file.exists(), "--from: no SQLite database at {}", file.display());
    anyhow::ensure!(super::is_postgres(to), "--to: expected a postgres:// URL");
    // Opening applies each side's migrations, so both schemas are current.
    let source = SqliteStore::open(from).await?;
    let target = PostgresStore::open(to).await?;

    let mut tables = serde_json::Map::new();
    let mut counts_match = true;
    for (table, columns) in TABLES {
        let copied = copy_table(&source, &target, table, columns).await?;
        let in_source: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(source.pool()).await?;
        let in_target: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(target.pool()).await?;
        counts_match &= in_source == in_target;
        tables.insert(
            (*table).to_owned(),
            json!({"sqlite": in_source, "postgres": in_target, "copied_now": copied}),
        );
    }
    for table in SERIAL_TABLES {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table}"
        ))
        .execute(target.pool())
        .await?;
    }
    let sample = verify_sample(&source, &target, keyring).await?;
    let ok = counts_match && sample.get("failed").and_then(Value::as_u64) == Some(0);
    let summary = json!({"ok": ok, "tables": tables, "sample": sample});
    anyhow::ensure!(ok, "the copy does not verify: {summary}");
    Ok(summary)
}

/// Copies one table in batches of `BATCH` rows in SQLite's rowid order; answers the rows
/// inserted (those already present are skipped).
async fn copy_table(
    source: &SqliteStore,
    target: &PostgresStore,
    table: &str,
    columns: &[(&str, Kind)],
) -> Result<u64, StoreError> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let list = names.join(", ");
    let select =
        format!("SELECT rowid AS migrate_rowid, {list} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT ?");
    let mut after = i64::MIN;
    let mut inserted = 0;
    loop {
        let rows = sqlx::query(&select).bind(after).bind(BATCH).fetch_all(source.pool()).await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get("migrate_rowid")?;
        let mut cells = Vec::with_capacity(rows.len());
        for row in &rows {
            cells.push(
                columns
                    .iter()
                    .map(|(name, kind)| read_cell(row, name, *kind))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let mut insert = QueryBuilder::<sqlx::Postgres>::new(format!("INSERT INTO {table} ({list}) "));
        insert.push_values(cells, |mut values, row| {
            for cell in row {
                match cell {
                    Cell::Text(v) => values.push_bind(v),
                    Cell::Int(v) => values.push_bind(v),
                    Cell::Blob(v) => values.push_bind(v),
                    Cell::Bool(v) => values.push_bind(v),
                };
            }
        });
        insert.push(" ON CONFLICT DO NOTHING");
        inserted += insert.build().execute(target.pool()).await?.rows_affected();
    }
    Ok(inserted)
}

/// Reads a sample of users from PostgreSQL, compares each with its SQLite row, and opens its
/// email with the keyring (the blind index of the decrypted email must be the stored one).
async fn verify_sample(
    source: &SqliteStore,
    target: &PostgresStore,
    keyring: &Keyring,
) -> anyhow::Result<Value> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM users ORDER BY random() LIMIT $1")
        .bind(SAMPLE)
        .fetch_all(target.pool())
        .await?;
    let (mut decrypted, mut failed) = (0u64, Vec::new());
    for id in &ids {
        let (Some(copy), Some(original)) = (target.user_by_id(id).await?, source.user_by_id(id).await?)
        else {
            failed.push(json!({"id": id, "reason": "missing on one side"}));
            continue;
        };
        if copy != original {
            failed.push(json!({"id": id, "reason": "the rows differ"}));
            continue;
        }
        let wrapped = WrappedKey {
            master_key_id: copy.data_key_master_id.clone(),
            sealed: copy.data_key_sealed.clone(),
        };
        let opened = keyring
            .unwrap(&wrapped, &copy.id)
            .ok()
            .and_then(|key| key.open(&copy.email_sealed, &format!("{}/email", copy.id)).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        match opened {
            Some(email)
                if keyring.email_index(&email) == copy.email_index
                    || keyring.retired_email_indexes(&email).contains(&copy.email_index) =>
            {
                decrypted += 1;
            }
            Some(_) => failed.push(json!({"id": id, "reason": "the email does not match its index"})),
            None => failed.push(json!({"id": id, "reason": "the email does not decrypt with this keyring"})),
        }
    }
    Ok(json!({"users": ids.len(), "decrypted": decrypted, "failed": failed.len(), "failures": failed}))
}
