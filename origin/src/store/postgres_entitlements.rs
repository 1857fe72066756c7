//! The PostgreSQL backend of [`EntitlementStore`], with `sqlite_entitlements.rs`'s semantics
//! across origin processes: a usage report locks the user's counter row (`SELECT … FOR
//! UPDATE`, the row inserted first if missing), so reports for one user and resource
//! serialise; the idempotency key is looked up under that lock, and the answer is recorded
//! with `ON CONFLICT DO NOTHING`, so of two reports racing with one key (for different
//! counters) one is recorded and the other rolls back and gets its answer.

use async_trait::async_trait;
use domain::entitlements::{decide, UsageDecision};
use domain::time::UnixMillis;
use sqlx::Row;

use super::postgres::{millis, unix};
use super::{
    EntitlementStore, PostgresStore, ServiceClientRow, StoreError, UsageApplied, UsageChange, UsageReportRow,
};

fn client_from_row(r: &sqlx::postgres::PgRow) -> Result<ServiceClientRow, sqlx::Error> {
    Ok(ServiceClientRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        scopes: r.try_get("scopes")?,
        created_at: unix(r.try_get("created_at")?),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(unix),
    })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn report_from_row(r: &sqlx::postgres::PgRow) -> Result<UsageReportRow, sqlx::Error> {
    Ok(UsageReportRow {
        user_id: r.try_get("user_id")?,
        resource: r.try_get("resource")?,
        delta: r.try_get("delta")?,
        admitted: r.try_get("admitted")?,
        used: count(r.try_get("used")?),
        limit: r.try_get::<Option<i64>, _>("usage_limit")?.map(count),
        created_at: unix(r.try_get("created_at")?),
    })
}

const REPORT: &str =
    "SELECT user_id, resource, delta, admitted, used, usage_limit, created_at FROM usage_reports \
                      WHERE client_id = $1 AND idempotency_key = $2";

#[async_trait]
impl EntitlementStore for PostgresStore {
    async fn insert_service_client(&self, row: &ServiceClientRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO service_clients (id, name, secret_hash, scopes, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.secret_hash)
        .bind(&row.scopes)
        .bind(millis(row.created_at))
        .bind(row.revoked_at.map(millis))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn service_client(&self, id: &str) -> Result<Option<ServiceClientRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM service_clients WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(client_from_row).transpose()?)
    }

    async fn service_clients(&self) -> Result<Vec<ServiceClientRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM service_clients ORDER BY created_at, id")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(client_from_row).collect::<Result<_, _>>()?)
    }

    async fn revoke_service_client(&self, id: &str, at: UnixMillis) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE service_clients SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(millis(at))
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn usage(&self, user_id: &str) -> Result<Vec<(String, u64, UnixMillis)>, StoreError> {
        let rows = sqlx::query(
            "SELECT resource, used, updated_at FROM usage_counters WHERE user_id = $1 ORDER BY resource",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("resource")?,
                    count(r.try_get::<i64, _>("used")?),
                    unix(r.try_get::<i64, _>("updated_at")?),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn apply_usage(&self, change: &UsageChange<'_>) -> Result<UsageApplied, StoreError> {
        let mut tx = self.pool().begin().await?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM users WHERE id = $1")
            .bind(change.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(UsageApplied::NoUser);
        }
        // The counter row exists before it is locked: a missing one cannot be locked, and two
        // first reports would otherwise both read nothing.
        sqlx::query(
            "INSERT INTO usage_counters (user_id, resource, used, updated_at) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (user_id, resource) DO NOTHING",
        )
        .bind(change.user_id)
        .bind(change.resource)
        .bind(millis(change.now))
        .execute(&mut *tx)
        .await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT used FROM usage_counters WHERE user_id = $1 AND resource = $2 FOR UPDATE",
        )
        .bind(change.user_id)
        .bind(change.resource)
        .fetch_one(&mut *tx)
        .await?;
        let answered = sqlx::query(REPORT)
            .bind(change.client_id)
            .bind(change.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = answered {
            let report = report_from_row(&row)?;
            tx.rollback().await?;
            return Ok(UsageApplied::Replayed(report));
        }
        let (admitted, after) = match decide(count(used), change.delta, change.limit) {
            UsageDecision::Admitted { used } => (true, used),
            UsageDecision::Refused { used, .. } => (false, used),
        };
        if admitted {
            sqlx::query(
                "UPDATE usage_counters SET used = $1, updated_at = $2 WHERE user_id = $3 AND resource = $4",
            )
            .bind(stored(after))
            .bind(millis(change.now))
            .bind(change.user_id)
            .bind(change.resource)
            .execute(&mut *tx)
            .await?;
        }
        let report = UsageReportRow {
            user_id: change.user_id.to_owned(),
            resource: change.resource.to_owned(),
            delta: change.delta,
            admitted,
            used: after,
            limit: change.limit,
            created_at: change.now,
        };
        let recorded = sqlx::query(
            "INSERT INTO usage_reports (client_id, idempotency_key, user_id, resource, delta, admitted, used, \
             usage_limit, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        )
        .bind(change.client_id)
        .bind(change.idempotency_key)
        .bind(&report.user_id)
        .bind(&report.resource)
        .bind(report.delta)
        .bind(report.admitted)
        .bind(stored(report.used))
        .bind(report.limit.map(stored))
        .bind(millis(report.created_at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            // The same key was answered meanwhile for another counter: nothing of this one
            // is kept, and the caller gets that answer.
            tx.rollback().await?;
            let row = sqlx::query(REPORT)
                .bind(change.client_id)
                .bind(change.idempotency_key)
                .fetch_one(self.pool())
                .await?;
            return Ok(UsageApplied::Replayed(report_from_row(&row)?));
        }
        sqlx::query("DELETE FROM usage_reports WHERE created_at < $1")
            .bind(millis(change.forget_before))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UsageApplied::New(report))
    }
}
