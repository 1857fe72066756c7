//! The rolling-window rate limiter: exact quotas over any rolling window, in constant memory,
//! with a `Retry-After` that never exceeds the window.
//!
//! Time is cut into buckets of width `B` aligned on multiples of `B`; a window of length
//! `W = N·B` is covered by the `N + 1` most recent buckets. For each of them the limiter keeps
//! its count of admitted requests and `last`, the time of its latest admission. At time `t`,
//! in bucket `k = ⌊t/B⌋`, a bucket is *counted* iff it is one of `k − N ..= k` and its `last`
//! is later than `t − W`; it is then counted whole. A request is admitted iff the counted
//! buckets together hold fewer than `quota` admitted requests.
//!
//! **Invariant: in any window `[a, a + W)`, at most `quota` requests are admitted.** Suppose a
//! window held more, and let `t*` be the last admission in it. Every other admission `τ` in it
//! came earlier, with `τ ≥ a > t* − W`, so `τ/B > t*/B − N` and `⌊τ/B⌋ ≥ ⌊t*/B⌋ − N`: each sat
//! in one of the `N + 1` buckets kept when `t*` was decided, and that bucket's `last` was at
//! least `τ`, so later than `t* − W`: the bucket was counted, whole. So all of them were counted
//! when `t*` was decided, and `t*` was admitted only if they numbered fewer than `quota`. A
//! bucket left out has every admission at or before its `last ≤ t − W`, outside every window
//! that contains `t`; counting the others whole, though part of them may lie outside, is what
//! makes this hold for *any* window.
//!
//! **False refusals are bounded by one bucket:** a request at `t` is refused only if at least
//! `quota` requests were admitted in `[(k − N)·B, t]`, a span inside `(t − W − B, t]`.
//!
//! **`Retry-After` is at most the window:** a bucket stops being counted at `last + W` (or
//! when it leaves the `N + 1` kept, which is never earlier, since `last` lies inside it). With
//! nothing else arriving, the counted total falls at those instants only, so the earliest
//! instant it drops below the quota is one of them, `last + W ≤ now + W`; that wait, rounded up
//! to whole seconds, is the `Retry-After`, and a retry after it is admitted.
//!
//! The state does not depend on the quota (only [`Limiter::decide`] reads it), so a tier change
//! takes effect on the next request. Time is an argument; a `now` older than the newest bucket
//! (clock skew between calls) is treated as falling in the newest bucket, and a bucket's `last`
//! never moves backwards.
//!
//! State persisted before `last` existed still reads: each non-empty bucket's `last` is then
//! taken to be its bucket's final millisecond (or the time of reading, if earlier: nothing was
//! admitted after the state was written), the latest it can have been, so the bucket is
//! counted at least as long as its true `last` would have kept it (conservative).

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// The shape of a limit: a rolling window of `buckets` buckets of `bucket_ms` each, and the
/// quota admitted in any such window (`None`: unlimited, nothing is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub bucket_ms: u64,
    pub buckets: u32,
    pub quota: Option<u32>,
}

impl Policy {
    /// The production shape: a rolling hour of sixty one-minute buckets.
    pub fn hourly(quota: Option<u32>) -> Self {
        Self { bucket_ms: 60_000, buckets: 60, quota }
    }

    /// A window of `window_secs` cut into `buckets` buckets (each at least one millisecond).
    pub fn rolling(window_secs: u64, buckets: u32, quota: Option<u32>) -> Self {
        let buckets = buckets.max(1);
        let bucket_ms = (window_secs.saturating_mul(1000) / u64::from(buckets)).max(1);
        Self { bucket_ms, buckets, quota }
    }

    pub fn window_ms(&self) -> u64 {
        self.bucket_ms.saturating_mul(u64::from(self.buckets))
    }

    pub fn window_secs(&self) -> u64 {
        self.window_ms().div_ceil(1000)
    }
}

/// What a decision says, with the figures of the `RateLimit` header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub admitted: bool,
    /// The quota in force (`None`: unlimited).
    pub limit: Option<u32>,
    /// How many more requests would be admitted right now.
    pub remaining: u32,
    /// Seconds until `remaining` next grows (0 when nothing is counted).
    pub reset_secs: u64,
    /// On a refusal: the whole seconds after which a retry is admitted.
    pub retry_after_secs: Option<u64>,
}

