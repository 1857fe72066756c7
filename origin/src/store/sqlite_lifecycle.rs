//! The SQLite backend of [`LifecycleStore`]: the outbox, single-use codes and retention. Every
//! read-then-write runs under `BEGIN IMMEDIATE` (SQLite's write lock taken before the read),
//! so two origins' dispatchers, or two uses of one code, serialise.

use async_trait::async_trait;
use domain::retention::DataClass;
use domain::time::UnixMillis;
use sqlx::Row;

use super::sqlite::{insert_audit, millis, unix};
use super::{
    AuditEntry, ClaimedMessage, CodeRow, LifecycleStore, OutboxRow, PasswordReset, SqliteStore, StoreError,
};

const CLAIMABLE: &str =
    "sent_at IS NULL AND failed_at IS NULL AND (claimed_until IS NULL OR claimed_until <= ?)";

fn claimed_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ClaimedMessage, sqlx::Error> {
    Ok(ClaimedMessage {
        row: OutboxRow {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            channel: r.try_get("channel")?,
            message_sealed: r.try_get("message_sealed")?,
            created_at: unix(r.try_get("created_at")?),
        },
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
    })
}

pub(super) async fn insert_message(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    m: &OutboxRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, user_id, channel, message_sealed, created_at, next_attempt_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&m.id)
    .bind(&m.user_id)
    .bind(&m.channel)
    .bind(&m.message_sealed)
    .bind(millis(m.created_at))
    .bind(millis(m.created_at.saturating_add_ms(domain::delivery::SWEEP_GRACE_MS)))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl LifecycleStore for SqliteStore {
    async fn enqueue_message(&self, message: &OutboxRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        insert_message(&mut tx, message).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_message(
        &self,
        id: &str,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<Option<ClaimedMessage>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE outbox SET claimed_until = ? WHERE id = ? AND {CLAIMABLE} \
             RETURNING id, user_id, channel, message_sealed, created_at, attempts"
        ))
        .bind(millis(lease_until))
        .bind(id)
        .bind(millis(now))
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(claimed_from_row).transpose()?)
    }

    async fn claim_due(
        &self,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        // A read first, without the write lock: most sweeps find nothing due, and should not
        // take SQLite's one write lock every second for that.
        let any: Option<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM outbox WHERE next_attempt_at <= ? AND {CLAIMABLE} LIMIT 1"
        ))
        .bind(millis(now))
        .bind(millis(now))
        .fetch_optional(self.pool())
        .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id FROM outbox WHERE next_attempt_at <= ? AND {CLAIMABLE} ORDER BY next_attempt_at LIMIT ?"
        ))
        .bind(millis(now))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query(
                "UPDATE outbox SET claimed_until = ? WHERE id = ? \
                 RETURNING id, user_id, channel, message_sealed, created_at, attempts",
            )
            .bind(millis(lease_until))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            claimed.push(claimed_from_row(&row)?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn message_sent(&self, id: &str, at: UnixMillis) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, claimed_until = NULL, last_error = NULL \
             WHERE id = ? AND sent_at IS NULL",
        )
        .bind(millis(at))
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    async fn message_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: Option<UnixMillis>,
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let query = match retry_at {
            Some(next) => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, claimed_until = NULL, last_error = ?, \
                 next_attempt_at = ? WHERE id = ? AND sent_at IS NULL",
            )
            .bind(error)
            .bind(millis(next)),
            None => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, claimed_until = NULL, last_error = ?, \
                 failed_at = ? WHERE id = ? AND sent_at IS NULL",
            )
            .bind(error)
            .bind(millis(at)),
        };
        query.bind(id).execute(self.pool()).await?;
        Ok(())
    }

    async fn outbox_counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let (waiting, sent, failed): (i64, i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(sent_at IS NULL AND failed_at IS NULL), 0), \
             COALESCE(SUM(sent_at IS NOT NULL), 0), COALESCE(SUM(failed_at IS NOT NULL), 0) FROM outbox",
        )
        .fetch_one(self.pool())
        .await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok((n(waiting), n(sent), n(failed)))
    }

    async fn issue_code(
        &self,
        code: &CodeRow,
        max_recent: u32,
        recent_after: UnixMillis,
        message: &OutboxRow,
    ) -> Result<bool, StoreError> {
        // The count and the insert under one write lock: parallel requests cannot all pass.
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let recent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM one_time_codes WHERE user_id = ? AND purpose = ? AND created_at > ?",
        )
        .bind(&code.user_id)
        .bind(&code.purpose)
        .bind(millis(recent_after))
        .fetch_one(&mut *tx)
        .await?;
        if recent >= i64::from(max_recent) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO one_time_codes (code_hash, user_id, purpose, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&code.code_hash)
        .bind(&code.user_id)
        .bind(&code.purpose)
        .bind(millis(code.created_at))
        .bind(millis(code.expires_at))
        .execute(&mut *tx)
        .await?;
        insert_message(&mut tx, message).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn code_user(
        &self,
        code_hash: &str,
        purpose: &str,
        now: UnixMillis,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM one_time_codes WHERE code_hash = ? AND purpose = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(code_hash)
        .bind(purpose)
        .bind(millis(now))
        .fetch_optional(self.pool())
        .await?)
    }

    async fn reset_password(&self, reset: &PasswordReset<'_>) -> Result<bool, StoreError> {
        let now = millis(reset.now);
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let used = sqlx::query(
            "UPDATE one_time_codes SET used_at = ? WHERE code_hash = ? AND user_id = ? \
             AND purpose = 'password_reset' AND used_at IS NULL AND expires_at > ?",
        )
        .bind(now)
        .bind(reset.code_hash)
        .bind(reset.user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Ok(false);
        }
        // Any other reset code sent before this one is void too.
        sqlx::query(
            "UPDATE one_time_codes SET used_at = ? WHERE user_id = ? AND purpose = 'password_reset' AND used_at IS NULL",
        )
        .bind(now)
        .bind(reset.user_id)
        .execute(&mut *tx)
        .await?;
        let updated = sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(reset.password_hash)
            .bind(now)
            .bind(reset.user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, reset.audit).await?;
        for key in reset.state_keys {
            sqlx::query("DELETE FROM auth_state WHERE key = ?").bind(key).execute(&mut *tx).await?;
        }
        for prefix in reset.state_prefixes {
            // substr, not LIKE: a prefix is matched byte for byte, whatever characters it holds.
            sqlx::query("DELETE FROM auth_state WHERE substr(key, 1, length(?1)) = ?1")
                .bind(prefix)
                .execute(&mut *tx)
                .await?;
        }
        let (kind, detail) = reset.security_event;
        sqlx::query("INSERT INTO security_events (user_id, kind, detail, at) VALUES (?, ?, ?, ?)")
            .bind(reset.user_id)
            .bind(kind)
            .bind(detail)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        insert_message(&mut tx, reset.notice).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn verify_email(
        &self,
        code_hash: &str,
        user_id: &str,
        now: UnixMillis,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let used = sqlx::query(
            "UPDATE one_time_codes SET used_at = ? WHERE code_hash = ? AND user_id = ? \
             AND purpose = 'email_verification' AND used_at IS NULL AND expires_at > ?",
        )
        .bind(millis(now))
        .bind(code_hash)
        .bind(user_id)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE users SET email_verified = 1, version = version + 1, updated_at = ? WHERE id = ?",
        )
        .bind(millis(now))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn apply_retention(&self, class: DataClass, cutoff: UnixMillis) -> Result<u64, StoreError> {
        let cutoff = millis(cutoff);
        let delete = |sql: &'static str| async move {
            Ok::<u64, StoreError>(sqlx::query(sql).bind(cutoff).execute(self.pool()).await?.rows_affected())
        };
        match class {
            DataClass::LoginHistory => delete("DELETE FROM login_history WHERE at < ?").await,
            DataClass::SecurityEvents => delete("DELETE FROM security_events WHERE at < ?").await,
            DataClass::JobRuns => delete("DELETE FROM job_runs WHERE started_at < ?").await,
            DataClass::SentMessages => {
                delete("DELETE FROM outbox WHERE sent_at < ?1 OR failed_at < ?1").await
            }
            DataClass::OneTimeCodes => {
                delete("DELETE FROM one_time_codes WHERE COALESCE(used_at, expires_at) < ?").await
            }
            DataClass::AuditEntries => {
                let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
                sqlx::query(
                    "INSERT INTO audit_log (user_id, actor, action, old_value, new_value, at) \
                     SELECT user_id, 'system', 'summary', action, \
                     json_object('count', COUNT(*), 'first_at', MIN(at), 'last_at', MAX(at)), MAX(at) \
                     FROM audit_log WHERE at < ? AND action <> 'summary' GROUP BY user_id, action",
                )
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
                let summarised = sqlx::query("DELETE FROM audit_log WHERE at < ? AND action <> 'summary'")
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(summarised)
            }
            // These classes have their own store methods (the cleanup job calls them).
            DataClass::UnactivatedAccounts | DataClass::SessionState | DataClass::Events => Ok(0),
        }
    }
}
