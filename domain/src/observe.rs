//! Observability rules both sides share: the edge's per-isolate metric aggregate (the wire type
//! the edge ships to the origin through the events queue), the bounded label values every
//! metric may carry, and the pure summaries the admin dashboard draws (activity per minute,
//! risk distribution). No clock reads: `now` is an argument.
//!
//! Labels are bounded by construction: a value outside the lists here becomes `other`, so no
//! input (and no edge, however compromised) can grow a metric family without bound, and no
//! label ever carries a user id or an email.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::token::TokenError;

/// The event kind that carries an [`EdgeAggregate`] through the queue.
pub const EDGE_METRICS_EVENT: &str = crate::wire::event::EventKind::EdgeMetrics.as_str();

/// The catch-all label value for anything outside a bounded list.
pub const OTHER: &str = "other";

/// Tier labels: the four tiers, and `none` for what has no tier (per-address limits).
pub const TIER_LABELS: [&str; 5] = ["free", "premium", "enterprise", "vip", "none"];

/// Why the edge refused a request.
pub const REFUSAL_REASONS: [&str; 6] =
    ["tier_quota", "tier_change_limit", "ip_login", "ip_signup", "ip_refresh", "ip_health"];

/// The signals of `risk::assess`.
pub const RISK_SIGNALS: [&str; 7] = [
    "new_device",
    "new_network",
    "new_country",
    "user_agent_changed",
    "recent_failures",
    "unusual_hour",
    "impossible_travel",
];

/// Why a bearer token was not accepted.
pub const TOKEN_FAILURE_REASONS: [&str; 9] = [
    "missing",
    "malformed",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer_or_audience",
    "unknown_or_retired_key",
    "bad_claims",
    "session_ended",
];

/// `value` if it is one of `allowed`, else [`OTHER`].
pub fn bounded<'a>(value: &'a str, allowed: &[&'static str]) -> &'a str {
    if allowed.contains(&value) {
        value
    } else {
        OTHER
    }
}

/// The metric reason of a token validation failure.
pub fn token_failure_reason(error: &TokenError) -> &'static str {
    match error {
        TokenError::Malformed
        | TokenError::AlgorithmNotAllowed(_)
        | TokenError::WrongType
        | TokenError::WrongHeaderType => "malformed",
        TokenError::BadSignature => "bad_signature",
        TokenError::Expired => "expired",
        TokenError::NotYetValid => "not_yet_valid",
        TokenError::WrongIssuer | TokenError::WrongAudience => "wrong_issuer_or_audience",
        TokenError::UnknownKey | TokenError::RetiredKey => "unknown_or_retired_key",
        _ => "bad_claims",
    }
}

/// Upper bounds (milliseconds) of the gate-latency buckets; a last bucket holds the rest.
pub const GATE_LATENCY_BOUNDS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

/// A latency histogram with fixed buckets: `counts[i]` observations at most
/// `GATE_LATENCY_BOUNDS_MS[i]` (and above the previous bound); the last count is over the top.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBuckets {
    pub counts: Vec<u64>,
    pub sum_ms: u64,
    pub count: u64,
}

impl LatencyBuckets {
    pub fn observe(&mut self, ms: u64) {
        if self.counts.len() != GATE_LATENCY_BOUNDS_MS.len() + 1 {
            self.counts = vec![0; GATE_LATENCY_BOUNDS_MS.len() + 1];
        }
        let slot =
            GATE_LATENCY_BOUNDS_MS.iter().position(|b| ms <= *b).unwrap_or(GATE_LATENCY_BOUNDS_MS.len());
        if let Some(c) = self.counts.get_mut(slot) {
            *c += 1;
        }
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }

