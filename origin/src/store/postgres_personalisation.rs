//! The PostgreSQL backend of [`PersonalizationStore`], with `sqlite_personalisation.rs`'s
//! semantics across processes: saving a profile locks the user's row before it compares the
//! cursor, a client's update holds the federated state `FOR SHARE` while it checks the round,
//! and closing a round holds it `FOR UPDATE`, so an update lands in the round it named or is
//! refused, and no update outlives its round.

use async_trait::async_trait;
use domain::listening::AudioFeatures;
use domain::personalization::CatalogueTrack;
use domain::time::UnixMillis;
use sqlx::Row;

use super::postgres::{millis, unix};
use super::{
    EventRow, FederatedRow, MoodWrite, PersonalizationStore, PostgresStore, RoundClose, StoreError, TasteRow,
    UpdateAdded,
};

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn event_from(r: &sqlx::postgres::PgRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        id: r.try_get("id")?,
        kind: super::event_kind(&r.try_get::<String, _>("kind")?)?,
        user_id: r.try_get("user_id")?,
        class: r.try_get("class")?,
        at: u64::try_from(r.try_get::<i64, _>("at")?).unwrap_or(0),
        data: serde_json::from_str(&r.try_get::<String, _>("data")?).unwrap_or(serde_json::Value::Null),
    })
}

