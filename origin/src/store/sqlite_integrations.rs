//! The sqlite backend of [`IntegrationStore`] (the same statements as the other backend, in this
//! one's placeholders, so both answer alike). A refresh stores its tokens by compare-and-set on
//! `token_version` (one conditional `UPDATE`); marking `needs_reconnect` and queueing its
//! notice is one transaction whose `UPDATE` only matches a row not yet marked, so racing jobs
//! send one notice.

use async_trait::async_trait;
use domain::time::UnixMillis;
use sqlx::Row;

use super::integrations::{IntegrationRow, IntegrationStore, LocalKeyRow, SyncOutcome, TokenUpdate};
use super::sqlite::{millis, unix};
use super::{OutboxRow, SqliteStore, StoreError};

const COLUMNS: &str = "user_id, service, status, scopes, tokens_sealed, account_sealed, expires_at, \
    token_version, connected_at, updated_at, last_sync_at, last_error, sync_cursor, retry_at";

fn row_from(r: &sqlx::sqlite::SqliteRow) -> Result<IntegrationRow, sqlx::Error> {
    Ok(IntegrationRow {
        user_id: r.try_get("user_id")?,
        service: r.try_get("service")?,
        status: r.try_get("status")?,
        scopes: r.try_get("scopes")?,
        tokens_sealed: r.try_get("tokens_sealed")?,
        account_sealed: r.try_get("account_sealed")?,
        expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(unix),
        token_version: r.try_get("token_version")?,
        connected_at: unix(r.try_get("connected_at")?),
        updated_at: unix(r.try_get("updated_at")?),
        last_sync_at: r.try_get::<Option<i64>, _>("last_sync_at")?.map(unix),
        last_error: r.try_get("last_error")?,
        sync_cursor: r.try_get("sync_cursor")?,
        retry_at: r.try_get::<Option<i64>, _>("retry_at")?.map(unix),
    })
}