    /// Adds `other` (a histogram with the same bounds; a malformed one is ignored).
    pub fn merge(&mut self, other: &LatencyBuckets) {
        if other.counts.len() != GATE_LATENCY_BOUNDS_MS.len() + 1
            || other.counts.iter().sum::<u64>() != other.count
        {
            return;
        }
        if self.counts.len() != other.counts.len() {
            self.counts = vec![0; other.counts.len()];
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
        self.count = self.count.saturating_add(other.count);
    }

    /// Cumulative counts per bound, as Prometheus's `le` buckets want them (without `+Inf`,
    /// which is `count`).
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut total = 0;
        GATE_LATENCY_BOUNDS_MS
            .iter()
            .enumerate()
            .map(|(i, bound)| {
                total += self.counts.get(i).copied().unwrap_or(0);
                (*bound, total)
            })
            .collect()
    }
}

/// What one edge isolate saw since it last shipped its numbers: the counts only the edge
/// knows. Shipped through the events queue (at-least-once; the event id makes it counted once).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeAggregate {
    /// Admitted requests by tier (`none` for per-address limits).
    pub admitted: BTreeMap<String, u64>,
    /// Refused requests by tier, then reason.
    pub refused: BTreeMap<String, BTreeMap<String, u64>>,
    /// Profile reads answered from the KV cache.
    pub cache_hits: u64,
    /// Profile reads the origin answered.
    pub origin_reads: u64,
    /// Bearer tokens refused, by reason.
    pub token_failures: BTreeMap<String, u64>,
    /// How long the gate (the user's Durable Object) took to answer admission.
    pub gate_latency: LatencyBuckets,
}

impl EdgeAggregate {
    pub fn admit(&mut self, tier: &str) {
        *self.admitted.entry(bounded(tier, &TIER_LABELS).to_owned()).or_default() += 1;
    }

    pub fn refuse(&mut self, tier: &str, reason: &str) {
        *self
            .refused
            .entry(bounded(tier, &TIER_LABELS).to_owned())
            .or_default()
            .entry(bounded(reason, &REFUSAL_REASONS).to_owned())
            .or_default() += 1;
    }

    pub fn token_failure(&mut self, reason: &str) {
        *self.token_failures.entry(bounded(reason, &TOKEN_FAILURE_REASONS).to_owned()).or_default() += 1;
    }

    pub fn is_empty(&self) -> bool {
        *self == EdgeAggregate::default() || (self.total() == 0 && self.gate_latency.count == 0)
    }

    fn total(&self) -> u64 {
        self.admitted.values().sum::<u64>()
            + self.refused.values().flat_map(BTreeMap::values).sum::<u64>()
            + self.cache_hits
            + self.origin_reads
            + self.token_failures.values().sum::<u64>()
    }

    /// The same counts with every label bounded: what the origin applies of an aggregate it
    /// received (unknown labels fold into `other`, never into new series).
    pub fn bounded(&self) -> EdgeAggregate {
        let mut out = EdgeAggregate {
            cache_hits: self.cache_hits,
            origin_reads: self.origin_reads,
            ..EdgeAggregate::default()
        };
        for (tier, n) in &self.admitted {
            *out.admitted.entry(bounded(tier, &TIER_LABELS).to_owned()).or_default() += n;
        }
        for (tier, reasons) in &self.refused {
            for (reason, n) in reasons {
                *out.refused
                    .entry(bounded(tier, &TIER_LABELS).to_owned())
                    .or_default()
                    .entry(bounded(reason, &REFUSAL_REASONS).to_owned())
                    .or_default() += n;
            }
        }
        for (reason, n) in &self.token_failures {
            *out.token_failures.entry(bounded(reason, &TOKEN_FAILURE_REASONS).to_owned()).or_default() += n;
        }
        out.gate_latency.merge(&self.gate_latency);
        out
    }
}

/// Minutes in the dashboard's activity window.
pub const ACTIVITY_MINUTES: usize = 60;

/// The dashboard's activity series (a wire type).
pub use crate::wire::admin::Activity;

/// `signup` is no event kind: the store counts new accounts under that name.
pub const SIGNUP_SERIES: &str = "signup";

