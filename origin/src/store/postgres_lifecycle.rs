//! The PostgreSQL backend of [`LifecycleStore`], with `sqlite_lifecycle.rs`'s semantics across
//! processes: claims and code uses are conditional `UPDATE`s (one statement: of racing origins,
//! one gets the row), `claim_due` skips rows another origin holds (`FOR UPDATE SKIP LOCKED`),
//! and issuing a code locks the user's row so that the count and the insert serialise.

use async_trait::async_trait;
use domain::retention::DataClass;
use domain::time::UnixMillis;
use sqlx::Row;

use super::postgres::{insert_audit, millis, unix};
use super::{
    AuditEntry, ClaimedMessage, CodeRow, LifecycleStore, OutboxRow, PasswordReset, PostgresStore, StoreError,
};

const RETURNED: &str = "id, user_id, channel, message_sealed, created_at, attempts";

fn claimed_from_row(r: &sqlx::postgres::PgRow) -> Result<ClaimedMessage, sqlx::Error> {
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    m: &OutboxRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, user_id, channel, message_sealed, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
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
impl LifecycleStore for PostgresStore {
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
            "UPDATE outbox SET claimed_until = $1 WHERE id = $2 AND sent_at IS NULL AND failed_at IS NULL \
             AND (claimed_until IS NULL OR claimed_until <= $3) RETURNING {RETURNED}"
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
        let rows = sqlx::query(&format!(
            "UPDATE outbox SET claimed_until = $1 WHERE id IN ( \
               SELECT id FROM outbox WHERE next_attempt_at <= $2 AND sent_at IS NULL AND failed_at IS NULL \
               AND (claimed_until IS NULL OR claimed_until <= $2) \
               ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             AND sent_at IS NULL AND failed_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $2) \
             RETURNING {RETURNED}"
        ))
        .bind(millis(lease_until))
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(claimed_from_row).collect::<Result<Vec<_>, _>>()?)
    }

    async fn message_sent(&self, id: &str, at: UnixMillis) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET sent_at = $1, attempts = attempts + 1, claimed_until = NULL, last_error = NULL \
             WHERE id = $2 AND sent_at IS NULL",
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
                "UPDATE outbox SET attempts = attempts + 1, claimed_until = NULL, last_error = $1, \
                 next_attempt_at = $2 WHERE id = $3 AND sent_at IS NULL",
            )
            .bind(error)
            .bind(millis(next)),
            None => sqlx::query(
                "UPDATE outbox SET attempts = attempts + 1, claimed_until = NULL, last_error = $1, \
                 failed_at = $2 WHERE id = $3 AND sent_at IS NULL",
            )
            .bind(error)
            .bind(millis(at)),
        };
        query.bind(id).execute(self.pool()).await?;
        Ok(())
    }

    async fn outbox_counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let (waiting, sent, failed): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL), \
             COUNT(*) FILTER (WHERE sent_at IS NOT NULL), COUNT(*) FILTER (WHERE failed_at IS NOT NULL) FROM outbox",
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
        let mut tx = self.pool().begin().await?;
        // The user's row lock serialises the count and the insert across origins.
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(&code.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let recent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM one_time_codes WHERE user_id = $1 AND purpose = $2 AND created_at > $3",
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
            "INSERT INTO one_time_codes (code_hash, user_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
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
            "SELECT user_id FROM one_time_codes WHERE code_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(code_hash)
        .bind(purpose)
        .bind(millis(now))
        .fetch_optional(self.pool())
        .await?)
    }

    async fn reset_password(&self, reset: &PasswordReset<'_>) -> Result<bool, StoreError> {
        let now = millis(reset.now);
        let mut tx = self.pool().begin().await?;
        // One statement: of two origins using the same code, one updates the row.
        let used = sqlx::query(
            "UPDATE one_time_codes SET used_at = $1 WHERE code_hash = $2 AND user_id = $3 \
             AND purpose = 'password_reset' AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(reset.code_hash)
        .bind(reset.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE one_time_codes SET used_at = $1 WHERE user_id = $2 AND purpose = 'password_reset' AND used_at IS NULL",
        )
        .bind(now)
        .bind(reset.user_id)
        .execute(&mut *tx)
        .await?;
        let updated = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
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
            sqlx::query("DELETE FROM auth_state WHERE key = $1").bind(key).execute(&mut *tx).await?;
        }
        for prefix in reset.state_prefixes {
            sqlx::query("DELETE FROM auth_state WHERE starts_with(key, $1)")
                .bind(prefix)
                .execute(&mut *tx)
                .await?;
        }
        let (kind, detail) = reset.security_event;
        sqlx::query("INSERT INTO security_events (user_id, kind, detail, at) VALUES ($1, $2, $3, $4)")
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
        let mut tx = self.pool().begin().await?;
        let used = sqlx::query(
            "UPDATE one_time_codes SET used_at = $1 WHERE code_hash = $2 AND user_id = $3 \
             AND purpose = 'email_verification' AND used_at IS NULL AND expires_at > $1",
        )
        .bind(millis(now))
        .bind(code_hash)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE users SET email_verified = TRUE, version = version + 1, updated_at = $1 WHERE id = $2",
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
            DataClass::LoginHistory => delete("DELETE FROM login_history WHERE at < $1").await,
            DataClass::SecurityEvents => delete("DELETE FROM security_events WHERE at < $1").await,
            DataClass::JobRuns => delete("DELETE FROM job_runs WHERE started_at < $1").await,
            DataClass::SentMessages => {
                delete("DELETE FROM outbox WHERE sent_at < $1 OR failed_at < $1").await
            }
            DataClass::OneTimeCodes => {
                delete("DELETE FROM one_time_codes WHERE COALESCE(used_at, expires_at) < $1").await
            }
            DataClass::AuditEntries => {
                let mut tx = self.pool().begin().await?;
                // One statement: the rows deleted are exactly the rows summarised, even while
                // other origins append entries.
                let summarised = sqlx::query(
                    "WITH gone AS ( \
                       DELETE FROM audit_log WHERE at < $1 AND action <> 'summary' \
                       RETURNING user_id, action, at) \
                     INSERT INTO audit_log (user_id, actor, action, old_value, new_value, at) \
                     SELECT user_id, 'system', 'summary', action, \
                       json_build_object('count', COUNT(*), 'first_at', MIN(at), 'last_at', MAX(at))::text, MAX(at) \
                     FROM gone GROUP BY user_id, action RETURNING (new_value::json->>'count')::bigint",
                )
                .bind(cutoff)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0).unwrap_or(0))
                .sum::<i64>();
                tx.commit().await?;
                Ok(u64::try_from(summarised).unwrap_or(0))
            }
            DataClass::UnactivatedAccounts | DataClass::SessionState | DataClass::Events => Ok(0),
        }
    }
}
