//! `analyze-tiers`: which users' usage fits another tier better (upgrade and downgrade
//! candidates, each with its evidence, from `domain::analytics::recommend_tier` over the last
//! 14 days of events), the tier distribution, and tier migrations per month from the audit log.

use std::collections::{BTreeMap, HashMap};

use domain::analytics::{self, Activity};
use domain::tier::Tier;
use domain::time::UnixMillis;
use serde_json::{json, Value};

use super::files::{create_private_dir, write_private};
use super::JobOptions;
use crate::AppState;

/// A member of a JSON object, or null.
fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value.get(key).unwrap_or(&Value::Null)
}

const DAY_MS: u64 = 86_400_000;

pub async fn run(state: &AppState, options: &JobOptions, now: UnixMillis) -> anyhow::Result<Value> {
    let users = state.store.all_users().await?;
    let index: HashMap<&str, usize> =
        users.iter().enumerate().map(|(i, (id, _, _))| (id.as_str(), i)).collect();
    let progress = options.progress(users.len() as u64, "tiers");
    let mut distribution: BTreeMap<String, u64> = BTreeMap::new();
    let mut recommendations: BTreeMap<String, u64> = BTreeMap::new();
    let mut upgrades = Vec::new();
    let mut downgrades = Vec::new();
    let mut seen = vec![false; users.len()];
    let mut recommend = |at: usize, events: &[Activity]| {
        let Some((id, tier, created)) = users.get(at) else { return };
        progress.inc(1);
        let Ok(tier) = tier.parse::<Tier>() else { return };
        let tenure = now.0.saturating_sub(created.0) / DAY_MS;
        let r = analytics::recommend_tier(tier, events, tenure, now);
        if let Some(to) = r.tier {
            *recommendations.entry(format!("{tier}->{to}")).or_default() += 1;
            let entry = json!({ "user_id": id, "from": tier, "to": to, "evidence": r.reason });
            if to > tier {
                upgrades.push(entry);
            } else {
                downgrades.push(entry);
            }
        }
    };
    // The last 14 days of events, one user at a time as the store streams them.
    let from = now.saturating_sub_ms(14 * DAY_MS);
    state
        .store
        .for_each_user_activity(from, now.saturating_add_ms(1), &mut |user, events| {
            if let Some(&at) = index.get(user) {
                if let Some(s) = seen.get_mut(at) {
                    *s = true;
                }
                recommend(at, events);
            }
        })
        .await?;
    for at in 0..users.len() {
        if seen.get(at) == Some(&false) {
            recommend(at, &[]);
        }
    }
    progress.finish();
    for (_, tier, _) in &users {
        *distribution.entry(tier.clone()).or_default() += 1;
    }
    let mut migrations: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (_, old, new, at) in state.store.tier_changes().await? {
        let month = analytics::cohort(at);
        let path = format!("{}->{}", old.unwrap_or_default(), new.unwrap_or_default());
        *migrations.entry(month).or_default().entry(path).or_default() += 1;
    }
    let report = json!({
        "users": users.len(),
        "distribution": distribution,
        "upgrade_candidates": upgrades.len(),
        "downgrade_candidates": downgrades.len(),
        "upgrades": upgrades,
        "downgrades": downgrades,
        "migrations_by_month": migrations,
    });
    create_private_dir(&options.reports)?;
    let path = options.reports.join("tiers.json");
    write_private(&path, serde_json::to_string_pretty(&report)?)?;
    Ok(json!({
        "users": users.len(),
        "distribution": field(&report, "distribution"),
        "upgrade_candidates": field(&report, "upgrade_candidates"),
        "downgrade_candidates": field(&report, "downgrade_candidates"),
        "recommendations": recommendations,
        "report": path.display().to_string(),
    }))
}
