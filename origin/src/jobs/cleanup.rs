//! `cleanup`: applies the retention table (`domain::retention::RULES`, one rule per class of
//! data) and removes old request nonces. Reports, per class, its rule and how many rows it
//! removed (or summarised). The edge's sessions live in its Durable Objects, which end them by
//! their own timeouts and delete ended ones a day later (`src/gate/sessions.rs`); the origin's
//! share of a sign-in (challenges, step-up codes, softlock counters) is `session_state`.

use domain::retention::{self, DataClass};
use domain::signing::NONCE_RETENTION_MS;
use domain::time::UnixMillis;
use serde_json::{json, Map, Value};

use super::JobOptions;
use crate::AppState;

pub async fn run(state: &AppState, options: &JobOptions, now: UnixMillis) -> anyhow::Result<Value> {
    let store = &state.store;
    let mut classes = Map::new();
    let mut nonces = 0;
    for rule in retention::rules(options.retention_days) {
        let cutoff = rule.cutoff(now);
        // Exhaustive on purpose: a new class cannot be added without saying how it is applied.
        let removed = match rule.class {
            DataClass::UnactivatedAccounts => store.purge_unactivated(cutoff).await?,
            DataClass::SessionState => {
                let (state_rows, nonce_rows) =
                    store.purge_auth_state(cutoff, now.saturating_sub_ms(NONCE_RETENTION_MS)).await?;
                nonces = nonce_rows;
                state_rows
            }
            DataClass::Events => store.purge_events_before(cutoff).await?,
            DataClass::LoginHistory
            | DataClass::SecurityEvents
            | DataClass::AuditEntries
            | DataClass::JobRuns
            | DataClass::SentMessages
            | DataClass::OneTimeCodes => store.apply_retention(rule.class, cutoff).await?,
        };
        let name = serde_json::to_value(rule.class)?.as_str().unwrap_or_default().to_owned();
        classes.insert(
            name,
            json!({
                "age_days": rule.age_days,
                "measured_from": rule.measured_from,
                "action": rule.action,
                "removed": removed,
            }),
        );
    }
    // Erasures whose grace period is over (the edge applies its part when it next asks), and
    // children's accounts whose parent did not consent within 72 hours.
    let erasures = state.accounts.run_due_erasures(now).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let children =
        state.accounts.purge_unconsented_children(now).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(json!({
        "at": crate::users::rfc3339(now),
        "classes": classes,
        "erasures": erasures,
        "unconsented_children": children,
        "expired_nonces": nonces,
        "retention_days": options.retention_days,
    }))
}
