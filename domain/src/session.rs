//! Sessions and refresh-token rotation, as pure decisions over a session's record.
//!
//! A session is created at login and holds the hash of its one current refresh token. A
//! refresh presents that token and rotates it: a new refresh token and a new access token
//! replace it. Two refreshes racing with the same token (a client retrying, two tabs) must not
//! log the user out, so for a short grace period after a rotation the token just rotated
//! answers with the *same* new pair. Presenting a rotated token after the grace period means
//! the token was copied: the whole session (the token family) is revoked.
//!
//! Sessions end when revoked (logout, deletion, password change, reuse), after
//! `idle_timeout_ms` without a request, or at their absolute expiry.

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// How long a session may live at most, whatever its activity.
pub const ABSOLUTE_LIFETIME_MS: u64 = 30 * 24 * 3600 * 1000;
/// How long a rotated refresh token still answers with the pair that replaced it.
pub const DEFAULT_REUSE_GRACE_MS: u64 = 10_000;
/// How long an ended session is kept (so a request with its token is told why it ended)
/// before the gate forgets it. Its tokens stay refused after that: unknown sessions are.
pub const ENDED_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// A session as the gate stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub sid: String,
    pub created_at: UnixMillis,
    pub last_seen: UnixMillis,
    pub idle_timeout_ms: u64,
    pub absolute_expiry: UnixMillis,
    /// SHA-256 (hex) of the current refresh token.
    pub current_hash: String,
    /// The token rotated last, while it may still answer within the grace period.
    pub previous: Option<Rotated>,
    pub revoked: Option<Revocation>,
    /// When this session last proved its user again (password and a second factor): sensitive
    /// changes accept it for `security::STEP_UP_MAX_AGE_MS`.
    #[serde(default)]
    pub stepped_up_at: Option<UnixMillis>,
    /// Whether the sign-in that opened the session used a second factor (an organization that
    /// requires one refuses sessions opened without).
    #[serde(default)]
    pub second_factor: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    pub hash: String,
    pub grace_until: UnixMillis,
    /// The answer the rotation gave (the new pair), served again to racing refreshes.
    pub answer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub at: UnixMillis,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    Revoked(String),
    IdleExpired,
    Expired,
}

impl SessionStatus {
    /// Why a request with this session is refused, for the 401's detail.
    pub fn reason(&self) -> Option<String> {
        match self {
            SessionStatus::Active => None,
            SessionStatus::Revoked(why) => Some(format!("the session was ended ({why})")),
            SessionStatus::IdleExpired => Some("the session timed out after inactivity".to_owned()),
            SessionStatus::Expired => Some("the session reached its maximum lifetime".to_owned()),
        }
    }
}

impl SessionRecord {
    pub fn new(sid: &str, refresh_hash: &str, idle_timeout_ms: u64, now: UnixMillis) -> Self {
        Self {
            sid: sid.to_owned(),
            created_at: now,
            last_seen: now,
            idle_timeout_ms,
            absolute_expiry: now.saturating_add_ms(ABSOLUTE_LIFETIME_MS),
            current_hash: refresh_hash.to_owned(),
            previous: None,
            revoked: None,
            stepped_up_at: None,
            second_factor: false,
        }
    }

    /// The same session with a shorter absolute lifetime (a tier's or role's floor).
    pub fn with_absolute_lifetime(mut self, lifetime_ms: u64) -> Self {
        self.absolute_expiry = self.created_at.saturating_add_ms(lifetime_ms.min(ABSOLUTE_LIFETIME_MS));
        self
    }

    pub fn status(&self, now: UnixMillis) -> SessionStatus {
        if let Some(r) = &self.revoked {
            SessionStatus::Revoked(r.reason.clone())
        } else if now >= self.absolute_expiry {
            SessionStatus::Expired
        } else if now.0.saturating_sub(self.last_seen.0) > self.idle_timeout_ms {
            SessionStatus::IdleExpired
        } else {
            SessionStatus::Active
        }
    }

    /// When the session ended, if it has: revoked, expired, or idle past its timeout.
    pub fn ended_at(&self, now: UnixMillis) -> Option<UnixMillis> {
        let idle_end = self.last_seen.saturating_add_ms(self.idle_timeout_ms);
        let natural = self.absolute_expiry.min(idle_end);
        match &self.revoked {
            Some(r) => Some(r.at.min(natural)),
            None if now >= self.absolute_expiry
                || now.0.saturating_sub(self.last_seen.0) > self.idle_timeout_ms =>
            {
                Some(natural)
            }
            None => None,
        }
    }

    /// Whether the record may be deleted: ended more than [`ENDED_RETENTION_MS`] ago.
    pub fn may_be_forgotten(&self, now: UnixMillis) -> bool {
        self.ended_at(now).is_some_and(|end| now.0.saturating_sub(end.0) > ENDED_RETENTION_MS)
    }

