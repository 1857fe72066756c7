//! Softlock, not lockout: failed logins slow further attempts progressively instead of locking
//! the account, so an attacker cannot lock the owner out.
//!
//! Each counter (the origin keeps one per account, one per account and network, and one per
//! account and known device) allows three failures freely; the fourth consecutive failure asks
//! for a 2 s pause, and each further one doubles it up to 15 minutes. An attempt made while a
//! pause runs is itself a failure (it is refused without checking the password), so hammering
//! only lengthens the pause. At most 100 failures a day are counted per counter (NIST SP
//! 800-63B); past that the counter refuses until the day is over. A success resets the counter.

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

pub const FREE_FAILURES: u32 = 3;
pub const MAX_DELAY_SECS: u64 = 15 * 60;
pub const MAX_FAILURES_PER_DAY: u32 = 100;
const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCounter {
    pub consecutive: u32,
    pub last_failure: Option<UnixMillis>,
    pub day_started: Option<UnixMillis>,
    pub today: u32,
}

/// The pause after `consecutive` failures, in seconds.
pub fn delay_secs(consecutive: u32) -> u64 {
    if consecutive <= FREE_FAILURES {
        return 0;
    }
    let doublings = (consecutive - FREE_FAILURES - 1).min(20);
    (2u64 << doublings).min(MAX_DELAY_SECS)
}

impl FailureCounter {
    fn day_over(&self, now: UnixMillis) -> bool {
        self.day_started.is_none_or(|start| now.0.saturating_sub(start.0) >= DAY_MS)
    }

    /// `Err(seconds)` while an attempt must wait.
    pub fn check(&self, now: UnixMillis) -> Result<(), u64> {
        if !self.day_over(now) && self.today >= MAX_FAILURES_PER_DAY {
            let ends = self.day_started.map_or(0, |s| s.0 + DAY_MS);
            return Err(ends.saturating_sub(now.0).div_ceil(1000).max(1));
        }
        // The free failures never wait, even when a concurrent attempt recorded its failure
        // with a slightly later clock than this one's (`last` after `now`).
        let delay = delay_secs(self.consecutive);
        if delay == 0 {
            return Ok(());
        }
        let Some(last) = self.last_failure else { return Ok(()) };
        let until = last.0.saturating_add(delay * 1000);
        if now.0 < until {
            Err((until - now.0).div_ceil(1000).max(1))
        } else {
            Ok(())
        }
    }

    pub fn record_failure(&mut self, now: UnixMillis) {
        if self.day_over(now) {
            self.day_started = Some(now);
            self.today = 0;
        }
        self.consecutive = self.consecutive.saturating_add(1);
        self.today = self.today.saturating_add(1);
        // Concurrent attempts may arrive with clocks a little out of order: keep the latest.
        self.last_failure = Some(self.last_failure.map_or(now, |last| last.max(now)));
    }

    pub fn record_success(&mut self) {
        *self = Self::default();
    }

    /// Takes back one failure recorded for an attempt that turned out not to be one (its
    /// secret was right, or it could not be checked). Failures are counted before the check,
    /// so that parallel attempts cannot all pass a check made before any of them failed.
    pub fn undo_failure(&mut self) {
        self.consecutive = self.consecutive.saturating_sub(1);
        self.today = self.today.saturating_sub(1);
        if self.consecutive == 0 {
            self.last_failure = None;
        }
    }
}

/// Wrong second-factor codes allowed per account in an hour, whatever the challenge.
pub const MFA_MAX_FAILURES_PER_HOUR: u32 = 10;
const HOUR_MS: u64 = 3_600_000;

/// Wrong second-factor codes of one account. Counted per account, not per challenge, so that
/// a fresh challenge (a new password login) brings no fresh tries, and a correct password does
/// not reset it: only the hour running out does. The window starts at the first failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaFailures {
    pub window_started: Option<UnixMillis>,
    pub count: u32,
}

