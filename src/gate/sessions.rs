//! Sessions in the user's gate: created at login, checked on every request in the same gate
//! call as the rate limit, rotated on refresh (serialised here, since a Durable Object handles
//! one request at a time and its SQLite calls are synchronous), and revoked at once.
//!
//! A refresh token is `rt.<user id>.<session id>.<32 random bytes, base64url>`; the gate keeps
//! only its SHA-256. The decisions are `domain::session`'s; this module loads and stores.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::session::{decide_refresh, RefreshDecision, SessionRecord, SessionStatus};
use domain::tier::Tier;
use domain::time::UnixMillis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use worker::{Env, Result, SqlStorage};

use crate::auth;

pub const SCHEMA: [&str; 3] = [
    // `ended_at` is NULL while a session may be active and the time it ended once it is known
    // to have ended: indexed, so that open sessions are found and old ones swept without
    // reading the whole history.
    "CREATE TABLE IF NOT EXISTS sessions (
        sid TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        role TEXT NOT NULL,
        device_id TEXT,
        user_agent TEXT,
        ip TEXT,
        ended_at INTEGER
    )",
    "CREATE TABLE IF NOT EXISTS used_refresh (hash TEXT PRIMARY KEY, sid TEXT NOT NULL, used_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS used_refresh_by_session ON used_refresh (sid)",
];

/// Applied after [`SCHEMA`] to objects created by an earlier release (whose `sessions` table
/// has no `ended_at`): the `ALTER` fails harmlessly where the column exists.
pub const UPGRADE: [&str; 1] = ["ALTER TABLE sessions ADD COLUMN ended_at INTEGER"];

/// Applied last to every object: the indexes on columns [`UPGRADE`] may have just added.
pub const INDEXES: [&str; 1] = ["CREATE INDEX IF NOT EXISTS sessions_by_end ON sessions (ended_at)"];

/// Why a session opened without a second factor is refused in an organization requiring one.
pub const ORG_NEEDS_SECOND_FACTOR: &str =
    "your organization requires a second factor: sign in again with one";

/// What the edge knows of a new session at login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewSession {
    pub user_id: String,
    pub role: String,
    pub tier: Tier,
    pub idle_timeout_minutes: u32,
    /// The session's absolute lifetime (shorter for admins and some tiers).
    #[serde(default)]
    pub absolute_ms: Option<u64>,
    pub device_id: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// What the origin acknowledged with this login (tier, version, session timeout), recorded
    /// by the gate before the session opens: one call to the gate per login, not two.
    #[serde(default)]
    pub record: Option<super::GateRecord>,
    /// Whether the sign-in used a second factor (an organization may require one).
    #[serde(default)]
    pub second_factor: bool,
    /// The user's organization as the origin answered the login (`None`: none), and when.
    #[serde(default)]
    pub org: Option<domain::org::OrgGrant>,
    #[serde(default)]
    pub org_at: Option<u64>,
}

/// The tokens a login or a refresh answers with.
pub use domain::wire::auth::TokenPair;

/// A session as `GET /api/v1/users/{id}/sessions` lists it.
pub use domain::wire::users::Session as SessionView;

/// A new session: its tokens, and the sessions ended to keep under the tier's cap.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedSession {
    #[serde(flatten)]
    pub pair: TokenPair,
    #[serde(default)]
    pub evicted: Vec<String>,
    /// Whether the user's usage events may be collected (their `analytics` consent, as the
    /// gate knows it), so the login's own event follows it too.
    #[serde(default = "collected")]
    pub collects_events: bool,
}

fn collected() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct Row {
    sid: String,
    record: String,
    role: String,
    device_id: Option<String>,
    user_agent: Option<String>,
    ip: Option<String>,
}

/// Why a refresh failed, for the 401's detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefreshFailure {
    Unknown,
    Reused,
    Inactive(String),
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_b64(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).map_err(|e| worker::Error::RustError(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(&bytes))
}

/// The user id a refresh token names (to find its gate), if it is shaped like one.
pub fn user_of(refresh_token: &str) -> Option<(&str, &str)> {
    let mut parts = refresh_token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("rt"), Some(user), Some(sid), Some(secret), None) if !secret.is_empty() => Some((user, sid)),
        _ => None,
    }
}