impl Decision {
    /// The answer for an unlimited policy: admitted, nothing counted.
    pub const UNLIMITED: Decision =
        Decision { admitted: true, limit: None, remaining: u32::MAX, reset_secs: 0, retry_after_secs: None };
}

/// One user's counts: the `N + 1` most recent buckets, oldest first, the index of the newest,
/// and each bucket's latest admission. Serialises compactly, for a Durable Object to persist
/// after each decision.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limiter {
    /// `⌊t/B⌋` of the newest bucket.
    newest: u64,
    /// Counts of buckets `newest − N ..= newest`, oldest first.
    counts: Vec<u32>,
    /// The latest admission (ms) in each bucket of `counts` (0 for an empty bucket). Absent in
    /// state persisted by older releases; see [`Limiter::advance`].
    #[serde(default)]
    last: Vec<u64>,
}

impl Limiter {
    pub fn new() -> Self {
        Self::default()
    }

    fn bucket_of(now: UnixMillis, policy: &Policy) -> u64 {
        now.0 / policy.bucket_ms.max(1)
    }

    /// Moves the window so that its newest bucket is the one of `now` (never backwards).
    fn advance(&mut self, now: UnixMillis, policy: &Policy) {
        let slots = usize::try_from(policy.buckets).unwrap_or(usize::MAX).saturating_add(1);
        if self.counts.len() != slots {
            // A new limiter, or one persisted under another shape: start afresh rather than
            // reinterpret counts whose buckets meant something else.
            self.counts = vec![0; slots];
            self.last = vec![0; slots];
            self.newest = Self::bucket_of(now, policy);
            return;
        }
        if self.last.len() != slots {
            // State from before `last` was kept: each non-empty bucket is taken to have had an
            // admission at the latest instant possible (conservative): its final millisecond,
            // or now if that is earlier, since nothing was admitted after it was persisted.
            self.last = (0..slots)
                .zip(self.counts.iter())
                .map(|(i, &c)| {
                    // Slot i holds bucket newest − N + i, which ends where bucket
                    // newest − N + i + 1 begins.
                    let next = self
                        .newest
                        .saturating_add(u64::try_from(i).unwrap_or(u64::MAX))
                        .saturating_add(1)
                        .saturating_sub(u64::from(policy.buckets));
                    if c == 0 {
                        0
                    } else {
                        next.saturating_mul(policy.bucket_ms).saturating_sub(1).min(now.0)
                    }
                })
                .collect();
        }
        let bucket = Self::bucket_of(now, policy);
        if bucket <= self.newest {
            return;
        }
        let shift = usize::try_from(bucket - self.newest).unwrap_or(usize::MAX);
        if shift >= slots {
            self.counts.iter_mut().for_each(|c| *c = 0);
            self.last.iter_mut().for_each(|l| *l = 0);
        } else {
            self.counts.rotate_left(shift);
            self.last.rotate_left(shift);
            let len = self.counts.len();
            self.counts.iter_mut().skip(len - shift).for_each(|c| *c = 0);
            self.last.iter_mut().skip(len - shift).for_each(|l| *l = 0);
        }
        self.newest = bucket;
    }

    /// The instant (ms) from which bucket `i` of `counts` (0 = oldest) is no longer counted:
    /// `last + W`, or when it leaves the kept buckets if that were earlier (it never is for a
    /// `last` inside the bucket; the minimum keeps the figure honest whatever was persisted).
    fn stops_counting_at(&self, i: usize, policy: &Policy) -> u64 {
        // Bucket index j = newest − N + i leaves once the newest bucket is j + N + 1,
        // that is at (newest + i + 1)·B.
        let index = self.newest.saturating_add(u64::try_from(i).unwrap_or(u64::MAX)).saturating_add(1);
        let leaves = index.saturating_mul(policy.bucket_ms);
        let last = self.last.get(i).copied().unwrap_or(u64::MAX);
        last.saturating_add(policy.window_ms()).min(leaves)
    }

