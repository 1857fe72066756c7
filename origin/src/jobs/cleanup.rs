//! `cleanup`: removes what has expired: short-lived auth state (softlock counters, MFA
//! challenges), old request nonces, accounts never activated past their deadline, and events
//! past the retention period. Prints what it removed. Sessions live in the edge's Durable
//! Objects, which end them by their own timeouts.

use domain::signing::NONCE_RETENTION_MS;
use domain::time::UnixMillis;
use serde_json::{json, Value};

use super::JobOptions;
use crate::AppState;

pub async fn run(state: &AppState, options: &JobOptions, now: UnixMillis) -> anyhow::Result<Value> {
    let (auth_state, nonces) =
        state.store.purge_auth_state(now, now.saturating_sub_ms(NONCE_RETENTION_MS)).await?;
    let unactivated = state.store.purge_unactivated(now).await?;
    let cutoff = now.saturating_sub_ms(options.retention_days.saturating_mul(86_400_000));
    let events = state.store.purge_events_before(cutoff).await?;
    // Erasures whose grace period is over (the edge applies its part when it next asks).
    let erasures = state.accounts.run_due_erasures(now).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    // Children's accounts whose parent did not consent within 72 hours.
    let children =
        state.accounts.purge_unconsented_children(now).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(json!({
        "unconsented_children": children,
        "erasures": erasures,
        "expired_auth_state": auth_state,
        "expired_nonces": nonces,
        "unactivated_accounts": unactivated,
        "events_past_retention": events,
        "retention_days": options.retention_days,
    }))
}