/// The session records a gate instance has read or written, by session id (a Durable Object
/// instance is the only writer of its storage, so what it wrote last is what is stored).
pub type Cache = std::cell::RefCell<std::collections::HashMap<String, Cached>>;

/// A session record as this object last wrote or read it (the newest there is: the object is
/// its storage's only writer), with the activity time its stored copy has.
#[derive(Clone)]
pub struct Cached {
    record: SessionRecord,
    saved_last_seen: UnixMillis,
}

pub struct Sessions<'a> {
    pub sql: &'a SqlStorage,
    pub env: &'a Env,
    pub now: UnixMillis,
    pub cache: &'a Cache,
}

impl Sessions<'_> {
    /// The record of `sid` alone (the per-request check): from memory, or read once.
    fn record(&self, sid: &str) -> Result<Option<SessionRecord>> {
        if let Some(cached) = self.cache.borrow().get(sid) {
            return Ok(Some(cached.record.clone()));
        }
        Ok(self.load(sid)?.map(|(record, _)| record))
    }

    /// The newest record of a stored row: the one in memory when there is one (its activity
    /// time may be newer than the stored one), else the row's, remembered.
    fn newest(&self, stored: SessionRecord) -> SessionRecord {
        let mut cache = self.cache.borrow_mut();
        let cached = cache
            .entry(stored.sid.clone())
            .or_insert_with(|| Cached { saved_last_seen: stored.last_seen, record: stored });
        cached.record.clone()
    }

    fn load(&self, sid: &str) -> Result<Option<(SessionRecord, Row)>> {
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT sid, record, role, device_id, user_agent, ip FROM sessions WHERE sid = ?",
                vec![sid.into()],
            )?
            .to_array()?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| serde_json::from_str(&row.record).ok().map(|rec| (self.newest(rec), row))))
    }

    fn save(&self, record: &SessionRecord) -> Result<()> {
        let ended_at: Option<f64> = record.ended_at(self.now).map(|t| t.0 as f64);
        self.sql.exec(
            "UPDATE sessions SET record = ?, ended_at = ? WHERE sid = ?",
            vec![serde_json::to_string(record)?.into(), ended_at.into(), record.sid.as_str().into()],
        )?;
        let cached = Cached { record: record.clone(), saved_last_seen: record.last_seen };
        self.cache.borrow_mut().insert(record.sid.clone(), cached);
        Ok(())
    }

    /// The sessions not yet known to have ended, with their records; those found ended now
    /// (timed out since) are marked, so the next look skips them. Bounded by the tier's cap
    /// plus the sessions that ended since the last look.
    fn open(&self) -> Result<Vec<(SessionRecord, Row)>> {
        let rows: Vec<Row> = self
            .sql
            .exec(
                "SELECT sid, record, role, device_id, user_agent, ip FROM sessions WHERE ended_at IS NULL",
                None,
            )?
            .to_array()?;
        let mut open = Vec::with_capacity(rows.len());
        for row in rows {
            let Ok(record) = serde_json::from_str::<SessionRecord>(&row.record) else { continue };
            let record = self.newest(record);
            if record.status(self.now) == SessionStatus::Active {
                open.push((record, row));
            } else {
                self.save(&record)?;
            }
        }
        Ok(open)
    }

    /// A new token pair. Signing is WebCrypto's, so this awaits; workerd's WebCrypto answers
    /// with an already settled promise, so no other request of this Durable Object runs between
    /// the caller's reads and writes around it.
    async fn pair(
        &self,
        user_id: &str,
        sid: &str,
        role: &str,
        tier: Tier,
        org: Option<&str>,
    ) -> Result<(TokenPair, String)> {
        let refresh_token = format!("rt.{user_id}.{sid}.{}", random_b64(32)?);
        let issued = auth::issue_access_token(self.env, user_id, tier.as_str(), role, Some(sid), org)
            .await
            .map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
        let refresh_hash = hash(&refresh_token);
        Ok((
            TokenPair {
                access_token: issued.token,
                refresh_token,
                token_type: "Bearer".into(),
                expires_in: issued.expires_in,
                session_id: sid.to_owned(),
            },
            refresh_hash,
        ))
    }

    /// Opens a session, first ending the least recently used ones beyond `max_open`.
    pub async fn create(
        &self,
        new: &NewSession,
        max_open: usize,
        org: Option<&str>,
    ) -> Result<CreatedSession> {
        // A login is when the table grows, so it is when ended sessions are swept: the table
        // holds the open sessions (at most `max_open`) and those ended within the last day.
        self.forget_ended()?;
        let open: Vec<(String, UnixMillis)> =
            self.open()?.into_iter().map(|(record, _)| (record.sid, record.last_seen)).collect();
        let evicted = domain::session::to_evict(&open, max_open);
        for sid in &evicted {
            self.revoke(sid, "session limit reached: a newer login replaced it")?;
        }
        let sid = format!("ses_{}", random_b64(18)?);
        let (pair, refresh_hash) = self.pair(&new.user_id, &sid, &new.role, new.tier, org).await?;
        let idle = u64::from(new.idle_timeout_minutes).saturating_mul(60_000);
        let mut record = SessionRecord::new(&sid, &refresh_hash, idle, self.now);
        record.second_factor = new.second_factor;
        if let Some(absolute_ms) = new.absolute_ms {
            record = record.with_absolute_lifetime(absolute_ms);
        }
        self.sql.exec(
            "INSERT INTO sessions (sid, record, role, device_id, user_agent, ip) VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                sid.as_str().into(),
                serde_json::to_string(&record)?.into(),
                new.role.as_str().into(),
                new.device_id.clone().into(),
                new.user_agent.clone().into(),
                new.ip.clone().into(),
            ],
        )?;
        Ok(CreatedSession { pair, evicted, collects_events: true })
    }

    /// The status of `sid` for a request, when it last stepped up and whether it was opened
    /// with a second factor, marking the activity when active.
    pub fn check(&self, sid: &str) -> Result<(SessionStatus, Option<UnixMillis>, bool)> {
        let Some(mut record) = self.record(sid)? else {
            return Ok((SessionStatus::Revoked("unknown session".into()), None, false));
        };
        let status = record.status(self.now);
        if status == SessionStatus::Active {
            record.touch(self.now);
            let saved = self.cache.borrow().get(sid).map(|c| c.saved_last_seen);
            match saved {
                Some(saved) if !domain::session::activity_needs_saving(saved, self.now) => {
                    // Kept in memory; written through with the next change, or within a minute.
                    let cached = Cached { record: record.clone(), saved_last_seen: saved };
                    self.cache.borrow_mut().insert(sid.to_owned(), cached);
                }
                _ => self.save(&record)?,
            }
        }
        Ok((status, record.stepped_up_at, record.second_factor))
    }

    /// Records that `sid` proved its user again now; false when it is not active.
    pub fn step_up(&self, sid: &str) -> Result<bool> {
        let Some((mut record, _)) = self.load(sid)? else { return Ok(false) };
        if record.status(self.now) != SessionStatus::Active {
            return Ok(false);
        }
        record.stepped_up_at = Some(self.now);
        record.touch(self.now);
        self.save(&record)?;
        Ok(true)
    }

    pub async fn refresh(
        &self,
        user_id: &str,
        token: &str,
        tier: Tier,
        grace_ms: u64,
        org: Option<&domain::org::OrgGrant>,
    ) -> Result<std::result::Result<TokenPair, RefreshFailure>> {
        let Some((_, sid)) = user_of(token) else { return Ok(Err(RefreshFailure::Unknown)) };
        let Some((record, row)) = self.load(sid)? else { return Ok(Err(RefreshFailure::Unknown)) };
        if org.is_some_and(|g| !g.admits_session(record.second_factor)) {
            return Ok(Err(RefreshFailure::Inactive(ORG_NEEDS_SECOND_FACTOR.to_owned())));
        }
        let org = org.map(|g| g.org.as_str());
        let presented = hash(token);
        let used: Vec<serde_json::Value> = self
            .sql
            .exec("SELECT sid FROM used_refresh WHERE hash = ?", vec![presented.as_str().into()])?
            .to_array()?;
        match decide_refresh(&record, &presented, !used.is_empty(), self.now) {
            RefreshDecision::Rotate => {
                let (pair, new_hash) = self.pair(user_id, sid, &row.role, tier, org).await?;
                let next = record.rotated(&new_hash, serde_json::to_string(&pair)?, grace_ms, self.now);
                self.save(&next)?;
                self.sql.exec(
                    "INSERT OR IGNORE INTO used_refresh (hash, sid, used_at) VALUES (?, ?, ?)",
                    vec![presented.as_str().into(), sid.into(), (self.now.0 as f64).into()],
                )?;
                Ok(Ok(pair))
            }
            RefreshDecision::Replay(answer) => Ok(Ok(serde_json::from_str(&answer)?)),
            RefreshDecision::Reuse => {
                // A rotated token came back after its grace period: it was copied. End the
                // whole family, so neither the thief's nor the owner's tokens work any more.
                let mut revoked = record;
                revoked.revoke("refresh token reuse", self.now);
                self.save(&revoked)?;
                Ok(Err(RefreshFailure::Reused))
            }
            RefreshDecision::Inactive(status) => {
                Ok(Err(RefreshFailure::Inactive(status.reason().unwrap_or_default())))
            }
            RefreshDecision::Unknown => Ok(Err(RefreshFailure::Unknown)),
        }
    }

    /// Deletes the sessions ended more than a day ago, with their used refresh-token hashes:
    /// two indexed deletes, whatever the number of sessions.
    fn forget_ended(&self) -> Result<()> {
        let cutoff = self.now.0.saturating_sub(domain::session::ENDED_RETENTION_MS) as f64;
        self.sql.exec(
            "DELETE FROM used_refresh WHERE sid IN
                (SELECT sid FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?)",
            vec![cutoff.into()],
        )?;
        self.sql
            .exec("DELETE FROM sessions WHERE ended_at IS NOT NULL AND ended_at < ?", vec![cutoff.into()])?;
        // Only ended sessions were deleted: the open ones' newer activity stays in memory.
        let now = self.now;
        self.cache.borrow_mut().retain(|_, c| c.record.ended_at(now).is_none());
        Ok(())
    }

    /// Applies a new idle timeout to the open sessions. One that has already timed out stays
    /// ended: a longer timeout does not bring it back.
    pub fn set_idle_timeout(&self, idle_timeout_ms: u64) -> Result<()> {
        for (mut record, _) in self.open()? {
            if record.idle_timeout_ms != idle_timeout_ms {
                record.idle_timeout_ms = idle_timeout_ms;
                self.save(&record)?;
            }
        }
        Ok(())
    }

    /// Revokes `sid`; false when there is no such session.
    pub fn revoke(&self, sid: &str, reason: &str) -> Result<bool> {
        let Some((mut record, _)) = self.load(sid)? else { return Ok(false) };
        record.revoke(reason, self.now);
        self.save(&record)?;
        Ok(true)
    }

    /// Revokes every session but `except`; returns how many were active.
    pub fn revoke_all(&self, except: Option<&str>, reason: &str) -> Result<usize> {
        let mut ended = 0;
        for (mut record, row) in self.open()? {
            if Some(row.sid.as_str()) == except {
                continue;
            }
            record.revoke(reason, self.now);
            self.save(&record)?;
            ended += 1;
        }
        Ok(ended)
    }

    pub fn list(&self) -> Result<Vec<SessionView>> {
        let mut views: Vec<SessionView> = self
            .open()?
            .into_iter()
            .map(|(record, row)| SessionView {
                id: row.sid,
                device_id: row.device_id,
                user_agent: row.user_agent,
                ip: row.ip,
                created_at: record.created_at.0,
                last_seen: record.last_seen.0,
                idle_timeout_minutes: record.idle_timeout_ms / 60_000,
                expires_at: record.absolute_expiry.0,
                current: false,
            })
            .collect();
        views.sort_by_key(|v| v.created_at);
        Ok(views)
    }
}