    /// The buckets counted at `now`: non-empty, and with their latest admission inside the
    /// window ending at `now`. Yields (the instant it stops being counted, its count).
    fn counted(&self, now: UnixMillis, policy: &Policy) -> impl Iterator<Item = (u64, u32)> + '_ {
        let policy = *policy;
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(move |(i, &c)| (self.stops_counting_at(i, &policy), c))
            .filter(move |&(until, _)| until > now.0)
    }

    fn total(&self, now: UnixMillis, policy: &Policy) -> u64 {
        self.counted(now, policy).map(|(_, c)| u64::from(c)).sum()
    }

    /// The figures at `now` without counting a request.
    pub fn peek(&mut self, now: UnixMillis, policy: &Policy) -> Decision {
        let Some(quota) = policy.quota else { return Decision::UNLIMITED };
        self.advance(now, policy);
        self.figures(now, policy, quota, true)
    }

    /// Decides a request at `now`, counting it when admitted.
    pub fn decide(&mut self, now: UnixMillis, policy: &Policy) -> Decision {
        let Some(quota) = policy.quota else { return Decision::UNLIMITED };
        self.advance(now, policy);
        let admitted = self.total(now, policy) < u64::from(quota);
        if admitted {
            if let Some(newest) = self.counts.last_mut() {
                *newest = newest.saturating_add(1);
            }
            if let Some(last) = self.last.last_mut() {
                *last = (*last).max(now.0);
            }
        }
        self.figures(now, policy, quota, admitted)
    }

    fn figures(&self, now: UnixMillis, policy: &Policy, quota: u32, admitted: bool) -> Decision {
        let total = self.total(now, policy);
        let remaining = u32::try_from(u64::from(quota).saturating_sub(total)).unwrap_or(u32::MAX);
        let secs_until = |at_ms: u64| at_ms.saturating_sub(now.0).div_ceil(1000);
        // The counted buckets in the order they stop counting.
        let mut leaving: Vec<(u64, u32)> = self.counted(now, policy).collect();
        leaving.sort_unstable();
        // `remaining` grows when the first counted bucket stops counting.
        let reset_secs = leaving.first().map_or(0, |&(until, _)| secs_until(until));
        let retry_after_secs = if admitted {
            None
        } else {
            // The earliest moment the counted total drops below the quota: drop the buckets in
            // the order they stop counting until what is left admits one more request.
            let mut left = total;
            let mut at = None;
            for &(until, c) in &leaving {
                left = left.saturating_sub(u64::from(c));
                if left < u64::from(quota) {
                    at = Some(until);
                    break;
                }
            }
            // A quota of zero never admits: say "a whole window", the longest honest answer.
            // The bound only bites when the clock went backwards (a `last` later than `now`).
            Some(at.map_or(policy.window_secs(), secs_until).clamp(1, policy.window_secs().max(1)))
        };
        Decision { admitted, limit: Some(quota), remaining, reset_secs, retry_after_secs }
    }
}

/// The endpoint classes limited per client address (IPv4, or IPv6 /64: `net::client_key`),
/// before any account is known: each has its own window and quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpClass {
    /// Login, the second factor, passkey sign-in, service tokens: per minute.
    Login,
    /// Sign-up and account activation: per hour.
    Signup,
    /// Refresh: per minute.
    Refresh,
    /// Forgot/reset password and email verification: codes sent by email, tried by code; per hour.
    Recovery,
    /// `GET /health`: public, and each miss of its cache costs an origin call; per minute.
    Health,
}

/// The per-address quotas the operator configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpQuotas {
    pub login_per_minute: u32,
    pub signup_per_hour: u32,
    pub refresh_per_minute: u32,
    pub recovery_per_hour: u32,
    pub health_per_minute: u32,
}

