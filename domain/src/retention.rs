//! How long each class of data is kept, as data: one [`Rule`] per [`DataClass`], in [`RULES`].
//! The weekly cleanup job (`origin/src/jobs/cleanup.rs`) applies every rule and reports what
//! it removed per class; the README's retention table is this one.
//!
//! To add a class: add a variant, its row in `RULES`, and its arm in the cleanup job's `match`
//! (which is exhaustive, so a class cannot be forgotten there); the tests below check that
//! every class has exactly one rule.

use serde::Serialize;

use crate::time::UnixMillis;

pub const DAY_MS: u64 = 86_400_000;

/// A class of stored data with a retention rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Provisioned accounts whose activation token expired unused.
    UnactivatedAccounts,
    /// Successful logins and their context (IP, device), used for risk scoring.
    LoginHistory,
    /// Security events (new device, softlock, factor changes, evicted sessions…).
    SecurityEvents,
    /// The audit log: who changed what. Kept longest, then summarised.
    AuditEntries,
    /// Short-lived origin state of sign-ins: MFA challenges, step-up codes, softlock counters.
    SessionState,
    /// Behavioural events from the edge (analytics).
    Events,
    /// Records of automation job runs.
    JobRuns,
    /// Messages the outbox has sent (or given up on).
    SentMessages,
    /// Password-reset and email-verification codes, once used or expired.
    OneTimeCodes,
}

/// What happens to data of a class past its age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The rows are deleted.
    Delete,
    /// The rows are replaced by one count per user and action, then deleted.
    Summarise,
}

/// One retention rule: data of `class` is `action`ed once `age_days` have passed since
/// `measured_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub class: DataClass,
    pub age_days: u64,
    pub action: Action,
    /// What the age is counted from, in words (for the report and the README).
    pub measured_from: &'static str,
}

impl Rule {
    /// Data of the class older than this instant (strictly) is past its age at `now`.
    pub fn cutoff(&self, now: UnixMillis) -> UnixMillis {
        now.saturating_sub_ms(self.age_days.saturating_mul(DAY_MS))
    }
}

/// The retention table. Events default to 365 days (`ORIGIN_EVENT_RETENTION_DAYS` overrides).
pub const RULES: &[Rule] = &[
    Rule {
        class: DataClass::UnactivatedAccounts,
        age_days: 0,
        action: Action::Delete,
        measured_from: "the activation deadline (14 days after provisioning)",
    },
    Rule {
        class: DataClass::LoginHistory,
        age_days: 180,
        action: Action::Delete,
        measured_from: "the login",
    },
    Rule {
        class: DataClass::SecurityEvents,
        age_days: 400,
        action: Action::Delete,
        measured_from: "the event",
    },
    Rule {
        class: DataClass::AuditEntries,
        age_days: 7 * 365,
        action: Action::Summarise,
        measured_from: "the entry",
    },
    Rule { class: DataClass::SessionState, age_days: 0, action: Action::Delete, measured_from: "its expiry" },
    Rule { class: DataClass::Events, age_days: 365, action: Action::Delete, measured_from: "the event" },
    Rule {
        class: DataClass::JobRuns,
        age_days: 90,
        action: Action::Delete,
        measured_from: "the run's start",
    },
    Rule {
        class: DataClass::SentMessages,
        age_days: 30,
        action: Action::Delete,
        measured_from: "sending (or giving up)",
    },
    Rule {
        class: DataClass::OneTimeCodes,
        age_days: 7,
        action: Action::Delete,
        measured_from: "the code's use or expiry",
    },
];

/// The rules with the events' age set to `event_days` (the operator's setting).
pub fn rules(event_days: u64) -> Vec<Rule> {
    RULES
        .iter()
        .map(|r| if r.class == DataClass::Events { Rule { age_days: event_days, ..*r } } else { *r })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_one_rule() {
        let all = [
            DataClass::UnactivatedAccounts,
            DataClass::LoginHistory,
            DataClass::SecurityEvents,
            DataClass::AuditEntries,
            DataClass::SessionState,
            DataClass::Events,
            DataClass::JobRuns,
            DataClass::SentMessages,
            DataClass::OneTimeCodes,
        ];
        for class in all {
            assert_eq!(RULES.iter().filter(|r| r.class == class).count(), 1, "{class:?}");
        }
        assert_eq!(RULES.len(), all.len());
    }

    #[test]
    fn audit_entries_are_kept_longest_and_summarised() {
        let audit = RULES.iter().find(|r| r.class == DataClass::AuditEntries).map(|r| (r.age_days, r.action));
        assert_eq!(audit, Some((2555, Action::Summarise)));
        assert!(RULES.iter().all(|r| r.age_days <= 2555));
    }

    #[test]
    fn the_cutoff_is_the_age_before_now_and_events_follow_the_setting() {
        let rule =
            Rule { class: DataClass::JobRuns, age_days: 90, action: Action::Delete, measured_from: "" };
        assert_eq!(rule.cutoff(UnixMillis(100 * DAY_MS)), UnixMillis(10 * DAY_MS));
        assert_eq!(rule.cutoff(UnixMillis(5)), UnixMillis(0));
        let events = rules(30).into_iter().find(|r| r.class == DataClass::Events).map(|r| r.age_days);
        assert_eq!(events, Some(30));
        assert_eq!(rules(365), RULES.to_vec());
    }
}