    pub fn revoke(&mut self, reason: &str, now: UnixMillis) {
        if self.revoked.is_none() {
            self.revoked = Some(Revocation { at: now, reason: reason.to_owned() });
        }
    }

    /// Marks activity (a request, or a refresh).
    pub fn touch(&mut self, now: UnixMillis) {
        self.last_seen = self.last_seen.max(now);
    }
}

/// How far the stored activity time of a session may lag its real one. A session's gate keeps
/// the exact time in memory and writes it through at most this often, instead of a storage
/// write per request; if the gate restarts, the session's idle clock restarts at most this
/// much too early, so it can time out that much sooner, never later.
pub const ACTIVITY_SAVE_INTERVAL_MS: u64 = 60_000;

/// Whether a request's activity must be written through, given the activity time last saved.
pub fn activity_needs_saving(saved_last_seen: UnixMillis, now: UnixMillis) -> bool {
    now.0.saturating_sub(saved_last_seen.0) >= ACTIVITY_SAVE_INTERVAL_MS
}

/// What to do with a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshDecision {
    /// The current token: rotate to a new pair, then [`SessionRecord::rotated`].
    Rotate,
    /// A racing refresh within the grace period: answer the pair already given.
    Replay(String),
    /// A rotated token after the grace period, or one used before: revoke the family.
    Reuse,
    /// The session cannot be refreshed.
    Inactive(SessionStatus),
    /// Not a token of this session.
    Unknown,
}

/// Decides a refresh. `used_before` says whether the hash is among the session's earlier,
/// already rotated tokens (the caller keeps that list).
pub fn decide_refresh(
    session: &SessionRecord,
    presented_hash: &str,
    used_before: bool,
    now: UnixMillis,
) -> RefreshDecision {
    let status = session.status(now);
    if status != SessionStatus::Active {
        return RefreshDecision::Inactive(status);
    }
    if constant_time_eq(presented_hash, &session.current_hash) {
        return RefreshDecision::Rotate;
    }
    if let Some(previous) = &session.previous {
        if constant_time_eq(presented_hash, &previous.hash) {
            return if now < previous.grace_until {
                RefreshDecision::Replay(previous.answer.clone())
            } else {
                RefreshDecision::Reuse
            };
        }
    }
    if used_before {
        RefreshDecision::Reuse
    } else {
        RefreshDecision::Unknown
    }
}

impl SessionRecord {
    /// The record after a rotation from the current token to `new_hash`, whose `answer` racing
    /// refreshes of the old token receive until `now + grace_ms`.
    pub fn rotated(&self, new_hash: &str, answer: String, grace_ms: u64, now: UnixMillis) -> Self {
        let mut next = self.clone();
        next.previous = Some(Rotated {
            hash: self.current_hash.clone(),
            grace_until: now.saturating_add_ms(grace_ms),
            answer,
        });
        next.current_hash = new_hash.to_owned();
        next.touch(now);
        next
    }
}

