//! The rolling-window rate limiter: exact quotas over any rolling window, in constant memory.
//!
//! Time is cut into buckets of width `B` aligned on multiples of `B`; a window of length
//! `W = N·B` is covered by the `N + 1` most recent buckets, whose counts are all the state a
//! user needs. A request at time `t`, in bucket `k = ⌊t/B⌋`, is admitted iff the buckets
//! `k − N ..= k` together hold fewer than `quota` admitted requests.
//!
//! **Invariant: in any window `[a, a + W)`, at most `quota` requests are admitted.** Suppose a
//! window held more, and let `t*` be the last admission in it. Every other admission `τ` in it
//! came earlier, with `τ ≥ a > t* − W`, so `τ/B > t*/B − N` and `⌊τ/B⌋ ≥ ⌊t*/B⌋ − N`: all of
//! them sat in the buckets counted when `t*` was decided, and `t*` was admitted only if they
//! numbered fewer than `quota`. Counting the oldest bucket whole, though part of it may lie
//! outside every window ending at `t`, is what makes this hold for *any* window.
//!
//! **False refusals are bounded by one bucket:** a request at `t` is refused only if at least
//! `quota` requests were admitted in `[(k − N)·B, t]`, a span inside `(t − W − B, t]`.
//!
//! The state does not depend on the quota (only [`Limiter::decide`] reads it), so a tier change
//! takes effect on the next request. Time is an argument; a `now` older than the newest bucket
//! (clock skew between calls) is treated as falling in the newest bucket.

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

/// One user's counts: the `N + 1` most recent buckets, oldest first, and the index of the
/// newest. Serialises compactly, for a Durable Object to persist after each decision.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limiter {
    /// `⌊t/B⌋` of the newest bucket.
    newest: u64,
    /// Counts of buckets `newest − N ..= newest`, oldest first.
    counts: Vec<u32>,
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
            self.newest = Self::bucket_of(now, policy);
            return;
        }
        let bucket = Self::bucket_of(now, policy);
        if bucket <= self.newest {
            return;
        }
        let shift = usize::try_from(bucket - self.newest).unwrap_or(usize::MAX);
        if shift >= slots {
            self.counts.iter_mut().for_each(|c| *c = 0);
        } else {
            self.counts.rotate_left(shift);
            let len = self.counts.len();
            self.counts.iter_mut().skip(len - shift).for_each(|c| *c = 0);
        }
        self.newest = bucket;
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The instant (ms) at which bucket `i` of `counts` (0 = oldest) stops being counted.
    fn leaves_at(&self, i: usize, policy: &Policy) -> u64 {
        // Bucket index j = newest − N + i leaves once the newest bucket is j + N + 1,
        // that is at (newest + i + 1)·B.
        let index = self.newest.saturating_add(u64::try_from(i).unwrap_or(u64::MAX)).saturating_add(1);
        index.saturating_mul(policy.bucket_ms)
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
        let admitted = self.total() < u64::from(quota);
        if admitted {
            if let Some(newest) = self.counts.last_mut() {
                *newest = newest.saturating_add(1);
            }
        }
        self.figures(now, policy, quota, admitted)
    }

    fn figures(&self, now: UnixMillis, policy: &Policy, quota: u32, admitted: bool) -> Decision {
        let now_ms = now.0.max(self.newest.saturating_mul(policy.bucket_ms));
        let total = self.total();
        let remaining = u32::try_from(u64::from(quota).saturating_sub(total)).unwrap_or(u32::MAX);
        let secs_until = |at_ms: u64| at_ms.saturating_sub(now.0).div_ceil(1000);
        // `remaining` grows when the oldest non-empty bucket leaves.
        let reset_secs = self
            .counts
            .iter()
            .position(|&c| c > 0)
            .map_or(0, |i| secs_until(self.leaves_at(i, policy).max(now_ms)));
        let retry_after_secs = if admitted {
            None
        } else {
            // The earliest moment the counted total drops below the quota: drop the oldest
            // buckets one by one until what is left admits one more request.
            let mut left = total;
            let mut at = None;
            for (i, &c) in self.counts.iter().enumerate() {
                left = left.saturating_sub(u64::from(c));
                if left < u64::from(quota) {
                    at = Some(self.leaves_at(i, policy));
                    break;
                }
            }
            // A quota of zero never admits: say "a whole window", the longest honest answer.
            Some(at.map_or(policy.window_secs(), secs_until).max(1))
        };
        Decision { admitted, limit: Some(quota), remaining, reset_secs, retry_after_secs }
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
        // Everything sits in one bucket, counted until the window has moved 61 buckets on
        // (the one-bucket price of exactness): 60 min 45 s after the first request, minus the
        // 200 ms elapsed, rounded up to whole seconds.
        assert_eq!(refused.retry_after_secs, Some(3645));
        assert_eq!(refused.reset_secs, 3645);
        let mut retry = limiter.clone();
        assert!(!retry.decide(at(start + 200 + 3644 * 1000), &policy).admitted);
        assert!(retry.decide(at(start + 200 + 3645 * 1000), &policy).admitted);
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
        assert_eq!(json, r#"{"newest":1,"counts":[0,0,0,0,0,0,1]}"#);
        assert_eq!(serde_json::from_str::<Limiter>(&json).unwrap(), limiter);
    }

    /// The naive reference: every admitted timestamp, checked directly.
    fn admitted_in(admitted: &[u64], from: u64, to_exclusive: u64) -> usize {
        admitted.iter().filter(|&&t| t >= from && t < to_exclusive).count()
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
                            prop_assert_eq!(d.remaining as usize + admitted_in(&all, now - now % bucket_ms - window, now + 1), quota as usize);
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
}