fn federated_from(r: &sqlx::postgres::PgRow) -> Result<FederatedRow, sqlx::Error> {
    Ok(FederatedRow {
        round: u64::try_from(r.try_get::<i64, _>("round")?).unwrap_or(0),
        weights: r.try_get("weights")?,
        accountant: r.try_get("accountant")?,
        opened_at: unix(r.try_get("opened_at")?),
    })
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl PersonalizationStore for PostgresStore {
    async fn put_catalogue(&self, tracks: &[CatalogueTrack]) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut written = 0;
        for t in tracks {
            written += sqlx::query(
                "INSERT INTO catalogue_tracks (id, title, artist, genre, features, popularity) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET title = excluded.title, \
                 artist = excluded.artist, genre = excluded.genre, features = excluded.features, \
                 popularity = excluded.popularity",
            )
            .bind(&t.id)
            .bind(&t.title)
            .bind(&t.artist)
            .bind(&t.genre)
            .bind(serde_json::to_string(&t.features).map_err(corrupt)?)
            .bind(i64::from(t.popularity))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn catalogue(&self) -> Result<Vec<CatalogueTrack>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, title, artist, genre, features, popularity FROM catalogue_tracks ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| -> Result<CatalogueTrack, StoreError> {
                let features: AudioFeatures =
                    serde_json::from_str(&r.try_get::<String, _>("features")?).map_err(corrupt)?;
                Ok(CatalogueTrack {
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    artist: r.try_get("artist")?,
                    genre: r.try_get("genre")?,
                    features,
                    popularity: u8::try_from(r.try_get::<i64, _>("popularity")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn taste(&self, user_id: &str) -> Result<Option<TasteRow>, StoreError> {
        let row = sqlx::query(
            "SELECT profile, cursor_at, cursor_id, updated_at FROM taste_profiles WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(|r| -> Result<TasteRow, sqlx::Error> {
                Ok(TasteRow {
                    profile: r.try_get("profile")?,
                    cursor_at: u64::try_from(r.try_get::<i64, _>("cursor_at")?).unwrap_or(0),
                    cursor_id: r.try_get("cursor_id")?,
                    updated_at: unix(r.try_get("updated_at")?),
                })
            })
            .transpose()?)
    }

    async fn listening_after(
        &self,
        user_id: &str,
        cursor: (u64, &str),
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, kind, class, at, data FROM events \
             WHERE user_id = $1 AND kind = $2 AND (at > $3 OR (at = $4 AND id > $5)) ORDER BY at, id LIMIT $6",
        )
        .bind(user_id)
        .bind(domain::listening::KIND)
        .bind(signed(cursor.0))
        .bind(signed(cursor.0))
        .bind(cursor.1)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(event_from).collect::<Result<_, _>>()?)
    }

    async fn recent_listening(&self, user_id: &str, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, kind, class, at, data FROM events WHERE user_id = $1 AND kind = $2 \
             ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(domain::listening::KIND)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(event_from).collect::<Result<_, _>>()?)
    }

    async fn listeners_since(&self, since: UnixMillis) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM events WHERE kind = $1 AND received_at >= $2 AND user_id IS NOT NULL \
             ORDER BY user_id",
        )
        .bind(domain::listening::KIND)
        .bind(millis(since))
        .fetch_all(self.pool())
        .await?)
    }

    async fn save_taste(
        &self,
        user_id: &str,
        row: &TasteRow,
        expected: Option<(u64, &str)>,
        mood: &MoodWrite,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let current: Option<(i64, String)> =
            sqlx::query_as("SELECT cursor_at, cursor_id FROM taste_profiles WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let same = match (&current, expected) {
            (None, None) => true,
            (Some((at, id)), Some((e_at, e_id))) => *at == signed(e_at) && id == e_id,
            _ => false,
        };
        if !same || exists.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO taste_profiles (user_id, profile, cursor_at, cursor_id, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET profile = excluded.profile, cursor_at = excluded.cursor_at, \
             cursor_id = excluded.cursor_id, updated_at = excluded.updated_at",
        )
        .bind(user_id)
        .bind(&row.profile)
        .bind(signed(row.cursor_at))
        .bind(&row.cursor_id)
        .bind(millis(row.updated_at))
        .execute(&mut *tx)
        .await?;
        match mood {
            MoodWrite::Set(reading) => {
                sqlx::query(
                    "INSERT INTO moods (user_id, reading, detected_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) \
                     DO UPDATE SET reading = excluded.reading, detected_at = excluded.detected_at",
                )
                .bind(user_id)
                .bind(reading)
                .bind(millis(row.updated_at))
                .execute(&mut *tx)
                .await?;
            }
            MoodWrite::Delete => {
                sqlx::query("DELETE FROM moods WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
            }
            MoodWrite::Keep => {}
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn mood(&self, user_id: &str) -> Result<Option<(String, UnixMillis)>, StoreError> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT reading, detected_at FROM moods WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(r, at)| (r, unix(at))))
    }

    async fn delete_mood(&self, user_id: &str) -> Result<bool, StoreError> {
        let n =
            sqlx::query("DELETE FROM moods WHERE user_id = $1").bind(user_id).execute(self.pool()).await?;
        Ok(n.rows_affected() > 0)
    }

    async fn put_custom_model(&self, user_id: &str, model: &str, at: UnixMillis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO custom_models (user_id, model, trained_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) \
             DO UPDATE SET model = excluded.model, trained_at = excluded.trained_at",
        )
        .bind(user_id)
        .bind(model)
        .bind(millis(at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn custom_model(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT model FROM custom_models WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn federated_eligible(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM consents WHERE purpose = 'federated_learning' AND granted = TRUE",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn federated(&self, initial: &FederatedRow) -> Result<FederatedRow, StoreError> {
        sqlx::query(
            "INSERT INTO federated_state (id, round, weights, accountant, opened_at) VALUES (1, $1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(signed(initial.round))
        .bind(&initial.weights)
        .bind(&initial.accountant)
        .bind(millis(initial.opened_at))
        .execute(self.pool())
        .await?;
        let row =
            sqlx::query("SELECT round, weights, accountant, opened_at FROM federated_state WHERE id = 1")
                .fetch_one(self.pool())
                .await?;
        Ok(federated_from(&row)?)
    }

    async fn add_federated_update(
        &self,
        round: u64,
        user_id: &str,
        delta: &str,
        at: UnixMillis,
    ) -> Result<UpdateAdded, StoreError> {
        let mut tx = self.pool().begin().await?;
        let open: Option<i64> =
            sqlx::query_scalar("SELECT round FROM federated_state WHERE id = 1 FOR SHARE")
                .fetch_optional(&mut *tx)
                .await?;
        let open = open.map_or(1, |r| u64::try_from(r).unwrap_or(0));
        if open != round {
            return Ok(UpdateAdded::WrongRound(open));
        }
        let n = sqlx::query(
            "INSERT INTO federated_updates (round, user_id, delta, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (round, user_id) DO NOTHING",
        )
        .bind(signed(round))
        .bind(user_id)
        .bind(delta)
        .bind(millis(at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if n == 1 { UpdateAdded::Added } else { UpdateAdded::Duplicate })
    }

    async fn close_federated_round(
        &self,
        eligible: u64,
        now: UnixMillis,
        close: &(dyn for<'a> Fn(&'a FederatedRow, &'a [String]) -> RoundClose + Send + Sync),
    ) -> Result<(u64, usize, FederatedRow), StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "SELECT round, weights, accountant, opened_at FROM federated_state WHERE id = 1 FOR UPDATE",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::Corrupt("no federated state to close".into()));
        };
        let state = federated_from(&row)?;
        let updates: Vec<String> =
            sqlx::query_scalar("SELECT delta FROM federated_updates WHERE round = $1 ORDER BY user_id")
                .bind(signed(state.round))
                .fetch_all(&mut *tx)
                .await?;
        let closed = close(&state, &updates);
        let next = FederatedRow {
            round: state.round + 1,
            weights: closed.weights,
            accountant: closed.accountant,
            opened_at: now,
        };
        sqlx::query("UPDATE federated_state SET round = $1, weights = $2, accountant = $3, opened_at = $4 WHERE id = 1")
            .bind(signed(next.round))
            .bind(&next.weights)
            .bind(&next.accountant)
            .bind(millis(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO federated_rounds (round, clients, eligible, outcome, closed_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(signed(state.round))
        .bind(signed(updates.len() as u64))
        .bind(signed(eligible))
        .bind(&closed.outcome)
        .bind(millis(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM federated_updates WHERE round <= $1")
            .bind(signed(state.round))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((state.round, updates.len(), next))
    }
}
