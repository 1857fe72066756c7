//! The PostgreSQL backend: the same semantics as `sqlite.rs`, query for query, for several
//! origin processes sharing one database. SQLite serialises writers with its one write lock;
//! here every read-modify-write takes row locks (`SELECT … FOR UPDATE`) or is one statement
//! (`UPDATE … RETURNING`, `INSERT … ON CONFLICT`), so it stays exact across processes.
//! Migrations: `origin/migrations_pg/`, embedded and applied at open.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::analytics::Activity;
use domain::time::UnixMillis;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use sqlx::Row;

use super::{
    ActivityGroups, ActivityVisitor, AuditEntry, NonceOutcome, Store, StoreError, UpdateOutcome, UserRow,
};

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(database_url)?;
        // Several origin processes may share one server: each keeps a modest pool, so that a
        // few of them stay under PostgreSQL's default max_connections (100).
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        // The migrator takes an advisory lock, so origins starting together apply it once.
        sqlx::migrate!("./migrations_pg").run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

pub(super) fn millis(t: UnixMillis) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

pub(super) fn unix(ms: i64) -> UnixMillis {
    UnixMillis(u64::try_from(ms).unwrap_or(0))
}

const USER_COLUMNS: &str = "id, email_index, email_sealed, data_key_sealed, data_key_master_id, role, tier, \
     email_verified, password_hash, profile_sealed, version, created_at, updated_at, last_login_at, disabled_at";

const USER_PLACEHOLDERS: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15";

/// Binds a user's columns, in `USER_COLUMNS` order.
fn bind_user<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    row: &'q UserRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&row.id)
        .bind(&row.email_index)
        .bind(&row.email_sealed)
        .bind(&row.data_key_sealed)
        .bind(&row.data_key_master_id)
        .bind(&row.role)
        .bind(&row.tier)
        .bind(row.email_verified)
        .bind(&row.password_hash)
        .bind(&row.profile_sealed)
        .bind(row.version)
        .bind(millis(row.created_at))
        .bind(millis(row.updated_at))
        .bind(row.last_login_at.map(millis))
        .bind(row.disabled_at.map(millis))
}

fn user_from_row(r: &sqlx::postgres::PgRow) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.try_get("id")?,
        email_index: r.try_get("email_index")?,
        email_sealed: r.try_get("email_sealed")?,
        data_key_sealed: r.try_get("data_key_sealed")?,
        data_key_master_id: r.try_get("data_key_master_id")?,
        role: r.try_get("role")?,
        tier: r.try_get("tier")?,
        email_verified: r.try_get::<bool, _>("email_verified")?,
        password_hash: r.try_get("password_hash")?,
        profile_sealed: r.try_get("profile_sealed")?,
        version: r.try_get("version")?,
        created_at: unix(r.try_get("created_at")?),
        updated_at: unix(r.try_get("updated_at")?),
        last_login_at: r.try_get::<Option<i64>, _>("last_login_at")?.map(unix),
        disabled_at: r.try_get::<Option<i64>, _>("disabled_at")?.map(unix),
    })
}