impl IpClass {
    /// The class's throttle key in the address's gate.
    pub fn name(self) -> &'static str {
        match self {
            IpClass::Login => "ip-login",
            IpClass::Signup => "ip-signup",
            IpClass::Refresh => "ip-refresh",
            IpClass::Recovery => "ip-recovery",
            IpClass::Health => "ip-health",
        }
    }

    /// The class's window in seconds and its quota in that window.
    pub fn window(self, quotas: &IpQuotas) -> (u64, u32) {
        match self {
            IpClass::Login => (60, quotas.login_per_minute),
            IpClass::Signup => (3600, quotas.signup_per_hour),
            IpClass::Refresh => (60, quotas.refresh_per_minute),
            IpClass::Recovery => (3600, quotas.recovery_per_hour),
            IpClass::Health => (60, quotas.health_per_minute),
        }
    }
}

#[cfg(test)]
mod ip_class_tests {
    use super::*;

    #[test]
    fn each_class_has_its_own_key_window_and_quota() {
        let quotas = IpQuotas {
            login_per_minute: 1,
            signup_per_hour: 2,
            refresh_per_minute: 3,
            recovery_per_hour: 4,
            health_per_minute: 5,
        };
        let all = [IpClass::Login, IpClass::Signup, IpClass::Refresh, IpClass::Recovery, IpClass::Health];
        let windows: Vec<(u64, u32)> = all.iter().map(|c| c.window(&quotas)).collect();
        assert_eq!(windows, vec![(60, 1), (3600, 2), (60, 3), (3600, 4), (60, 5)]);
        let mut names: Vec<&str> = all.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "two classes would share one counter");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60_000;

    fn at(ms: u64) -> UnixMillis {
        UnixMillis(ms)
    }

    #[test]
    fn a_hundred_are_admitted_then_the_next_is_refused_with_the_exact_wait() {
        let policy = Policy::hourly(Some(100));
        let mut limiter = Limiter::new();
        let start = 1_700_000_000_000 - (1_700_000_000_000 % MIN) + 15_000; // 15 s into a minute
        for i in 0..100u32 {
            let d = limiter.decide(at(start + u64::from(i)), &policy);
            assert!(d.admitted, "request {i}");
            assert_eq!(d.remaining, 99 - i);
            assert_eq!(d.limit, Some(100));
        }
        let refused = limiter.decide(at(start + 200), &policy);
        assert!(!refused.admitted);
        assert_eq!(refused.remaining, 0);
        // Everything sits in one bucket whose latest admission was at 99 ms: it is counted
        // until an hour after that, 3599.899 s after this refusal, rounded up to whole seconds.
        assert_eq!(refused.retry_after_secs, Some(3600));
        assert_eq!(refused.reset_secs, 3600);
        let mut retry = limiter.clone();
        assert!(!retry.decide(at(start + 200 + 3599 * 1000), &policy).admitted);
        assert!(retry.decide(at(start + 200 + 3600 * 1000), &policy).admitted);
    }

    #[test]
    fn twenty_one_signups_from_one_address_wait_at_most_the_hour() {
        // The per-IP signup throttle: 20 per rolling hour in six buckets. It used to answer
        // up to W + B (4016 s was seen); now the wait is the hour since the latest signup.
        let policy = Policy::rolling(3600, 6, Some(20));
        let mut limiter = Limiter::new();
        let start = 1_700_000_000_000 + 599_000;
        for i in 0..20u64 {
            assert!(limiter.decide(at(start + i * 100), &policy).admitted);
        }
        let refused = limiter.decide(at(start + 2_500), &policy);
        assert!(!refused.admitted);
        // The latest admission was at +1.9 s: counted until +3601.9 s, 3599.4 s from now.
        assert_eq!(refused.retry_after_secs, Some(3600));
        let mut later = limiter.clone();
        assert!(later.decide(at(start + 2_500 + 3_600_000), &policy).admitted);
    }

