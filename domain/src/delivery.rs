//! When the outbox tries a message again. Every message is stored before any attempt; an
//! attempt that fails (the provider is down, or answered a temporary error) is retried after a
//! delay that doubles from one second up to five minutes, for a day. A message still unsent
//! after a day, or refused permanently by the provider (an invalid address), is marked failed
//! and kept for the operator: it is never silently dropped.
//!
//! A sender claims a message for [`LEASE_MS`] before it tries it, so two dispatchers (several
//! origins on one database) never try the same message at once; the lease is longer than any
//! attempt may take ([`ATTEMPT_TIMEOUT_MS`]).

use crate::time::UnixMillis;

pub const FIRST_DELAY_MS: u64 = 1_000;
pub const MAX_DELAY_MS: u64 = 5 * 60_000;
/// How long a message keeps being retried.
pub const GIVE_UP_AFTER_MS: u64 = 24 * 3_600_000;
/// The longest one attempt may take before it counts as failed.
pub const ATTEMPT_TIMEOUT_MS: u64 = 15_000;
/// How long a claim keeps other dispatchers off a message.
pub const LEASE_MS: u64 = 60_000;
/// A new message is first tried by the origin that stored it, at once; the periodic sweep
/// (of any origin) takes it only this long after, should that first attempt never happen
/// (a crash). So one origin's sweep does not race another's first attempt.
pub const SWEEP_GRACE_MS: u64 = 5_000;

/// What happens after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(UnixMillis),
    GiveUp,
}

/// The decision after the `attempts`-th failed attempt (1 for the first) of a message created
/// at `created_at`: the next attempt's time, or giving up.
pub fn after_failure(
    attempts: u32,
    created_at: UnixMillis,
    now: UnixMillis,
    permanent: bool,
) -> AfterFailure {
    if permanent {
        return AfterFailure::GiveUp;
    }
    let exponent = attempts.saturating_sub(1).min(20);
    let delay = FIRST_DELAY_MS.saturating_mul(1u64 << exponent).min(MAX_DELAY_MS);
    let next = now.saturating_add_ms(delay);
    if next.0 > created_at.0.saturating_add(GIVE_UP_AFTER_MS) {
        AfterFailure::GiveUp
    } else {
        AfterFailure::RetryAt(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_one_second_up_to_five_minutes() {
        let start = UnixMillis(1_000_000);
        let delays: Vec<u64> = (1..=12)
            .map(|n| match after_failure(n, start, start, false) {
                AfterFailure::RetryAt(t) => t.0 - start.0,
                AfterFailure::GiveUp => 0,
            })
            .collect();
        assert_eq!(
            delays,
            [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000, 300_000]
        );
        assert_eq!(
            after_failure(u32::MAX, start, start, false),
            AfterFailure::RetryAt(UnixMillis(start.0 + MAX_DELAY_MS))
        );
    }

    #[test]
    fn a_message_is_given_up_after_a_day_or_at_once_when_refused_for_good() {
        let created = UnixMillis(0);
        let late = UnixMillis(GIVE_UP_AFTER_MS - 1_000);
        assert_eq!(
            after_failure(1, created, late, false),
            AfterFailure::RetryAt(UnixMillis(GIVE_UP_AFTER_MS))
        );
        assert_eq!(after_failure(2, created, late, false), AfterFailure::GiveUp);
        assert_eq!(after_failure(1, created, created, true), AfterFailure::GiveUp);
        const { assert!(LEASE_MS > ATTEMPT_TIMEOUT_MS) };
    }
}