pub(super) async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    entry: &AuditEntry,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (user_id, actor, action, old_value, new_value, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&entry.user_id)
    .bind(&entry.actor)
    .bind(&entry.action)
    .bind(&entry.old_value)
    .bind(&entry.new_value)
    .bind(millis(entry.at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn remember_nonce(
        &self,
        nonce: &str,
        now: UnixMillis,
        retain_ms: u64,
    ) -> Result<NonceOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Every request of every origin purges old nonces: SKIP LOCKED leaves the rows another
        // purge holds to it, so concurrent purges neither wait for nor deadlock with each other.
        sqlx::query(
            "DELETE FROM edge_nonces WHERE nonce IN \
             (SELECT nonce FROM edge_nonces WHERE seen_at < $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(millis(now.saturating_sub_ms(retain_ms)))
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO edge_nonces (nonce, seen_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
        )
        .bind(nonce)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if inserted == 1 { NonceOutcome::Fresh } else { NonceOutcome::Replayed })
    }

    async fn insert_user(&self, row: &UserRow, audit: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!("INSERT INTO users ({USER_COLUMNS}) VALUES ({USER_PLACEHOLDERS})");
        let result = bind_user(sqlx::query(&sql), row).execute(&mut *tx).await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::DuplicateEmail)
            }
            Err(e) => return Err(e.into()),
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn user_by_email_index(&self, index: &[u8]) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE email_index = $1"))
            .bind(index)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn update_user(
        &self,
        row: &UserRow,
        expected_version: i64,
        audit: &[AuditEntry],
    ) -> Result<UpdateOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE users SET email_index = $1, email_sealed = $2, data_key_sealed = $3, data_key_master_id = $4, \
             role = $5, tier = $6, email_verified = $7, password_hash = $8, profile_sealed = $9, version = $10, \
             updated_at = $11, disabled_at = $12 WHERE id = $13 AND version = $14",
        )
        .bind(&row.email_index)
        .bind(&row.email_sealed)
        .bind(&row.data_key_sealed)
        .bind(&row.data_key_master_id)
        .bind(&row.role)
        .bind(&row.tier)
        .bind(row.email_verified)
        .bind(&row.password_hash)
        .bind(&row.profile_sealed)
        .bind(row.version)
        .bind(millis(row.updated_at))
        .bind(row.disabled_at.map(millis))
        .bind(&row.id)
        .bind(expected_version)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::DuplicateEmail,
            e => e.into(),
        })?
        .rows_affected();
        if updated == 0 {
            let current: Option<i64> = sqlx::query_scalar("SELECT version FROM users WHERE id = $1")
                .bind(&row.id)
                .fetch_optional(&mut *tx)
                .await?;
            tx.rollback().await?;
            return Ok(current.map_or(UpdateOutcome::NotFound, UpdateOutcome::VersionMismatch));
        }
        for entry in audit {
            insert_audit(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(UpdateOutcome::Updated)
    }

    async fn record_login(&self, id: &str, at: UnixMillis) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
            .bind(millis(at))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn master_key_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT data_key_master_id, COUNT(*) FROM users GROUP BY data_key_master_id ORDER BY data_key_master_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id, n)| (id, u64::try_from(n).unwrap_or(0))).collect())
    }

    async fn users_wrapped_by_others(
        &self,
        current: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<UserRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE data_key_master_id != $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(current)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }

    async fn audit_entries(&self, user_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, actor, action, old_value, new_value, at FROM audit_log WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    user_id: r.try_get("user_id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    old_value: r.try_get("old_value")?,
                    new_value: r.try_get("new_value")?,
                    at: unix(r.try_get("at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

fn step_i64(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

#[async_trait]
impl super::ProtectionStore for PostgresStore {
    async fn append_login(&self, user_id: &str, context: &str, at: UnixMillis) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO login_history (user_id, context, at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(context)
            .bind(millis(at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn recent_logins(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        let rows = sqlx::query(
            "SELECT context, at FROM login_history WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| Ok((r.try_get::<String, _>("context")?, unix(r.try_get("at")?))))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        out.reverse();
        Ok(out)
    }

    async fn state_get(&self, key: &str, now: UnixMillis) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM auth_state WHERE key = $1 AND expires_at > $2")
            .bind(key)
            .bind(millis(now))
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn state_put(&self, key: &str, value: &str, expires_at: UnixMillis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO auth_state (key, value, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .bind(key)
        .bind(value)
        .bind(millis(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_states(
        &self,
        keys: &[(String, UnixMillis)],
        now: UnixMillis,
        update: &(dyn for<'v> Fn(&'v mut [Option<String>]) + Send + Sync),
    ) -> Result<super::StateUpdate, StoreError> {
        // Row locks serialise the updates of a key across connections and processes: each
        // key gets a row first (an expired placeholder, read as absent, when it has none) so
        // that `FOR UPDATE` has something to lock, and keys are locked in sorted order so two
        // updates of overlapping keys cannot deadlock.
        let mut tx = self.pool.begin().await?;
        let mut order: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        order.sort_unstable();
        order.dedup();
        let mut current: std::collections::HashMap<&str, Option<String>> = std::collections::HashMap::new();
        for key in order {
            let mut locked = None;
            // A row deleted by the transaction we waited for is gone when our lock is granted
            // (the SELECT then finds nothing): insert it again and lock that. Bounded, since
            // each round waits for a committed competitor.
            for _ in 0..8 {
                sqlx::query(
                    "INSERT INTO auth_state (key, value, expires_at) VALUES ($1, '', 0) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .execute(&mut *tx)
                .await?;
                locked = sqlx::query_as::<_, (String, i64)>(
                    "SELECT value, expires_at FROM auth_state WHERE key = $1 FOR UPDATE",
                )
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if locked.is_some() {
                    break;
                }
            }
            let Some((value, expires_at)) = locked else {
                return Err(StoreError::Corrupt(format!("auth_state key {key:?} could not be locked")));
            };
            current.insert(key, (expires_at > millis(now)).then_some(value));
        }
        let mut values: Vec<Option<String>> =
            keys.iter().map(|(k, _)| current.get(k.as_str()).cloned().flatten()).collect();
        let before = values.clone();
        update(&mut values);
        for ((key, expires_at), value) in keys.iter().zip(&values) {
            match value {
                Some(value) => {
                    sqlx::query(
                        "INSERT INTO auth_state (key, value, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                    )
                    .bind(key)
                    .bind(value)
                    .bind(millis(*expires_at))
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM auth_state WHERE key = $1").bind(key).execute(&mut *tx).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(super::StateUpdate { before, after: values })
    }

    async fn state_take(&self, key: &str, now: UnixMillis) -> Result<Option<String>, StoreError> {
        let value: Option<(String, i64)> =
            sqlx::query_as("DELETE FROM auth_state WHERE key = $1 RETURNING value, expires_at")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(value.filter(|(_, expires)| *expires > millis(now)).map(|(v, _)| v))
    }

    async fn enrolled_factors(&self, user_id: &str) -> Result<domain::security::Enrolled, StoreError> {
        let (webauthn, totp, sms, left): (bool, bool, bool, i64) = sqlx::query_as(
            "SELECT \
               EXISTS (SELECT 1 FROM webauthn_credentials WHERE user_id = $1), \
               EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NOT NULL), \
               EXISTS (SELECT 1 FROM mfa_sms WHERE user_id = $1), \
               (SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL)",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(domain::security::Enrolled {
            webauthn,
            totp,
            sms,
            recovery_codes_left: u32::try_from(left).unwrap_or(0),
        })
    }

    async fn record_login_success(
        &self,
        user_id: &str,
        context: &str,
        at: UnixMillis,
        events: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
            .bind(millis(at))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO login_history (user_id, context, at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(context)
            .bind(millis(at))
            .execute(&mut *tx)
            .await?;
        for (kind, detail) in events {
            sqlx::query("INSERT INTO security_events (user_id, kind, detail, at) VALUES ($1, $2, $3, $4)")
                .bind(user_id)
                .bind(kind)
                .bind(detail)
                .bind(millis(at))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn is_disabled(&self, user_id: &str) -> Result<Option<bool>, StoreError> {
        let row: Option<Option<i64>> = sqlx::query_scalar("SELECT disabled_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|disabled_at| disabled_at.is_some()))
    }

    async fn state_delete(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM auth_state WHERE key = $1").bind(key).execute(&self.pool).await?;
        Ok(())
    }

    async fn add_security_event(
        &self,
        user_id: &str,
        kind: &str,
        detail: &str,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO security_events (user_id, kind, detail, at) VALUES ($1, $2, $3, $4)")
            .bind(user_id)
            .bind(kind)
            .bind(detail)
            .bind(millis(at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn security_events(
        &self,
        user_id: &str,
        limit: u32,
    ) -> Result<Vec<super::SecurityEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, detail, at FROM security_events WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(super::SecurityEvent {
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                    at: unix(r.try_get("at")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn totp(&self, user_id: &str) -> Result<Option<super::TotpRow>, StoreError> {
        let row =
            sqlx::query("SELECT secret_sealed, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row
            .map(|r| -> Result<super::TotpRow, sqlx::Error> {
                Ok(super::TotpRow {
                    secret_sealed: r.try_get("secret_sealed")?,
                    confirmed_at: r.try_get::<Option<i64>, _>("confirmed_at")?.map(unix),
                    last_step: r.try_get::<Option<i64>, _>("last_step")?.and_then(|s| u64::try_from(s).ok()),
                })
            })
            .transpose()?)
    }

    async fn put_pending_totp(&self, user_id: &str, secret_sealed: &[u8]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mfa_totp (user_id, secret_sealed) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, confirmed_at = NULL, last_step = NULL \
             WHERE mfa_totp.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(secret_sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn confirm_totp(
        &self,
        user_id: &str,
        at: UnixMillis,
        step: u64,
        recovery_hashes: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE mfa_totp SET confirmed_at = $1, last_step = $2 WHERE user_id = $3")
            .bind(millis(at))
            .bind(step_i64(step))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        for hash in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn use_totp_step(&self, user_id: &str, step: u64) -> Result<bool, StoreError> {
        // One statement, so two requests with the same code cannot both pass.
        let updated = sqlx::query(
            "UPDATE mfa_totp SET last_step = $1 WHERE user_id = $2 AND confirmed_at IS NOT NULL \
             AND (last_step IS NULL OR last_step < $3)",
        )
        .bind(step_i64(step))
        .bind(user_id)
        .bind(step_i64(step))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sms_phone(&self, user_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT phone_sealed FROM mfa_sms WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn put_sms_phone(
        &self,
        user_id: &str,
        phone_sealed: &[u8],
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mfa_sms (user_id, phone_sealed, confirmed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET phone_sealed = excluded.phone_sealed, confirmed_at = excluded.confirmed_at",
        )
        .bind(user_id)
        .bind(phone_sealed)
        .bind(millis(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_sms_phone(&self, user_id: &str) -> Result<bool, StoreError> {
        let deleted =
            sqlx::query("DELETE FROM mfa_sms WHERE user_id = $1").bind(user_id).execute(&self.pool).await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn count_sms_text(
        &self,
        counters: &[(String, u32)],
        day: u64,
    ) -> Result<Option<usize>, StoreError> {
        let day = i64::try_from(day).unwrap_or(i64::MAX);
        // Each upsert takes the counter's row lock until the commit, so two requests cannot
        // both take the last text. Rows are counted in sorted order (no deadlock between
        // requests naming the same counters in another order); the answer is the first
        // counter past its limit in the caller's order, then nothing is counted.
        let mut order: Vec<usize> = (0..counters.len()).collect();
        order.sort_by(|a, b| counters.get(*a).map(|c| &c.0).cmp(&counters.get(*b).map(|c| &c.0)));
        let mut over = vec![false; counters.len()];
        let mut tx = self.pool.begin().await?;
        for i in order {
            let Some((scope, limit)) = counters.get(i) else { continue };
            let count: i64 = sqlx::query_scalar(
                "INSERT INTO sms_send_counts (scope, day, count) VALUES ($1, $2, 1) \
                 ON CONFLICT (scope, day) DO UPDATE SET count = sms_send_counts.count + 1 RETURNING count",
            )
            .bind(scope)
            .bind(day)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(flag) = over.get_mut(i) {
                *flag = count > i64::from(*limit);
            }
        }
        if let Some(first) = over.iter().position(|o| *o) {
            // A refused text counts for nothing: the increments are undone.
            tx.rollback().await?;
            return Ok(Some(first));
        }
        tx.commit().await?;
        Ok(None)
    }

    async fn use_recovery_code(
        &self,
        user_id: &str,
        code_hashes: &[String],
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        // One statement per candidate hash; each is atomic, so a code used twice at once
        // passes once.
        for code_hash in code_hashes {
            let updated = sqlx::query(
                "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(millis(at))
            .bind(user_id)
            .bind(code_hash)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if updated == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn recovery_codes_left(&self, user_id: &str) -> Result<u32, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(u32::try_from(n).unwrap_or(0))
    }
}

#[async_trait]
impl super::EventStore for PostgresStore {
    async fn store_events(
        &self,
        events: &[super::EventRow],
        received_at: UnixMillis,
    ) -> Result<(u64, u64), StoreError> {
        // One transaction per batch: a batch is stored whole or not at all, and a retried
        // batch finds its already-stored events and skips them.
        let mut tx = self.pool.begin().await?;
        let mut stored = 0;
        for e in events {
            let before = stored;
            stored += sqlx::query(
                // An event about a user who no longer exists (erased while it was queued) is
                // dropped: it would bring the erased id back. The user's row is locked (key
                // share) until the batch commits: an erasure (which locks it for update, then
                // deletes the user's events) waits for this batch, or this batch waits for the
                // erasure and then finds no user. Without it, another origin's erasure could
                // commit between the check and the insert.
                "INSERT INTO events (id, user_id, kind, class, at, data, received_at) \
                 SELECT $1, $2::TEXT, $3, $4, $5, $6, $7 \
                 WHERE $2::TEXT IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = $2::TEXT FOR KEY SHARE) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&e.id)
            .bind(&e.user_id)
            .bind(e.kind.as_str())
            .bind(&e.class)
            .bind(i64::try_from(e.at).unwrap_or(i64::MAX))
            .bind(e.data.to_string())
            .bind(millis(received_at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let inserted = stored > before;
            // What only the edge sees but the user should read (a session ended to keep under
            // the tier's cap) becomes a security event too, once, with the event itself.
            if inserted && e.kind.is_security_event() {
                if let Some(user_id) = &e.user_id {
                    sqlx::query(
                        "INSERT INTO security_events (user_id, kind, detail, at) \
                         SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM users WHERE id = $5 FOR KEY SHARE)",
                    )
                    .bind(user_id)
                    .bind(e.kind.as_str())
                    .bind(e.data.to_string())
                    .bind(i64::try_from(e.at).unwrap_or(i64::MAX))
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        let total = u64::try_from(events.len()).unwrap_or(u64::MAX);
        Ok((stored, total.saturating_sub(stored)))
    }

    async fn user_events(
        &self,
        user_id: &str,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<super::EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, kind, class, at, data FROM events WHERE user_id = $1 AND at >= $2 AND at < $3 ORDER BY at, id",
        )
        .bind(user_id)
        .bind(millis(from))
        .bind(millis(to))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(super::EventRow {
                    id: r.try_get("id")?,
                    kind: super::event_kind(&r.try_get::<String, _>("kind")?)?,
                    user_id: r.try_get("user_id")?,
                    class: r.try_get("class")?,
                    at: u64::try_from(r.try_get::<i64, _>("at")?).unwrap_or(0),
                    data: serde_json::from_str(&r.try_get::<String, _>("data")?)
                        .unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn count_events(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&self.pool).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn model(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT model FROM models WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn put_model(&self, name: &str, model: &str, trained_at: UnixMillis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO models (name, trained_at, model) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET trained_at = excluded.trained_at, model = excluded.model",
        )
        .bind(name)
        .bind(millis(trained_at))
        .bind(model)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl super::JobStore for PostgresStore {
    async fn insert_provisioned(
        &self,
        users: &[(UserRow, Option<(String, UnixMillis)>)],
        actor: &str,
        at: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!("INSERT INTO users ({USER_COLUMNS}) VALUES ({USER_PLACEHOLDERS}) ON CONFLICT (email_index) DO NOTHING");
        let mut tx = self.pool.begin().await?;
        let mut inserted = Vec::new();
        for (row, activation) in users {
            let done = bind_user(sqlx::query(&sql), row).execute(&mut *tx).await?.rows_affected();
            if done == 1 {
                inserted.push(row.id.clone());
                if let Some((token_hash, expires_at)) = activation {
                    sqlx::query(
                        "INSERT INTO activations (user_id, token_hash, expires_at) VALUES ($1, $2, $3)",
                    )
                    .bind(&row.id)
                    .bind(token_hash)
                    .bind(millis(*expires_at))
                    .execute(&mut *tx)
                    .await?;
                }
                insert_audit(
                    &mut tx,
                    &AuditEntry {
                        user_id: row.id.clone(),
                        actor: actor.to_owned(),
                        action: "provision".into(),
                        old_value: None,
                        new_value: Some(format!("tier={}", row.tier)),
                        at,
                    },
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn insert_events(
        &self,
        events: &[super::EventRow],
        received_at: UnixMillis,
    ) -> Result<u64, StoreError> {
        Ok(super::EventStore::store_events(self, events, received_at).await?.0)
    }

    async fn all_users(&self) -> Result<Vec<(String, String, UnixMillis)>, StoreError> {
        let rows = sqlx::query("SELECT id, tier, created_at FROM users ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("tier")?, unix(r.try_get("created_at")?))))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn for_each_user_activity(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        visit: &mut ActivityVisitor<'_>,
    ) -> Result<u64, StoreError> {
        let mut rows = sqlx::query(
            "SELECT user_id, kind, class, at FROM events WHERE user_id IS NOT NULL AND at >= $1 AND at < $2 ORDER BY user_id, at",
        )
        .bind(millis(from))
        .bind(millis(to))
        .fetch(&self.pool);
        let mut groups = ActivityGroups::new(visit);
        while let Some(row) = rows.try_next().await? {
            let user: &str = row.try_get("user_id")?;
            let activity = Activity {
                kind: super::event_kind(&row.try_get::<String, _>("kind")?)?,
                class: row.try_get("class")?,
                at: UnixMillis(u64::try_from(row.try_get::<i64, _>("at")?).unwrap_or(0)),
            };
            groups.push(user, activity);
        }
        Ok(groups.finish())
    }

    async fn tier_changes(
        &self,
    ) -> Result<Vec<(String, Option<String>, Option<String>, UnixMillis)>, StoreError> {
        let rows = sqlx::query("SELECT user_id, old_value, new_value, at FROM audit_log WHERE action = 'tier_change' ORDER BY at")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("user_id")?,
                    r.try_get("old_value")?,
                    r.try_get("new_value")?,
                    unix(r.try_get("at")?),
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn purge_auth_state(
        &self,
        now: UnixMillis,
        nonces_before: UnixMillis,
    ) -> Result<(u64, u64), StoreError> {
        let state = sqlx::query("DELETE FROM auth_state WHERE expires_at <= $1")
            .bind(millis(now))
            .execute(&self.pool)
            .await?
            .rows_affected();
        let nonces = sqlx::query("DELETE FROM edge_nonces WHERE seen_at < $1")
            .bind(millis(nonces_before))
            .execute(&self.pool)
            .await?
            .rows_affected();
        // SMS counters of days before yesterday limit nothing any more.
        let today = i64::try_from(domain::sms_quota::day(now)).unwrap_or(i64::MAX);
        sqlx::query("DELETE FROM sms_send_counts WHERE day < $1").bind(today - 1).execute(&self.pool).await?;
        Ok((state, nonces))
    }

    async fn purge_unactivated(&self, now: UnixMillis) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT a.user_id FROM activations a JOIN users u ON u.id = a.user_id \
             WHERE a.expires_at <= $1 AND u.password_hash IS NULL",
        )
        .bind(millis(now))
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            for table in [
                "activations",
                "audit_log",
                "security_events",
                "login_history",
                "mfa_totp",
                "recovery_codes",
                "mfa_sms",
            ] {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
    }

    async fn purge_events_before(&self, before: UnixMillis) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM events WHERE at < $1")
            .bind(millis(before))
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    async fn activate(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let user: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM activations WHERE token_hash = $1 AND expires_at > $2")
                .bind(token_hash)
                .bind(millis(now))
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(id) = &user {
            sqlx::query(
                "UPDATE users SET password_hash = $1, email_verified = TRUE, updated_at = $2 WHERE id = $3",
            )
            .bind(password_hash)
            .bind(millis(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM activations WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    async fn activation_user(
        &self,
        token_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = (SELECT user_id FROM activations WHERE token_hash = $1 AND expires_at > $2)"
        ))
        .bind(token_hash)
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn start_job(&self, job: &str, trigger: &str, at: UnixMillis) -> Result<i64, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO job_runs (job, trigger, started_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(job)
        .bind(trigger)
        .bind(millis(at))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn finish_job(&self, id: i64, ok: bool, summary: &str, at: UnixMillis) -> Result<(), StoreError> {
        sqlx::query("UPDATE job_runs SET finished_at = $1, ok = $2, summary = $3 WHERE id = $4")
            .bind(millis(at))
            .bind(ok)
            .bind(summary)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn job_runs(&self, limit: u32) -> Result<Vec<domain::wire::job::JobRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT job, trigger, started_at, finished_at, ok, summary FROM job_runs ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let decode = |e: domain::wire::job::UnknownJob| sqlx::Error::Decode(Box::new(e));
                Ok(domain::wire::job::JobRun {
                    job: r.try_get::<String, _>("job")?.parse().map_err(decode)?,
                    trigger: r.try_get::<String, _>("trigger")?.parse().map_err(decode)?,
                    started_at: r.try_get::<i64, _>("started_at")?,
                    finished_at: r.try_get::<Option<i64>, _>("finished_at")?,
                    ok: r.try_get::<Option<bool>, _>("ok")?,
                    summary: r
                        .try_get::<Option<String>, _>("summary")?
                        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }
}

const PASSKEY_COLUMNS: &str = "id, user_id, user_handle, passkey, counter, aaguid, backup_eligible, \
     backup_state, discoverable, transports, label, created_at, last_used_at";

fn passkey_row(row: &sqlx::postgres::PgRow) -> Result<super::PasskeyRow, StoreError> {
    Ok(super::PasskeyRow {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        user_handle: row.try_get("user_handle")?,
        passkey: row.try_get("passkey")?,
        counter: u32::try_from(row.try_get::<i64, _>("counter")?)
            .map_err(|_| StoreError::Corrupt("a passkey counter is out of range".into()))?,
        aaguid: row.try_get("aaguid")?,
        backup_eligible: row.try_get("backup_eligible")?,
        backup_state: row.try_get("backup_state")?,
        discoverable: row.try_get("discoverable")?,
        transports: row.try_get("transports")?,
        label: row.try_get("label")?,
        created_at: unix(row.try_get("created_at")?),
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(unix),
    })
}

#[async_trait]
impl super::PasskeyStore for PostgresStore {
    async fn passkeys(&self, user_id: &str) -> Result<Vec<super::PasskeyRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(passkey_row).collect()
    }

    async fn passkey(&self, id: &str) -> Result<Option<super::PasskeyRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {PASSKEY_COLUMNS} FROM webauthn_credentials WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(passkey_row).transpose()
    }

    async fn insert_passkey(
        &self,
        row: &super::PasskeyRow,
        max: usize,
    ) -> Result<super::PasskeyInsert, StoreError> {
        // The user's row is locked for the count and the insert: registrations of one account
        // (on any origin) take turns, so none passes the limit with another.
        let mut tx = self.pool.begin().await?;
        let user: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(&row.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if user.is_none() {
            return Err(StoreError::Corrupt(format!("no user {} for a passkey", row.user_id)));
        }
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webauthn_credentials WHERE user_id = $1")
            .bind(&row.user_id)
            .fetch_one(&mut *tx)
            .await?;
        if usize::try_from(held).unwrap_or(usize::MAX) >= max {
            return Ok(super::PasskeyInsert::TooMany);
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO webauthn_credentials ({PASSKEY_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING"
        ))
        .bind(&row.id)
        .bind(&row.user_id)
        .bind(&row.user_handle)
        .bind(&row.passkey)
        .bind(i64::from(row.counter))
        .bind(&row.aaguid)
        .bind(row.backup_eligible)
        .bind(row.backup_state)
        .bind(row.discoverable)
        .bind(&row.transports)
        .bind(&row.label)
        .bind(millis(row.created_at))
        .bind(row.last_used_at.map(millis))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(super::PasskeyInsert::Duplicate);
        }
        tx.commit().await?;
        Ok(super::PasskeyInsert::Inserted)
    }

    async fn use_passkey(&self, id: &str, update: &super::PasskeyUse) -> Result<bool, StoreError> {
        // One conditional statement: the row lock PostgreSQL takes makes a second use with the
        // same expected counter find the moved one and update nothing.
        let done = sqlx::query(
            "UPDATE webauthn_credentials SET counter = $1, backup_state = $2, passkey = $3, last_used_at = $4 \
             WHERE id = $5 AND counter = $6",
        )
        .bind(i64::from(update.counter))
        .bind(update.backup_state)
        .bind(&update.passkey)
        .bind(millis(update.at))
        .bind(id)
        .bind(i64::from(update.expected_counter))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn rename_passkey(&self, user_id: &str, id: &str, label: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE webauthn_credentials SET label = $1 WHERE user_id = $2 AND id = $3")
            .bind(label)
            .bind(user_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webauthn_credentials WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn consent_from_row(r: &sqlx::postgres::PgRow) -> Result<domain::rights::Consent, StoreError> {
    let purpose: String = r.try_get("purpose")?;
    let source: String = r.try_get("source")?;
    Ok(domain::rights::Consent {
        purpose: domain::rights::Purpose::parse(&purpose)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown consent purpose {purpose:?}")))?,
        granted: r.try_get("granted")?,
        at: unix(r.try_get("at")?),
        source: domain::rights::Source::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown consent source {source:?}")))?,
        policy_version: r.try_get("policy_version")?,
    })
}

const EXPORT_COLUMNS: &str = "id, user_id, requested_by, created_at, ready_at, expires_at, downloads";

fn export_from_row(r: &sqlx::postgres::PgRow) -> Result<super::ExportRow, sqlx::Error> {
    Ok(super::ExportRow {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        requested_by: r.try_get("requested_by")?,
        created_at: unix(r.try_get("created_at")?),
        ready_at: r.try_get::<Option<i64>, _>("ready_at")?.map(unix),
        expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(unix),
        downloads: u32::try_from(r.try_get::<i64, _>("downloads")?).unwrap_or(u32::MAX),
    })
}

#[async_trait]
impl super::RightsStore for PostgresStore {
    async fn put_parental_request(
        &self,
        user_id: &str,
        token_hash: &str,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO parental_consents (user_id, token_hash, expires_at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(token_hash)
            .bind(millis(expires_at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn take_parental_request(
        &self,
        token_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<String>, StoreError> {
        // One DELETE … RETURNING: of two uses of one link, one gets the child.
        Ok(sqlx::query_scalar(
            "DELETE FROM parental_consents WHERE token_hash = $1 AND expires_at > $2 RETURNING user_id",
        )
        .bind(token_hash)
        .bind(millis(now))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn expired_parental_requests(
        &self,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM parental_consents WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2",
        )
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn consents(&self, user_id: &str) -> Result<Vec<domain::rights::Consent>, StoreError> {
        let rows = sqlx::query(
            "SELECT purpose, granted, at, source, policy_version FROM consents WHERE user_id = $1 ORDER BY purpose",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(consent_from_row).collect()
    }

    async fn put_consents(
        &self,
        user_id: &str,
        consents: &[domain::rights::Consent],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for c in consents {
            // An upsert is one statement: concurrent changes of one purpose serialise on its row.
            sqlx::query(
                "INSERT INTO consents (user_id, purpose, granted, at, source, policy_version) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (user_id, purpose) DO UPDATE SET granted = excluded.granted, at = excluded.at, \
                 source = excluded.source, policy_version = excluded.policy_version",
            )
            .bind(user_id)
            .bind(c.purpose.as_str())
            .bind(c.granted)
            .bind(millis(c.at))
            .bind(c.source.as_str())
            .bind(&c.policy_version)
            .execute(&mut *tx)
            .await?;
        }
        for entry in audit {
            insert_audit(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn start_export(
        &self,
        new: &super::ExportRow,
        reuse: &(dyn for<'r> Fn(&'r super::ExportRow) -> bool + Send + Sync),
        audit: &AuditEntry,
    ) -> Result<Option<(super::ExportRow, bool)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The user's row lock serialises starts for one user across origins.
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(&new.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let newest = sqlx::query(&format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1"
        ))
        .bind(&new.user_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| export_from_row(&r))
        .transpose()?;
        if let Some(existing) = newest.filter(|e| reuse(e)) {
            tx.commit().await?;
            return Ok(Some((existing, false)));
        }
        sqlx::query(
            "INSERT INTO exports (id, user_id, requested_by, created_at, downloads) VALUES ($1, $2, $3, $4, 0)",
        )
        .bind(&new.id)
        .bind(&new.user_id)
        .bind(&new.requested_by)
        .bind(millis(new.created_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Some((new.clone(), true)))
    }

    async fn finish_export(
        &self,
        id: &str,
        archive_sealed: &[u8],
        ready_at: UnixMillis,
        expires_at: UnixMillis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE exports SET archive_sealed = $1, ready_at = $2, expires_at = $3 WHERE id = $4",
        )
        .bind(archive_sealed)
        .bind(millis(ready_at))
        .bind(millis(expires_at))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn export(&self, id: &str) -> Result<Option<super::ExportRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| export_from_row(&r)).transpose()?)
    }

    async fn take_export(&self, id: &str, now: UnixMillis, max: u32) -> Result<Option<Vec<u8>>, StoreError> {
        // One conditional UPDATE … RETURNING: the row lock makes concurrent downloads, on any
        // origin, count one after the other; at most `max` get the archive.
        Ok(sqlx::query_scalar(
            "UPDATE exports SET downloads = downloads + 1 \
             WHERE id = $1 AND ready_at IS NOT NULL AND expires_at > $2 AND downloads < $3 \
             RETURNING archive_sealed",
        )
        .bind(id)
        .bind(millis(now))
        .bind(i64::from(max))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn request_erasure(
        &self,
        user_id: &str,
        request: &super::ErasureRequest,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO erasure_requests (user_id, asked_at, due_at, requested_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET asked_at = excluded.asked_at, due_at = excluded.due_at, \
             requested_by = excluded.requested_by",
        )
        .bind(user_id)
        .bind(millis(request.asked_at))
        .bind(millis(request.due_at))
        .bind(&request.requested_by)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn erasure_request(&self, user_id: &str) -> Result<Option<super::ErasureRequest>, StoreError> {
        let row =
            sqlx::query("SELECT asked_at, due_at, requested_by FROM erasure_requests WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row
            .map(|r| -> Result<_, sqlx::Error> {
                Ok(super::ErasureRequest {
                    asked_at: unix(r.try_get("asked_at")?),
                    due_at: unix(r.try_get("due_at")?),
                    requested_by: r.try_get("requested_by")?,
                })
            })
            .transpose()?)
    }

    async fn cancel_erasure(&self, user_id: &str, audit: &AuditEntry) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM erasure_requests WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn due_erasures(&self, now: UnixMillis, limit: u32) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM erasure_requests WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
        )
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn erase_user(
        &self,
        user_id: &str,
        record: &super::ErasureRecord,
    ) -> Result<Option<std::collections::BTreeMap<String, u64>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The user's row lock: a concurrent erasure (another origin's cleanup) waits, then
        // finds no user and does nothing.
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut purged = std::collections::BTreeMap::new();
        for &table in super::ERASED_TABLES {
            let statement = match table {
                // Short-lived state names the user in its key (`mfa:<id>`) or its value (challenges).
                "auth_state" => {
                    "DELETE FROM auth_state WHERE strpos(key, $1) > 0 OR strpos(value, $1) > 0".to_owned()
                }
                "sms_send_counts" => "DELETE FROM sms_send_counts WHERE scope = 'account:' || $1".to_owned(),
                other => format!("DELETE FROM {other} WHERE user_id = $1"),
            };
            let n = sqlx::query(&statement).bind(user_id).execute(&mut *tx).await?.rows_affected();
            purged.insert(table.to_owned(), n);
        }
        sqlx::query("DELETE FROM users WHERE id = $1").bind(user_id).execute(&mut *tx).await?;
        purged.insert("users".to_owned(), 1);
        let summary = serde_json::to_string(&purged).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO erasures (subject, asked_at, ran_at, requested_by, purged) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (subject) DO NOTHING",
        )
        .bind(&record.subject)
        .bind(millis(record.asked_at))
        .bind(millis(record.ran_at))
        .bind(&record.requested_by)
        .bind(&summary)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO edge_wipes (user_id, erased_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(millis(record.ran_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(purged))
    }

    async fn erasure_record(&self, subject: &str) -> Result<Option<super::ErasureRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT subject, asked_at, ran_at, requested_by, purged FROM erasures WHERE subject = $1",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| -> Result<_, sqlx::Error> {
                Ok(super::ErasureRecord {
                    subject: r.try_get("subject")?,
                    asked_at: unix(r.try_get("asked_at")?),
                    ran_at: unix(r.try_get("ran_at")?),
                    requested_by: r.try_get("requested_by")?,
                    purged: r.try_get("purged")?,
                })
            })
            .transpose()?)
    }

    async fn pending_edge_wipes(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT user_id FROM edge_wipes ORDER BY erased_at LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn edge_wiped(&self, user_id: &str) -> Result<bool, StoreError> {
        let gone = sqlx::query("DELETE FROM edge_wipes WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone == 1)
    }
}

#[async_trait]
impl super::ObserveStore for PostgresStore {
    fn pool_use(&self) -> super::PoolUse {
        super::PoolUse {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    async fn tier_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT tier, COUNT(*) AS n FROM users GROUP BY tier ORDER BY tier")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("tier")?, count(r.try_get("n")?))))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn active_users_since(&self, since: UnixMillis) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT user_id) FROM events WHERE at >= $1 AND user_id IS NOT NULL",
        )
        .bind(millis(since))
        .fetch_one(&self.pool)
        .await?;
        Ok(count(n))
    }

    async fn activity_counts(&self, since: UnixMillis) -> Result<Vec<(u64, String, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT at / 60000 AS minute, kind, COUNT(*) AS n FROM events WHERE at >= $1 GROUP BY 1, 2 \
             UNION ALL SELECT created_at / 60000, 'signup', COUNT(*) FROM users WHERE created_at >= $1 GROUP BY 1",
        )
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((count(r.try_get("minute")?), r.try_get("kind")?, count(r.try_get("n")?))))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn usage_by_tier(
        &self,
        since: UnixMillis,
        kinds: &[&str],
    ) -> Result<Vec<(String, String, u64)>, StoreError> {
        let kinds: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
        let rows = sqlx::query(
            "SELECT kind, COALESCE(data::json->>'tier', 'none') AS tier, COUNT(*) AS n FROM events \
             WHERE at >= $1 AND kind = ANY($2) GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(millis(since))
        .bind(kinds)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("kind")?, r.try_get("tier")?, count(r.try_get("n")?))))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn security_events_since(
        &self,
        since: UnixMillis,
        limit: u32,
    ) -> Result<Vec<(String, super::SecurityEvent)>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_id, kind, detail, at FROM security_events WHERE at >= $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(millis(since))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("user_id")?,
                    super::SecurityEvent {
                        kind: r.try_get("kind")?,
                        detail: r.try_get("detail")?,
                        at: unix(r.try_get("at")?),
                    },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn last_successful_run(
        &self,
        job: &str,
    ) -> Result<Option<(UnixMillis, serde_json::Value)>, StoreError> {
        let row = sqlx::query(
            "SELECT finished_at, summary FROM job_runs WHERE job = $1 AND ok ORDER BY id DESC LIMIT 1",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let finished: Option<i64> = r.try_get("finished_at")?;
        let summary: Option<String> = r.try_get("summary")?;
        let summary = summary.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(serde_json::Value::Null);
        Ok(Some((unix(finished.unwrap_or(0)), summary)))
    }
    async fn compliance_counts(
        &self,
        since: UnixMillis,
        now: UnixMillis,
    ) -> Result<super::ComplianceCounts, StoreError> {
        // One statement: every count read in the same snapshot.
        let r = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM erasure_requests) AS erasures_pending,
                    (SELECT COUNT(*) FROM erasures WHERE ran_at >= $1) AS erasures_done,
                    (SELECT COUNT(*) FROM edge_wipes) AS edge_wipes_pending,
                    (SELECT COUNT(*) FROM exports WHERE ready_at IS NULL) AS exports_building,
                    (SELECT COUNT(*) FROM exports WHERE ready_at IS NOT NULL AND expires_at >= $2) AS exports_ready,
                    (SELECT COUNT(*) FROM consents WHERE at >= $1) AS consent_changes,
                    (SELECT COUNT(*) FROM parental_consents) AS parental_pending",
        )
        .bind(millis(since))
        .bind(millis(now))
        .fetch_one(&self.pool)
        .await?;
        let n = |name: &str| -> Result<u64, StoreError> { Ok(count(r.try_get::<i64, _>(name)?)) };
        Ok(super::ComplianceCounts {
            erasures_pending: n("erasures_pending")?,
            erasures_done: n("erasures_done")?,
            edge_wipes_pending: n("edge_wipes_pending")?,
            exports_building: n("exports_building")?,
            exports_ready: n("exports_ready")?,
            consent_changes: n("consent_changes")?,
            parental_pending: n("parental_pending")?,
        })
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