    #[test]
    fn state_persisted_without_last_is_read_conservatively() {
        let policy = Policy::rolling(60, 6, Some(2));
        // Two admissions in bucket 1 (10 s to 20 s), as an older release persisted them.
        let mut old: Limiter = serde_json::from_str(r#"{"newest":1,"counts":[0,0,0,0,0,0,2]}"#).unwrap();
        let refused = old.decide(at(15_000), &policy);
        assert!(!refused.admitted);
        // Taken as admitted at 15 s (the bucket runs to 19.999 s, but it is 15 s now), so
        // counted until 75 s.
        assert_eq!(refused.retry_after_secs, Some(60));
        assert!(!old.clone().decide(at(74_999), &policy).admitted);
        assert!(old.clone().decide(at(75_000), &policy).admitted);
        // Read later, the bucket is taken to end at its final millisecond.
        let mut later: Limiter = serde_json::from_str(r#"{"newest":1,"counts":[0,0,0,0,0,0,2]}"#).unwrap();
        let refused = later.decide(at(30_000), &policy);
        assert!(!refused.admitted);
        assert_eq!(refused.retry_after_secs, Some(50));
        assert!(!later.clone().decide(at(79_998), &policy).admitted);
        assert!(later.decide(at(79_999), &policy).admitted);
    }

    #[test]
    fn vip_is_unlimited_and_uncounted() {
        let mut limiter = Limiter::new();
        for _ in 0..10_000 {
            assert!(limiter.decide(at(0), &Policy::hourly(None)).admitted);
        }
        assert_eq!(limiter, Limiter::new());
    }

    #[test]
    fn a_quota_change_applies_to_the_next_request() {
        let mut limiter = Limiter::new();
        for _ in 0..100 {
            assert!(limiter.decide(at(MIN), &Policy::hourly(Some(100))).admitted);
        }
        assert!(!limiter.decide(at(MIN), &Policy::hourly(Some(100))).admitted);
        let upgraded = limiter.decide(at(MIN), &Policy::hourly(Some(5000)));
        assert!(upgraded.admitted);
        assert_eq!(upgraded.remaining, 4899);
        assert!(!limiter.decide(at(MIN), &Policy::hourly(Some(100))).admitted, "and a downgrade likewise");
    }

    #[test]
    fn time_going_backwards_counts_in_the_newest_bucket() {
        let policy = Policy::rolling(60, 6, Some(2));
        let mut limiter = Limiter::new();
        assert!(limiter.decide(at(100_000), &policy).admitted);
        assert!(limiter.decide(at(50_000), &policy).admitted);
        assert!(!limiter.decide(at(0), &policy).admitted);
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let policy = Policy::rolling(60, 6, Some(5));
        let mut limiter = Limiter::new();
        limiter.decide(at(12_345), &policy);
        let json = serde_json::to_string(&limiter).unwrap();
        assert_eq!(json, r#"{"newest":1,"counts":[0,0,0,0,0,0,1],"last":[0,0,0,0,0,0,12345]}"#);
        assert_eq!(serde_json::from_str::<Limiter>(&json).unwrap(), limiter);
    }

    /// The naive reference: every admitted timestamp, checked directly.
    fn admitted_in(admitted: &[u64], from: u64, to_exclusive: u64) -> usize {
        admitted.iter().filter(|&&t| t >= from && t < to_exclusive).count()
    }

    /// The reference of what the limiter counts at `now`: the admissions of the kept buckets
    /// (`⌊now/B⌋ − N ..= ⌊now/B⌋`) whose bucket's latest admission is later than `now − W`.
    fn counted_in(admitted: &[u64], now: u64, bucket_ms: u64, window: u64) -> usize {
        let first = now - now % bucket_ms - window;
        let kept: Vec<u64> = admitted.iter().copied().filter(|&t| t >= first && t <= now).collect();
        kept.iter()
            .filter(|&&t| {
                let latest =
                    kept.iter().filter(|&&u| u / bucket_ms == t / bucket_ms).max().copied().unwrap_or(t);
                latest + window > now
            })
            .count()
    }

    #[derive(Debug, Clone)]
    enum Step {
        Request(u64),
        SetQuota(u32),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let gap = prop_oneof![4 => 0u64..2_000, 2 => 0u64..15_000, 1 => 0u64..200_000];
        prop::collection::vec(
            prop_oneof![12 => gap.prop_map(Step::Request), 1 => (1u32..20).prop_map(Step::SetQuota)],
            1..250,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn matches_the_reference_over_random_arrivals(initial in 1u32..20, steps in steps(), buckets in 1u32..12) {
            let window_ms = 60_000;
            let policy = |q| Policy { bucket_ms: window_ms / u64::from(buckets), buckets, quota: Some(q) };
            let bucket_ms = policy(1).bucket_ms;
            let window = policy(1).window_ms();
            let mut limiter = Limiter::new();
            let mut quota = initial;
            let mut now = 1_000_000u64;
            // Admitted timestamps since the last quota change (the invariant is per quota).
            let mut segment: Vec<u64> = Vec::new();
            let mut all: Vec<u64> = Vec::new();
            for step in steps {
                match step {
                    Step::SetQuota(q) => { quota = q; segment.clear(); }
                    Step::Request(gap) => {
                        now += gap;
                        let before = limiter.clone();
                        let d = limiter.decide(at(now), &policy(quota));
                        if d.admitted {
                            segment.push(now);
                            all.push(now);
                            // (1) No window of length W holding this request exceeds the quota
                            // (windows ending here are the only ones that changed).
                            prop_assert!(admitted_in(&segment, now.saturating_sub(window - 1), now + 1) <= quota as usize);
                            prop_assert_eq!(d.remaining as usize + counted_in(&all, now, bucket_ms, window), quota as usize);
                        } else {
                            // (2) Every refusal is justified within one bucket's width.
                            let span = admitted_in(&all, now.saturating_sub(window + bucket_ms - 1), now + 1);
                            prop_assert!(span >= quota as usize, "refused at {} with {} in the extended window", now, span);
                            // (3) Retry-After is the real wait: not a second earlier, and then admitted.
                            let wait = d.retry_after_secs.unwrap() * 1000;
                            let mut later = before.clone();
                            prop_assert!(later.decide(at(now + wait), &policy(quota)).admitted);
                            if wait >= 1000 {
                                let mut earlier = before.clone();
                                prop_assert!(!earlier.decide(at(now + wait - 1000), &policy(quota)).admitted);
                            }
                        }
                        prop_assert_eq!(limiter.counts.len(), buckets as usize + 1, "constant memory");
                    }
                }
            }
        }
    }

    /// Checks a run of arrivals against the production shapes: on every refusal the wait is
    /// positive and at most the window, and a retry after it is admitted (when nothing else
    /// arrives); every admission keeps every window within the quota.
    fn retry_after_within_the_window(policy: Policy, gaps: Vec<u64>) -> Result<(), TestCaseError> {
        let quota = policy.quota.unwrap_or(0) as usize;
        let window = policy.window_ms();
        let mut limiter = Limiter::new();
        let mut now = 1_700_000_000_000u64;
        let mut admitted: Vec<u64> = Vec::new();
        for gap in gaps {
            now += gap;
            let before = limiter.clone();
            let d = limiter.decide(at(now), &policy);
            if d.admitted {
                admitted.push(now);
                prop_assert!(admitted_in(&admitted, now.saturating_sub(window - 1), now + 1) <= quota);
            } else {
                let wait = d.retry_after_secs.unwrap();
                prop_assert!(
                    wait > 0 && wait <= policy.window_secs(),
                    "Retry-After {} for a {} s window",
                    wait,
                    policy.window_secs()
                );
                let mut retry = before.clone();
                prop_assert!(retry.decide(at(now + wait * 1000), &policy).admitted);
            }
        }
        Ok(())
    }

    fn gaps(window_ms: u64) -> impl Strategy<Value = Vec<u64>> {
        let gap = prop_oneof![
            6 => 0u64..2_000,
            3 => 0u64..(window_ms / 60),
            2 => 0u64..(window_ms / 6),
            1 => 0u64..(window_ms * 2),
        ];
        prop::collection::vec(gap, 1..200)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn retry_after_never_exceeds_the_hourly_window(quota in 1u32..30, gaps in gaps(3_600_000)) {
            retry_after_within_the_window(Policy::hourly(Some(quota)), gaps)?;
        }

        #[test]
        fn retry_after_never_exceeds_the_per_ip_window(
            quota in 1u32..30,
            window_secs in prop_oneof![Just(60u64), Just(3600u64)],
            gaps in gaps(3_600_000),
        ) {
            // The per-IP throttles: six buckets over a minute (login, refresh) or an hour (signup).
            retry_after_within_the_window(Policy::rolling(window_secs, 6, Some(quota)), gaps)?;
        }
    }
}
