//! Analytics over stored events, as pure functions: the same events give the same numbers.
//!
//! - **Engagement** (0–100) is the weighted sum of four components, each in [0, 1]:
//!   frequency (active days of the last 30 / 30, weight 40), recency (1 − days since the last
//!   activity / 30, weight 25), breadth (endpoint classes used in 30 days / 5, weight 15) and
//!   trend (requests of the last 7 days / those of the last 14, weight 20; 0.5 when idle).
//! - **Segment**: `new` (under 7 days), then by engagement: `power_user` ≥ 70, `engaged` ≥ 40,
//!   `casual` ≥ 15, else `dormant`.
//! - **Tier recommendation**: a free user who hit the quota on 3 or more of the last 14 days
//!   should upgrade; a paid (premium) user whose busiest hour in 14 days stayed under the free
//!   quota could downgrade.
//! - **Churn**: a logistic regression over the engagement components and tenure, trained by
//!   the analytics job on users whose outcome is known; without a trained model, or for a user
//!   with under 7 days of history, it says so instead of inventing a number.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::tier::Tier;
use crate::time::UnixMillis;
use crate::wire::event::EventKind;

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
/// The endpoint classes that count towards breadth.
pub const FEATURE_CLASSES: [&str; 5] = ["profile_read", "profile_write", "insights", "sessions", "security"];

/// The part of an event analytics reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub kind: EventKind,
    pub class: Option<String>,
    pub at: UnixMillis,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Components {
    pub frequency: f64,
    pub recency: f64,
    pub breadth: f64,
    pub trend: f64,
}

impl Components {
    /// The model's features: the components and tenure in years (capped at 2).
    pub fn features(&self, tenure_days: u64) -> [f64; 5] {
        [self.frequency, self.recency, self.breadth, self.trend, (tenure_days as f64 / 365.0).min(2.0)]
    }
}

pub const FEATURE_NAMES: [&str; 5] = ["frequency", "recency", "breadth", "trend", "tenure"];

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    pub score: u32,
    pub components: Components,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The API requests among `events`.
fn requests(events: &[Activity]) -> impl Iterator<Item = &Activity> {
    events.iter().filter(|e| e.kind == EventKind::ApiRequest)
}

pub fn engagement(events: &[Activity], now: UnixMillis) -> Engagement {
    let since = |days: u64| now.0.saturating_sub(days * DAY_MS);
    let active_days: BTreeSet<u64> =
        requests(events).filter(|e| e.at.0 >= since(30)).map(|e| e.at.0 / DAY_MS).collect();
    let frequency = active_days.len().min(30) as f64 / 30.0;
    let recency = match events.iter().map(|e| e.at.0).max() {
        Some(last) => (1.0 - (now.0.saturating_sub(last) as f64 / DAY_MS as f64) / 30.0).clamp(0.0, 1.0),
        None => 0.0,
    };
    let classes: BTreeSet<&str> = requests(events)
        .filter(|e| e.at.0 >= since(30))
        .filter_map(|e| e.class.as_deref())
        .filter(|c| FEATURE_CLASSES.contains(c))
        .collect();
    let breadth = classes.len() as f64 / FEATURE_CLASSES.len() as f64;
    let last7 = requests(events).filter(|e| e.at.0 >= since(7)).count() as f64;
    let prev7 = requests(events).filter(|e| e.at.0 >= since(14) && e.at.0 < since(7)).count() as f64;
    let trend = if last7 + prev7 == 0.0 { 0.5 } else { last7 / (last7 + prev7) };
    let components = Components {
        frequency: round2(frequency),
        recency: round2(recency),
        breadth: round2(breadth),
        trend: round2(trend),
    };
    let score =
        (40.0 * frequency + 25.0 * recency + 15.0 * breadth + 20.0 * trend).round().clamp(0.0, 100.0) as u32;
    Engagement { score, components }
}

pub fn segment(engagement: &Engagement, tenure_days: u64) -> &'static str {
    match engagement.score {
        _ if tenure_days < 7 => "new",
        70.. => "power_user",
        40.. => "engaged",
        15.. => "casual",
        _ => "dormant",
    }
}

/// The signup cohort: its calendar month, `YYYY-MM`.
pub fn cohort(created_at: UnixMillis) -> String {
    let days = created_at.0 / DAY_MS;
    let (y, m, _) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}")
}

/// How many 30-day periods after signup cohort retention follows.
pub const RETENTION_PERIODS: u64 = 25;
const PERIOD_MS: u64 = 30 * DAY_MS;

/// The 30-day periods since signup (`created_at`) in which the user had any event, as bits
/// (bit `k`: active in `[created + 30k days, created + 30(k+1) days)`), for the first
/// [`RETENTION_PERIODS`] periods. A user's whole history folds into these 32 bits, so
/// retention needs no event kept in memory.
pub fn active_periods(events: &[Activity], created_at: UnixMillis) -> u32 {
    events
        .iter()
        .filter_map(|e| e.at.0.checked_sub(created_at.0))
        .map(|since| since / PERIOD_MS)
        .filter(|period| *period < RETENTION_PERIODS)
        .fold(0, |bits, period| bits | (1 << period))
}

