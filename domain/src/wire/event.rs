//! event: the behavioural events. The edge collects them per request, sends them through its
//! `EVENTS` queue and forwards each batch to the origin (`POST /internal/events`, an
//! [`EventBatch`] answered by [`EventsStored`]); the origin's own producers (the integration
//! hub's listening sync, `demo-data`) store the same [`Event`] record. Every kind is one of
//! [`EventKind`]: every producer is ours, so the enum is closed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What happened. Serialised (and stored) as the snake_case name (`api_request`, ...).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A user's API request the gate admitted (data: `status`, `tier`).
    ApiRequest,
    /// A user's API request the gate refused for the tier's quota (data: `tier`).
    RateLimited,
    /// A password login that opened a session (data: `risk_score`, `tier`).
    LoginSuccess,
    /// A refused sign-in (data: `status`, or `method: passkey`); no user id.
    LoginFailure,
    /// A password login that asks for a second factor (data: `status`); no user id.
    LoginMfaRequired,
    /// A second factor that opened a session (data: `risk_score`, `tier`).
    MfaSuccess,
    /// A refused second factor (data: `method`); no user id.
    MfaFailure,
    /// A passwordless sign-in that opened a session (data: `risk_score`, `tier`).
    PasskeyLogin,
    /// A session closed to make room under the tier's session limit (data: `session_id`,
    /// `reason`); also recorded as the user's security event.
    SessionEvicted,
    /// A profile change (data: `version`, `fields`: names only, never values).
    ProfileChange,
    /// A tier change (data: `tier`, `by`).
    TierChange,
    /// An edge isolate's metric aggregate (data: [`crate::observe::EdgeAggregate`]); no user.
    EdgeMetrics,
    /// A track played (data: [`crate::listening`]'s play), from the integration hub's sync or
    /// `demo-data`.
    TrackPlayed,
}

/// The longest a usage event waits at the edge for others to travel with.
pub const USAGE_BATCH_DELAY_MS: u64 = 1_000;
/// The most usage events that wait at the edge: one queue message batch (the queue's limit is
/// 100 messages per send).
pub const USAGE_BATCH_MAX: usize = 100;