impl MfaFailures {
    fn window_over(&self, now: UnixMillis) -> bool {
        self.window_started.is_none_or(|start| now.0.saturating_sub(start.0) >= HOUR_MS)
    }

    /// `Err(seconds)` while the second factor is softlocked.
    pub fn check(&self, now: UnixMillis) -> Result<(), u64> {
        match self.window_started {
            Some(start) if !self.window_over(now) && self.count >= MFA_MAX_FAILURES_PER_HOUR => {
                Err((start.0 + HOUR_MS).saturating_sub(now.0).div_ceil(1000).max(1))
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&mut self, now: UnixMillis) {
        if self.window_over(now) {
            self.window_started = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
    }

    /// Takes back a try counted before a code that proved right.
    pub fn undo_failure(&mut self) {
        self.count = self.count.saturating_sub(1);
    }
}

/// Which softlock counters a login (or a password check) counts against: one per account, one
/// per account and network, and one per account and known device. A device the server
/// recognises is held back only by its own failures, so failures from elsewhere cannot lock
/// the owner out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKeys {
    /// The counters' state keys (`lock:acct:…`, `lock:net:…`, `lock:dev:…`).
    pub keys: Vec<String>,
    /// Which of `keys` decide whether this attempt waits.
    pub checked: Vec<bool>,
    /// Which of `keys` count the attempt before its check (account, network): parallel guesses
    /// cannot all pass them. A known device's counter counts after the check instead: its token
    /// came from a successful login, and the owner's parallel logins from one device (an app
    /// and a browser tab) must not hold each other back.
    pub ahead: Vec<bool>,
}

impl LockKeys {
    /// The counters of an attempt on the account `account_key` (an opaque index of its email),
    /// from `network` (the address's network), with a `device` the server recognised.
    pub fn of(account_key: &str, network: Option<&str>, device: Option<&str>) -> Self {
        use sha2::{Digest, Sha256};
        let mut keys = vec![format!("lock:acct:{account_key}")];
        if let Some(net) = network {
            keys.push(format!("lock:net:{account_key}:{net}"));
        }
        if let Some(device) = device {
            keys.push(format!("lock:dev:{account_key}:{}", hex::encode(Sha256::digest(device.as_bytes()))));
        }
        let checked = keys.iter().map(|k| k.starts_with("lock:dev:") == device.is_some()).collect();
        let ahead = keys.iter().map(|k| !k.starts_with("lock:dev:")).collect();
        Self { keys, checked, ahead }
    }

    /// Whether an attempt with these counters' values waits (a checked counter is paused).
    pub fn waiting(&self, counters: &[FailureCounter], now: UnixMillis) -> bool {
        counters.iter().zip(&self.checked).any(|(c, checked)| *checked && c.check(now).is_err())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_keys_check_the_device_alone_when_it_is_known() {
        let known = LockKeys::of("k", Some("net"), Some("dev"));
        assert_eq!(known.keys.len(), 3);
        assert_eq!(known.checked, vec![false, false, true]);
        assert_eq!(known.ahead, vec![true, true, false], "a known device counts after its check");
        let unknown = LockKeys::of("k", Some("net"), None);
        assert_eq!(unknown.keys, vec!["lock:acct:k".to_owned(), "lock:net:k:net".to_owned()]);
        assert_eq!(unknown.checked, vec![true, true]);
        assert_eq!(unknown.ahead, vec![true, true]);
        // A password check outside a login: the account's counter alone.
        let account = LockKeys::of("k", None, None);
        assert_eq!(
            (account.keys.len(), account.checked.clone(), account.ahead.clone()),
            (1, vec![true], vec![true])
        );
    }

    #[test]
    fn a_paused_checked_counter_makes_the_attempt_wait() {
        let now = UnixMillis(1_000_000);
        let mut paused = FailureCounter::default();
        for _ in 0..(FREE_FAILURES + 1) {
            paused.record_failure(now);
        }
        let known = LockKeys::of("k", Some("net"), Some("dev"));
        // The account's and the network's counters are paused, the device's is not: no wait.
        let calm = FailureCounter::default();
        assert!(!known.waiting(&[paused.clone(), paused.clone(), calm.clone()], now));
        assert!(known.waiting(&[calm.clone(), calm.clone(), paused.clone()], now));
        let unknown = LockKeys::of("k", Some("net"), None);
        assert!(unknown.waiting(&[calm, paused], now));
    }

    use super::*;

    #[test]
    fn ten_wrong_codes_in_an_hour_softlock_the_second_factor_until_the_hour_is_over() {
        let mut f = MfaFailures::default();
        for i in 0..MFA_MAX_FAILURES_PER_HOUR {
            assert_eq!(f.check(T0.saturating_add_ms(u64::from(i) * 1000)), Ok(()));
            f.record_failure(T0.saturating_add_ms(u64::from(i) * 1000));
        }
        assert_eq!(f.check(T0.saturating_add_ms(10_000)), Err(3590));
        assert_eq!(f.check(T0.saturating_add_ms(HOUR_MS - 1)), Err(1));
        assert_eq!(f.check(T0.saturating_add_ms(HOUR_MS)), Ok(()));
        f.record_failure(T0.saturating_add_ms(HOUR_MS));
        assert_eq!(f.count, 1, "a new hour starts a new count");
        f.undo_failure();
        assert_eq!(f.count, 0);
    }

    #[test]
    fn free_failures_never_wait_even_with_a_later_clock_from_a_concurrent_attempt() {
        let mut c = FailureCounter::default();
        for _ in 0..FREE_FAILURES {
            c.record_failure(T0.saturating_add_ms(50));
        }
        assert_eq!(c.check(T0), Ok(()), "three free failures, recorded 50 ms 'later'");
        c.record_failure(T0);
        assert_eq!(c.last_failure, Some(T0.saturating_add_ms(50)), "the latest failure is kept");
        assert!(c.check(T0).is_err());
    }

    #[test]
    fn an_attempt_counted_before_its_check_is_given_back_exactly() {
        let mut c = FailureCounter::default();
        c.record_failure(T0);
        c.record_failure(T0);
        let two = c.clone();
        c.record_failure(T0.saturating_add_ms(5));
        c.undo_failure();
        assert_eq!((c.consecutive, c.today), (two.consecutive, two.today));
        c.undo_failure();
        c.undo_failure();
        assert_eq!((c.consecutive, c.today, c.last_failure), (0, 0, None));
    }

    const T0: UnixMillis = UnixMillis(1_700_000_000_000);

    #[test]
    fn the_ladder_grows_from_seconds_to_minutes() {
        let delays: Vec<u64> = (1..=14).map(delay_secs).collect();
        assert_eq!(delays, vec![0, 0, 0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]);
    }

    #[test]
    fn attempts_wait_out_the_pause_and_a_success_resets() {
        let mut c = FailureCounter::default();
        for _ in 0..3 {
            assert_eq!(c.check(T0), Ok(()));
            c.record_failure(T0);
        }
        assert_eq!(c.check(T0), Ok(()));
        c.record_failure(T0);
        assert_eq!(c.check(T0), Err(2));
        assert_eq!(c.check(T0.saturating_add_ms(1_500)), Err(1));
        assert_eq!(c.check(T0.saturating_add_ms(2_000)), Ok(()));
        c.record_success();
        assert_eq!(c, FailureCounter::default());
    }

    #[test]
    fn a_hundred_failures_a_day_at_most() {
        let mut c = FailureCounter::default();
        for i in 0..100 {
            c.record_failure(T0.saturating_add_ms(i));
        }
        let later = T0.saturating_add_ms(3_600_000);
        assert_eq!(c.check(later), Err(82_800));
        assert_eq!(c.check(T0.saturating_add_ms(DAY_MS)), Ok(()));
    }
}