/// A cohort's retention from its members' (signup time, [`active_periods`]): for each period
/// that has fully passed for at least one member, the share of those members active in it
/// (rounded to 0.001).
pub fn retention(members: &[(UnixMillis, u32)], now: UnixMillis) -> Vec<f64> {
    let mut shares = Vec::new();
    for period in 0..RETENTION_PERIODS {
        let eligible: Vec<u32> = members
            .iter()
            .filter(|(created, _)| created.0 + (period + 1) * PERIOD_MS <= now.0)
            .map(|(_, bits)| *bits)
            .collect();
        if eligible.is_empty() {
            break;
        }
        let active = eligible.iter().filter(|bits| *bits & (1 << period) != 0).count();
        shares.push((active as f64 / eligible.len() as f64 * 1000.0).round() / 1000.0);
    }
    shares
}

/// Howard Hinnant's days-to-civil algorithm: the proleptic Gregorian date of a day number.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    pub tier: Option<Tier>,
    pub reason: String,
}

pub fn recommend_tier(tier: Tier, events: &[Activity], tenure_days: u64, now: UnixMillis) -> Recommendation {
    let since = now.0.saturating_sub(14 * DAY_MS);
    let quota_days: BTreeSet<u64> = events
        .iter()
        .filter(|e| e.kind == EventKind::RateLimited && e.at.0 >= since)
        .map(|e| e.at.0 / DAY_MS)
        .collect();
    let mut per_hour: BTreeMap<u64, u32> = BTreeMap::new();
    for e in requests(events).filter(|e| e.at.0 >= since) {
        *per_hour.entry(e.at.0 / HOUR_MS).or_default() += 1;
    }
    let busiest = per_hour.values().copied().max().unwrap_or(0);
    let free_quota = Tier::Free.hourly_quota().unwrap_or(u32::MAX);
    match tier {
        Tier::Free if quota_days.len() >= 3 => Recommendation {
            tier: Some(Tier::Premium),
            reason: format!("hit the free quota on {} of the last 14 days", quota_days.len()),
        },
        Tier::Premium if tenure_days >= 14 && busiest < free_quota => Recommendation {
            tier: Some(Tier::Free),
            reason: format!(
                "the busiest hour of the last 14 days used {busiest} requests, under the free tier's {free_quota}"
            ),
        },
        _ => Recommendation { tier: None, reason: format!("the {tier} tier fits the last 14 days' usage") },
    }
}

/// A trained churn model: logistic regression weights over [`Components::features`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnModel {
    pub weights: [f64; 5],
    pub bias: f64,
    pub trained_on: usize,
    pub auc: f64,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl ChurnModel {
    pub fn probability(&self, features: &[f64; 5]) -> f64 {
        sigmoid(self.bias + self.weights.iter().zip(features).map(|(w, x)| w * x).sum::<f64>())
    }

    /// Each feature's contribution to the log-odds, largest in size first: positive raise
    /// the churn probability, negative lower it.
    pub fn factors(&self, features: &[f64; 5]) -> Vec<(String, f64)> {
        let mut f: Vec<(String, f64)> = FEATURE_NAMES
            .iter()
            .zip(self.weights.iter().zip(features))
            .map(|(name, (w, x))| ((*name).to_owned(), round2(w * x)))
            .collect();
        f.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        f
    }
}

/// Trains a logistic regression by full-batch gradient descent (deterministic: zero start,
/// fixed steps), with a light L2 penalty.
pub fn train_churn(samples: &[([f64; 5], bool)], epochs: usize, rate: f64) -> ChurnModel {
    let mut w = [0.0f64; 5];
    let mut b = 0.0f64;
    let n = samples.len().max(1) as f64;
    for _ in 0..epochs {
        let mut gw = [0.0f64; 5];
        let mut gb = 0.0;
        for (x, y) in samples {
            let p = sigmoid(b + w.iter().zip(x).map(|(wi, xi)| wi * xi).sum::<f64>());
            let err = p - if *y { 1.0 } else { 0.0 };
            for (g, xi) in gw.iter_mut().zip(x) {
                *g += err * xi;
            }
            gb += err;
        }
        for (wi, g) in w.iter_mut().zip(gw) {
            *wi -= rate * (g / n + 0.001 * *wi);
        }
        b -= rate * gb / n;
    }
    ChurnModel { weights: w, bias: b, trained_on: samples.len(), auc: 0.0 }
}