/// Whether the events waiting at the edge leave now: an event that may not wait is among
/// them, or there are a batch's worth.
pub fn ship_now(waiting: &[EventKind]) -> bool {
    waiting.len() >= USAGE_BATCH_MAX || waiting.iter().any(|k| !k.may_wait())
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 13] = [
        EventKind::ApiRequest,
        EventKind::RateLimited,
        EventKind::LoginSuccess,
        EventKind::LoginFailure,
        EventKind::LoginMfaRequired,
        EventKind::MfaSuccess,
        EventKind::MfaFailure,
        EventKind::PasskeyLogin,
        EventKind::SessionEvicted,
        EventKind::ProfileChange,
        EventKind::TierChange,
        EventKind::EdgeMetrics,
        EventKind::TrackPlayed,
    ];

    /// Whether an event of this kind may wait at the edge to travel with others: the
    /// high-volume usage records (one per API request) and the isolate's metric aggregates may,
    /// for at most [`USAGE_BATCH_DELAY_MS`] or until [`USAGE_BATCH_MAX`] of them wait; every
    /// other kind is a sign-in, a security or an account event, and leaves with its request's
    /// answer (taking whatever waits along).
    pub const fn may_wait(self) -> bool {
        matches!(self, EventKind::ApiRequest | EventKind::RateLimited | EventKind::EdgeMetrics)
    }

    /// The name on the wire and in the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::ApiRequest => "api_request",
            EventKind::RateLimited => "rate_limited",
            EventKind::LoginSuccess => "login_success",
            EventKind::LoginFailure => "login_failure",
            EventKind::LoginMfaRequired => "login_mfa_required",
            EventKind::MfaSuccess => "mfa_success",
            EventKind::MfaFailure => "mfa_failure",
            EventKind::PasskeyLogin => "passkey_login",
            EventKind::SessionEvicted => "session_evicted",
            EventKind::ProfileChange => "profile_change",
            EventKind::TierChange => "tier_change",
            EventKind::EdgeMetrics => "edge_metrics",
            EventKind::TrackPlayed => "track_played",
        }
    }

    /// Whether the origin also records the event as the user's security event (the user can
    /// read those; the behavioural events are analytics).
    pub const fn is_security_event(self) -> bool {
        matches!(self, EventKind::SessionEvicted)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`EventKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

impl std::str::FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownEventKind(s.to_owned()))
    }
}

/// One thing that happened: the record the edge queues and the origin stores (once per id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Random (the edge) or derived from what happened (a listening event), 32 hex digits.
    pub id: String,
    pub kind: EventKind,
    pub user_id: Option<String>,
    /// The endpoint class of an API request (`profile_read`, `profile_write`, ...).
    pub class: Option<String>,
    /// Unix milliseconds.
    pub at: u64,
    /// What the kind says it carries (see [`EventKind`]); never personal data.
    pub data: Value,
}

/// The data of an `api_request` (with the answer's `status`) and of a `rate_limited` (without):
/// the tier the request was admitted or refused under. The origin counts usage by tier from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub tier: crate::tier::Tier,
}

/// The data of a `profile_change`: the profile's new version and which fields changed, never
/// their values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChangeData {
    pub version: u64,
    pub fields: Vec<String>,
}

/// `POST /internal/events`: one queue batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBatch {
    pub events: Vec<Event>,
}

/// The origin's answer to an [`EventBatch`]: how many events were new, how many it had already.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsStored {
    pub stored: u64,
    pub duplicates: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_serde_s_and_parse_back() {
        for kind in EventKind::ALL {
            assert_eq!(serde_json::to_value(kind).unwrap(), Value::String(kind.as_str().to_owned()));
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("signup".parse::<EventKind>().is_err());
        assert_eq!(EventKind::TrackPlayed.as_str(), crate::listening::KIND);
        assert_eq!(EventKind::EdgeMetrics.as_str(), crate::observe::EDGE_METRICS_EVENT);
    }

    #[test]
    fn only_usage_waits_and_a_full_batch_leaves() {
        let waiting: Vec<EventKind> = EventKind::ALL.into_iter().filter(|k| k.may_wait()).collect();
        assert_eq!(waiting, [EventKind::ApiRequest, EventKind::RateLimited, EventKind::EdgeMetrics]);
        assert!(!ship_now(&[]));
        assert!(!ship_now(&[EventKind::ApiRequest; USAGE_BATCH_MAX - 1]));
        assert!(ship_now(&[EventKind::ApiRequest; USAGE_BATCH_MAX]));
        // A sign-in takes the waiting usage along at once.
        assert!(ship_now(&[EventKind::ApiRequest, EventKind::LoginSuccess]));
        assert!(ship_now(&[EventKind::TierChange]));
    }

    #[test]
    fn request_data_is_the_status_and_the_tier() {
        let admitted = RequestData { status: Some(200), tier: crate::tier::Tier::Premium };
        assert_eq!(serde_json::to_string(&admitted).unwrap(), r#"{"status":200,"tier":"premium"}"#);
        let refused = RequestData { status: None, tier: crate::tier::Tier::Free };
        assert_eq!(serde_json::to_string(&refused).unwrap(), r#"{"tier":"free"}"#);
    }

    #[test]
    fn an_event_reads_the_edge_s_json() {
        let text = r#"{"id":"ab","kind":"api_request","user_id":"u","class":"profile_read","at":5,"data":{"status":200}}"#;
        let event: Event = serde_json::from_str(text).unwrap();
        assert_eq!(event.kind, EventKind::ApiRequest);
        assert_eq!(serde_json::to_string(&event).unwrap(), text);
    }
}