/// Which activity series an event kind (or [`SIGNUP_SERIES`]) counts in, if any.
fn series_of(kind: &str) -> Option<usize> {
    use crate::wire::event::EventKind;
    if kind == SIGNUP_SERIES {
        return Some(3);
    }
    match kind.parse::<EventKind>().ok()? {
        EventKind::ApiRequest => Some(0),
        EventKind::LoginSuccess | EventKind::MfaSuccess => Some(1),
        EventKind::LoginFailure | EventKind::MfaFailure => Some(2),
        _ => None,
    }
}

/// Per-minute series from event counts `(minute index since the epoch, kind, count)` over the
/// [`ACTIVITY_MINUTES`] minutes up to and including `now`'s minute.
pub fn activity(counts: &[(u64, String, u64)], now_ms: u64) -> Activity {
    let last = now_ms / 60_000;
    let first = (last + 1).saturating_sub(ACTIVITY_MINUTES as u64);
    let mut series = vec![vec![0u64; ACTIVITY_MINUTES]; 4];
    for (minute, kind, n) in counts {
        let (Some(s), true) = (series_of(kind), (first..=last).contains(minute)) else { continue };
        let slot = usize::try_from(minute - first).unwrap_or(usize::MAX);
        if let Some(cell) = series.get_mut(s).and_then(|v| v.get_mut(slot)) {
            *cell += n;
        }
    }
    let mut series = series.into_iter();
    let mut next = || series.next().unwrap_or_default();
    Activity {
        minutes: (first..=last).map(|m| m * 60).collect(),
        requests: next(),
        logins: next(),
        failed_logins: next(),
        signups: next(),
    }
}

/// Upper bounds of the risk-score buckets the dashboard and `/metrics` use (scores are 0–1,
/// see `risk`).
pub const RISK_BOUNDS: [f64; 6] = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0];

/// How many scores fall in each bucket of [`RISK_BOUNDS`] (above the previous bound, at most
/// this one; a score over the top counts in the last), labelled by their upper bound.
pub fn risk_distribution(scores: &[f64]) -> Vec<(String, u64)> {
    let mut counts = vec![0u64; RISK_BOUNDS.len()];
    for score in scores.iter().filter(|s| s.is_finite()) {
        let slot = RISK_BOUNDS.iter().position(|b| score <= b).unwrap_or(RISK_BOUNDS.len() - 1);
        if let Some(c) = counts.get_mut(slot) {
            *c += 1;
        }
    }
    RISK_BOUNDS
        .iter()
        .zip(counts)
        .map(|(bound, n)| (if *bound <= 0.0 { "0".to_owned() } else { format!("≤{bound}") }, n))
        .collect()
}