/// The area under the ROC curve of `scores` against `labels` (ties count half).
pub fn auc(scored: &[(f64, bool)]) -> f64 {
    let positives: Vec<f64> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
    let negatives: Vec<f64> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    if positives.is_empty() || negatives.is_empty() {
        return 0.5;
    }
    let mut wins = 0.0;
    for p in &positives {
        for n in &negatives {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (positives.len() * negatives.len()) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn retention_counts_each_member_in_the_periods_they_were_active_once_the_period_passed() {
        let day = |d: u64| UnixMillis(1_700_000_000_000 + d * DAY_MS);
        let event = |d: u64| Activity { kind: EventKind::ApiRequest, class: None, at: day(d) };
        // Active in periods 0 and 2 (days 1, 5, 65), and an event before signup ignored.
        let a = active_periods(&[event(1), event(5), event(65)], day(0));
        assert_eq!(a, 0b101);
        assert_eq!(active_periods(&[event(0)], day(3)), 0, "an event before signup is no activity");
        assert_eq!(active_periods(&[event(30 * 40)], day(0)), 0, "beyond the followed periods");
        let b = active_periods(&[event(31)], day(0));
        // At day 70 periods 0 and 1 have passed for both members; period 2 has not.
        assert_eq!(retention(&[(day(0), a), (day(0), b)], day(70)), vec![0.5, 0.5]);
        // A member who signed up later is not yet eligible for the periods they have not lived.
        assert_eq!(retention(&[(day(0), a), (day(50), 0b1)], day(70)), vec![1.0, 0.0]);
        assert!(retention(&[(day(0), a)], day(10)).is_empty());
    }

    use super::*;

    const NOW: UnixMillis = UnixMillis(1_764_000_000_000);

    fn request(days_ago: u64, class: &str) -> Activity {
        Activity {
            kind: EventKind::ApiRequest,
            class: Some(class.into()),
            at: UnixMillis(NOW.0 - days_ago * DAY_MS),
        }
    }

    #[test]
    fn engagement_has_exact_components() {
        let mut events: Vec<Activity> = (0..15).map(|d| request(d, "profile_read")).collect();
        events.push(request(1, "profile_write"));
        events.push(request(20, "insights"));
        let e = engagement(&events, NOW);
        // 16 active days of 30; active today; 3 of 5 classes; 9 requests in the last 7 days
        // (days 0 to 7, and a write) against 7 in the 7 before.
        assert_eq!(e.components, Components { frequency: 0.53, recency: 1.0, breadth: 0.6, trend: 0.56 });
        assert_eq!(e.score, 67); // 21.33 + 25 + 9 + 11.25
        assert_eq!(segment(&e, 60), "engaged");
        assert_eq!(segment(&e, 3), "new");
        assert_eq!(engagement(&[], NOW).score, 10);
    }

    #[test]
    fn cohorts_are_calendar_months() {
        assert_eq!(cohort(UnixMillis(0)), "1970-01");
        assert_eq!(cohort(UnixMillis(1_764_000_000_000)), "2025-11");
        assert_eq!(cohort(UnixMillis(951_782_400_000)), "2000-02"); // 2000-02-29
    }

    #[test]
    fn recommendations_name_their_evidence() {
        let hits: Vec<Activity> = [1, 3, 5]
            .iter()
            .map(|&d| Activity {
                kind: EventKind::RateLimited,
                class: None,
                at: UnixMillis(NOW.0 - d * DAY_MS),
            })
            .collect();
        let r = recommend_tier(Tier::Free, &hits, 30, NOW);
        assert_eq!(
            r,
            Recommendation {
                tier: Some(Tier::Premium),
                reason: "hit the free quota on 3 of the last 14 days".into()
            }
        );
        let light: Vec<Activity> = (0..10).map(|d| request(d, "profile_read")).collect();
        let r = recommend_tier(Tier::Premium, &light, 30, NOW);
        assert_eq!(r.tier, Some(Tier::Free));
        assert_eq!(
            r.reason,
            "the busiest hour of the last 14 days used 1 requests, under the free tier's 100"
        );
    }

    #[test]
    fn the_model_learns_a_separable_rule_and_auc_measures_it() {
        // Churners: rarely active; stayers: often active.
        let samples: Vec<([f64; 5], bool)> = (0..200)
            .map(|i| {
                let f = (i % 10) as f64 / 10.0;
                ([f, f, 0.5, 0.5, 0.5], f < 0.3)
            })
            .collect();
        let model = train_churn(&samples, 2000, 1.0);
        let scored: Vec<(f64, bool)> = samples.iter().map(|(x, y)| (model.probability(x), *y)).collect();
        assert!(auc(&scored) > 0.95);
        assert!(model.probability(&[0.0, 0.0, 0.5, 0.5, 0.5]) > 0.5);
        assert!(model.probability(&[1.0, 1.0, 0.5, 0.5, 0.5]) < 0.5);
        assert_eq!(model.factors(&[1.0, 1.0, 0.5, 0.5, 0.5]).len(), 5);
        assert_eq!(auc(&[(0.9, true), (0.1, false)]), 1.0);
        assert_eq!(auc(&[(0.5, true), (0.5, false)]), 0.5);
    }
}