/// The sessions to end so that a new one fits under `max_open`: the least recently used first
/// (the oldest idle session ends first). `open` holds `(session id, last seen)` of the active
/// sessions.
pub fn to_evict(open: &[(String, UnixMillis)], max_open: usize) -> Vec<String> {
    let keep = max_open.saturating_sub(1);
    if open.len() <= keep {
        return Vec::new();
    }
    let mut by_age: Vec<&(String, UnixMillis)> = open.iter().collect();
    by_age.sort_by_key(|(sid, seen)| (*seen, sid.clone()));
    by_age.into_iter().take(open.len() - keep).map(|(sid, _)| sid.clone()).collect()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_is_saved_at_most_once_a_minute() {
        let saved = UnixMillis(1_000_000);
        assert!(!activity_needs_saving(saved, saved));
        assert!(!activity_needs_saving(saved, UnixMillis(saved.0 + ACTIVITY_SAVE_INTERVAL_MS - 1)));
        assert!(activity_needs_saving(saved, UnixMillis(saved.0 + ACTIVITY_SAVE_INTERVAL_MS)));
        // A clock that went back writes nothing.
        assert!(!activity_needs_saving(saved, UnixMillis(saved.0 - 5)));
    }

    #[test]
    fn the_oldest_idle_sessions_end_first_to_make_room_under_the_cap() {
        let at = |ms| UnixMillis(ms);
        let open = vec![("a".to_owned(), at(30)), ("b".to_owned(), at(10)), ("c".to_owned(), at(20))];
        assert!(to_evict(&open, 4).is_empty());
        assert_eq!(to_evict(&open, 3), vec!["b".to_owned()]);
        assert_eq!(to_evict(&open, 2), vec!["b".to_owned(), "c".to_owned()]);
        assert_eq!(to_evict(&open, 0), vec!["b".to_owned(), "c".to_owned(), "a".to_owned()]);
    }

    #[test]
    fn a_floor_shortens_the_absolute_lifetime_and_never_lengthens_it() {
        let s = SessionRecord::new("s", "h", 60_000, T0).with_absolute_lifetime(12 * 3_600_000);
        assert_eq!(s.absolute_expiry, T0.saturating_add_ms(12 * 3_600_000));
        assert_eq!(s.status(T0.saturating_add_ms(12 * 3_600_000)), SessionStatus::Expired);
        let capped = SessionRecord::new("s", "h", 60_000, T0).with_absolute_lifetime(u64::MAX);
        assert_eq!(capped.absolute_expiry, T0.saturating_add_ms(ABSOLUTE_LIFETIME_MS));
    }

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    fn session() -> SessionRecord {
        SessionRecord::new("s1", "h1", 60_000, T0)
    }

    #[test]
    fn the_current_token_rotates_and_racers_get_the_same_pair() {
        let s = session();
        assert_eq!(decide_refresh(&s, "h1", false, T0), RefreshDecision::Rotate);
        let s = s.rotated("h2", "pair-2".into(), 10_000, T0);
        for dt in [0, 5_000, 9_999] {
            assert_eq!(
                decide_refresh(&s, "h1", true, T0.saturating_add_ms(dt)),
                RefreshDecision::Replay("pair-2".into())
            );
        }
        assert_eq!(decide_refresh(&s, "h2", false, T0), RefreshDecision::Rotate);
    }

    #[test]
    fn ended_sessions_are_forgotten_a_day_after_they_end() {
        let mut s = session();
        let day = ENDED_RETENTION_MS;
        assert_eq!(s.ended_at(T0), None);
        assert!(!s.may_be_forgotten(T0));
        // Idle: ended when the timeout ran out, forgotten a day later.
        let idle_end = T0.saturating_add_ms(60_000);
        assert_eq!(s.ended_at(T0.saturating_add_ms(60_001)), Some(idle_end));
        assert!(!s.may_be_forgotten(idle_end.saturating_add_ms(day)));
        assert!(s.may_be_forgotten(idle_end.saturating_add_ms(day + 1)));
        // Revoked: ended at the revocation.
        s.touch(T0.saturating_add_ms(30_000));
        s.revoke("logout", T0.saturating_add_ms(40_000));
        assert_eq!(s.ended_at(T0.saturating_add_ms(40_000)), Some(T0.saturating_add_ms(40_000)));
        assert!(s.may_be_forgotten(T0.saturating_add_ms(40_001 + day)));
        // A long-lived active session is kept until its absolute expiry, plus a day.
        let mut long = SessionRecord::new("s2", "h", ABSOLUTE_LIFETIME_MS, T0);
        let expiry = T0.saturating_add_ms(ABSOLUTE_LIFETIME_MS);
        long.touch(expiry.saturating_add_ms(0));
        assert_eq!(long.ended_at(expiry), Some(expiry));
        assert!(!long.may_be_forgotten(expiry.saturating_add_ms(day)));
        assert!(long.may_be_forgotten(expiry.saturating_add_ms(day + 1)));
    }

    #[test]
    fn reuse_after_the_grace_period_is_detected() {
        let s = session().rotated("h2", "pair-2".into(), 10_000, T0);
        assert_eq!(decide_refresh(&s, "h1", true, T0.saturating_add_ms(10_000)), RefreshDecision::Reuse);
        assert_eq!(decide_refresh(&s, "h1", true, T0.saturating_add_ms(30_000)), RefreshDecision::Reuse);
        // An older token, rotated two steps ago.
        let s = s.rotated("h3", "pair-3".into(), 10_000, T0.saturating_add_ms(1_000));
        assert_eq!(decide_refresh(&s, "h1", true, T0.saturating_add_ms(2_000)), RefreshDecision::Reuse);
        assert_eq!(decide_refresh(&s, "zz", false, T0.saturating_add_ms(2_000)), RefreshDecision::Unknown);
    }

    #[test]
    fn sessions_end_by_revocation_inactivity_or_age() {
        let mut s = session();
        assert_eq!(s.status(T0.saturating_add_ms(60_000)), SessionStatus::Active);
        assert_eq!(s.status(T0.saturating_add_ms(60_001)), SessionStatus::IdleExpired);
        s.touch(T0.saturating_add_ms(50_000));
        assert_eq!(s.status(T0.saturating_add_ms(100_000)), SessionStatus::Active);
        let long = SessionRecord::new("s", "h", u64::MAX, T0);
        assert_eq!(long.status(T0.saturating_add_ms(ABSOLUTE_LIFETIME_MS)), SessionStatus::Expired);
        s.revoke("logout", T0);
        s.revoke("later reason", T0);
        assert_eq!(s.status(T0), SessionStatus::Revoked("logout".into()));
        assert_eq!(
            decide_refresh(&s, "h1", false, T0),
            RefreshDecision::Inactive(SessionStatus::Revoked("logout".into()))
        );
    }
}