/// Churn probabilities into ten buckets of 10 percentage points (`[0, 0.1)`, …, `[0.9, 1]`).
pub fn churn_deciles(probabilities: &[f64]) -> [u64; 10] {
    let mut out = [0u64; 10];
    for p in probabilities {
        if !p.is_finite() {
            continue;
        }
        let slot = ((p.clamp(0.0, 1.0) * 10.0) as usize).min(9);
        if let Some(c) = out.get_mut(slot) {
            *c += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_outside_the_lists_fold_into_other() {
        let mut agg = EdgeAggregate::default();
        agg.admit("premium");
        agg.admit("usr_0123@example.com");
        agg.refuse("free", "tier_quota");
        agg.refuse("gold", "because");
        agg.token_failure("expired");
        agg.token_failure("made-up");
        assert_eq!(agg.admitted, BTreeMap::from([("other".into(), 1), ("premium".into(), 1)]));
        assert_eq!(agg.refused["free"]["tier_quota"], 1);
        assert_eq!(agg.refused["other"]["other"], 1);
        assert_eq!(agg.token_failures, BTreeMap::from([("expired".into(), 1), ("other".into(), 1)]));
    }

    #[test]
    fn a_received_aggregate_is_bounded_before_use() {
        let mut wire = EdgeAggregate::default();
        wire.admitted.insert("a@b.c".into(), 5);
        wire.admitted.insert("free".into(), 2);
        wire.refused.entry("x".into()).or_default().insert("y".into(), 3);
        wire.token_failures.insert("session_ended".into(), 4);
        wire.gate_latency = LatencyBuckets { counts: vec![1; 3], sum_ms: 9, count: 3 };
        let b = wire.bounded();
        assert_eq!(b.admitted, BTreeMap::from([("free".into(), 2), ("other".into(), 5)]));
        assert_eq!(b.refused["other"]["other"], 3);
        assert_eq!(b.token_failures["session_ended"], 4);
        // Buckets of the wrong shape are not applied.
        assert_eq!(b.gate_latency.count, 0);
    }

    #[test]
    fn gate_latency_buckets_are_cumulative() {
        let mut h = LatencyBuckets::default();
        for ms in [0, 1, 3, 7, 7, 2000] {
            h.observe(ms);
        }
        assert_eq!(h.count, 6);
        assert_eq!(h.sum_ms, 2018);
        let cumulative = h.cumulative();
        assert_eq!(cumulative[0], (1, 2));
        assert_eq!(cumulative[2], (5, 3));
        assert_eq!(cumulative[3], (10, 5));
        assert_eq!(cumulative[9], (1000, 5));
        let mut merged = LatencyBuckets::default();
        merged.merge(&h);
        merged.merge(&h);
        assert_eq!(merged.count, 12);
        assert_eq!(merged.cumulative()[3], (10, 10));
        assert!(!EdgeAggregate { gate_latency: h, ..Default::default() }.is_empty());
        assert!(EdgeAggregate::default().is_empty());
    }

    #[test]
    fn activity_puts_counts_in_their_minute_and_drops_the_rest() {
        let now = 1_700_000_000_000u64; // minute 28_333_333
        let last = now / 60_000;
        let counts = vec![
            (last, "api_request".to_owned(), 7),
            (last, "login_success".to_owned(), 2),
            (last, "mfa_success".to_owned(), 1),
            (last - 59, "signup".to_owned(), 3),
            (last - 60, "signup".to_owned(), 100), // before the window
            (last - 1, "login_failure".to_owned(), 4),
            (last, "profile_change".to_owned(), 9), // not a series
        ];
        let a = activity(&counts, now);
        assert_eq!(a.minutes.len(), 60);
        assert_eq!(a.minutes[59], last * 60);
        assert_eq!(a.requests[59], 7);
        assert_eq!(a.logins[59], 3);
        assert_eq!(a.failed_logins[58], 4);
        assert_eq!(a.signups[0], 3);
        assert_eq!(a.signups.iter().sum::<u64>(), 3);
        assert_eq!(a.requests.iter().sum::<u64>(), 7);
    }

    #[test]
    fn risk_and_churn_buckets() {
        let d = risk_distribution(&[0.0, 0.0, 0.05, 0.1, 0.105, 0.6, 1.0, 2.5, f64::NAN]);
        assert_eq!(
            d,
            vec![
                ("0".to_owned(), 2),
                ("≤0.1".to_owned(), 2),
                ("≤0.25".to_owned(), 1),
                ("≤0.5".to_owned(), 0),
                ("≤0.75".to_owned(), 1),
                ("≤1".to_owned(), 2),
            ]
        );
        assert_eq!(churn_deciles(&[0.0, 0.05, 0.1, 0.95, 1.0, f64::NAN]), [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn token_errors_map_to_bounded_reasons() {
        for e in
            [TokenError::Expired, TokenError::BadSignature, TokenError::Malformed, TokenError::WrongAudience]
        {
            assert!(TOKEN_FAILURE_REASONS.contains(&token_failure_reason(&e)));
        }
        assert_eq!(token_failure_reason(&TokenError::Expired), "expired");
    }
}