fn key_from(r: &sqlx::sqlite::SqliteRow) -> Result<LocalKeyRow, sqlx::Error> {
    Ok(LocalKeyRow {
        key_hash: r.try_get("key_hash")?,
        user_id: r.try_get("user_id")?,
        service: r.try_get("service")?,
        scopes: r.try_get("scopes")?,
        created_at: unix(r.try_get("created_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(unix),
    })
}

async fn upsert(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    row: &IntegrationRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO integrations (user_id, service, status, scopes, tokens_sealed, account_sealed, expires_at, \
         token_version, connected_at, updated_at, last_sync_at, last_error, sync_cursor, retry_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, ?11, NULL) \
         ON CONFLICT (user_id, service) DO UPDATE SET status = excluded.status, scopes = excluded.scopes, \
         tokens_sealed = excluded.tokens_sealed, account_sealed = excluded.account_sealed, \
         expires_at = excluded.expires_at, token_version = integrations.token_version + 1, \
         connected_at = excluded.connected_at, updated_at = excluded.updated_at, last_error = NULL, \
         retry_at = NULL",
    )
    .bind(&row.user_id)
    .bind(&row.service)
    .bind(&row.status)
    .bind(&row.scopes)
    .bind(&row.tokens_sealed)
    .bind(&row.account_sealed)
    .bind(row.expires_at.map(millis))
    .bind(row.token_version)
    .bind(millis(row.connected_at))
    .bind(millis(row.updated_at))
    .bind(&row.sync_cursor)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl IntegrationStore for SqliteStore {
    async fn put_integration(&self, row: &IntegrationRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        upsert(&mut tx, row).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn integrations(&self, user_id: &str) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows =
            sqlx::query(&format!("SELECT {COLUMNS} FROM integrations WHERE user_id = ?1 ORDER BY service"))
                .bind(user_id)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    async fn integration(&self, user_id: &str, service: &str) -> Result<Option<IntegrationRow>, StoreError> {
        let row =
            sqlx::query(&format!("SELECT {COLUMNS} FROM integrations WHERE user_id = ?1 AND service = ?2"))
                .bind(user_id)
                .bind(service)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.as_ref().map(row_from).transpose()?)
    }

    async fn delete_integration(
        &self,
        user_id: &str,
        service: &str,
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query("DELETE FROM integrations WHERE user_id = ?1 AND service = ?2")
            .bind(user_id)
            .bind(service)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "UPDATE integration_keys SET revoked_at = ?3 WHERE user_id = ?1 AND service = ?2 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(service)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn replace_tokens(&self, update: &TokenUpdate<'_>) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE integrations SET tokens_sealed = ?1, expires_at = ?2, token_version = token_version + 1, \
             updated_at = ?3, last_error = NULL WHERE user_id = ?4 AND service = ?5 AND token_version = ?6",
        )
        .bind(update.tokens_sealed)
        .bind(update.expires_at.map(millis))
        .bind(millis(update.at))
        .bind(update.user_id)
        .bind(update.service)
        .bind(update.expected_version)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn mark_needs_reconnect(
        &self,
        user_id: &str,
        service: &str,
        error: &str,
        notice: &OutboxRow,
        at: UnixMillis,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query(
            "UPDATE integrations SET status = 'needs_reconnect', last_error = ?1, updated_at = ?2 \
             WHERE user_id = ?3 AND service = ?4 AND status <> 'needs_reconnect'",
        )
        .bind(error)
        .bind(millis(at))
        .bind(user_id)
        .bind(service)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO outbox (id, user_id, channel, message_sealed, created_at, next_attempt_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(&notice.id)
        .bind(&notice.user_id)
        .bind(&notice.channel)
        .bind(&notice.message_sealed)
        .bind(millis(notice.created_at))
        .bind(millis(notice.created_at.saturating_add_ms(domain::delivery::SWEEP_GRACE_MS)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn refresh_due(&self, before: UnixMillis, limit: u32) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM integrations WHERE status = 'active' AND expires_at IS NOT NULL \
             AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
        ))
        .bind(millis(before))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    async fn sync_due(
        &self,
        service: &str,
        now: UnixMillis,
        limit: u32,
    ) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM integrations WHERE service = ?1 AND status = 'active' \
             AND (retry_at IS NULL OR retry_at <= ?2) ORDER BY user_id LIMIT ?3"
        ))
        .bind(service)
        .bind(millis(now))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(row_from).collect::<Result<_, _>>()?)
    }

    async fn record_sync(&self, outcome: &SyncOutcome<'_>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE integrations SET sync_cursor = ?1, last_sync_at = ?2, retry_at = ?3, last_error = ?4 \
             WHERE user_id = ?5 AND service = ?6",
        )
        .bind(outcome.cursor)
        .bind(millis(outcome.at))
        .bind(outcome.retry_at.map(millis))
        .bind(outcome.error)
        .bind(outcome.user_id)
        .bind(outcome.service)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn disable_integrations(
        &self,
        user_id: &str,
        services: &[String],
        at: UnixMillis,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut changed = 0;
        for service in services {
            changed += sqlx::query(
                "UPDATE integrations SET status = 'disabled', updated_at = ?1 \
                 WHERE user_id = ?2 AND service = ?3 AND status <> 'disabled'",
            )
            .bind(millis(at))
            .bind(user_id)
            .bind(service)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn insert_local_key(&self, key: &LocalKeyRow, row: &IntegrationRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        // A new key replaces the service's earlier ones: one live key per plug-in.
        sqlx::query(
            "UPDATE integration_keys SET revoked_at = ?3 WHERE user_id = ?1 AND service = ?2 AND revoked_at IS NULL",
        )
        .bind(&key.user_id)
        .bind(&key.service)
        .bind(millis(key.created_at))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO integration_keys (key_hash, user_id, service, scopes, created_at, revoked_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
        )
        .bind(&key.key_hash)
        .bind(&key.user_id)
        .bind(&key.service)
        .bind(&key.scopes)
        .bind(millis(key.created_at))
        .execute(&mut *tx)
        .await?;
        upsert(&mut tx, row).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn local_key(&self, key_hash: &str) -> Result<Option<LocalKeyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT key_hash, user_id, service, scopes, created_at, revoked_at FROM integration_keys \
             WHERE key_hash = ?1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(key_from).transpose()?)
    }
}
