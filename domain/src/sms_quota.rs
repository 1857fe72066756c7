//! How many texts SMS enrolment may send: a defence against SMS pumping (toll fraud), where
//! an attacker makes a service text premium-rate numbers it shares revenue on. Each enrolment
//! text counts against the destination number and against the account, per UTC day; past
//! either limit the request is refused until the day ends.
//!
//! The limits are small: a person enrolling their phone needs one text, two or three if a code
//! goes astray, while a pumping run needs thousands.

use crate::problem::{Problem, ProblemKind};
use crate::time::UnixMillis;

/// Enrolment texts one destination number may receive a day, whichever accounts ask.
pub const TEXTS_PER_NUMBER_PER_DAY: u32 = 3;
/// Enrolment texts one account may have sent a day, whichever numbers.
pub const TEXTS_PER_ACCOUNT_PER_DAY: u32 = 5;

const DAY_MS: u64 = 86_400_000;

/// Which limit a text would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsLimit {
    PerNumber,
    PerAccount,
}

impl SmsLimit {
    /// The limit's stable name, for the problem's `limit` member.
    pub fn name(self) -> &'static str {
        match self {
            SmsLimit::PerNumber => "sms_per_number_per_day",
            SmsLimit::PerAccount => "sms_per_account_per_day",
        }
    }

    pub fn max(self) -> u32 {
        match self {
            SmsLimit::PerNumber => TEXTS_PER_NUMBER_PER_DAY,
            SmsLimit::PerAccount => TEXTS_PER_ACCOUNT_PER_DAY,
        }
    }

    fn what(self) -> &'static str {
        match self {
            SmsLimit::PerNumber => "to one phone number",
            SmsLimit::PerAccount => "for one account",
        }
    }
}

/// The UTC day `now` falls in (days since the Unix epoch): the counters' period.
pub fn day(now: UnixMillis) -> u64 {
    now.0 / DAY_MS
}

/// Seconds until the next UTC day, when the counters start again (at least 1).
pub fn retry_after_secs(now: UnixMillis) -> u64 {
    let next_day_ms = (day(now) + 1) * DAY_MS;
    (next_day_ms - now.0).div_ceil(1000).max(1)
}

/// The 429 for a text past `limit`: names the limit, its maximum and the wait.
pub fn refusal(limit: SmsLimit, now: UnixMillis) -> Problem {
    let wait = retry_after_secs(now);
    Problem::new(
        ProblemKind::RateLimited,
        format!("at most {} enrolment texts a day {}; retry in {wait} s", limit.max(), limit.what()),
    )
    .with("limit", limit.name())
    .with("max", limit.max())
    .with("retry_after", wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_run_per_utc_day_and_the_wait_ends_at_midnight() {
        let midnight = UnixMillis(20_000 * DAY_MS);
        assert_eq!(day(midnight), 20_000);
        assert_eq!(day(UnixMillis(midnight.0 - 1)), 19_999);
        assert_eq!(retry_after_secs(midnight), 86_400);
        assert_eq!(retry_after_secs(UnixMillis(midnight.0 + DAY_MS - 1)), 1);
        assert_eq!(retry_after_secs(UnixMillis(midnight.0 + DAY_MS - 1500)), 2);
    }

    #[test]
    fn a_refusal_names_the_limit_and_the_wait() {
        let now = UnixMillis(20_000 * DAY_MS + 86_000_000);
        let p = refusal(SmsLimit::PerNumber, now);
        assert_eq!(p.status, 429);
        assert_eq!(p.type_uri, "urn:problem-type:user-management:rate-limited");
        assert_eq!(p.extensions["limit"], "sms_per_number_per_day");
        assert_eq!(p.extensions["max"], 3);
        assert_eq!(p.extensions["retry_after"], 400);
        assert_eq!(
            p.detail.as_deref(),
            Some("at most 3 enrolment texts a day to one phone number; retry in 400 s")
        );
        assert_eq!(refusal(SmsLimit::PerAccount, now).extensions["max"], 5);
    }
}
