//! `rewrap-keys`: completes a master-key rotation. Each user whose data key is still wrapped
//! by a retired master key gets it re-wrapped by the current one, and their email's blind
//! index recomputed under the current key. The personal data itself is not touched (it is
//! sealed by the data key, which does not change). Re-running finds nothing left to do; once
//! it reports `remaining: 0`, the retired keys can leave the configuration.

use domain::time::UnixMillis;
use serde_json::{json, Value};

use super::JobOptions;
use crate::store::UpdateOutcome;
use crate::AppState;

const BATCH: u32 = 500;

pub async fn run(state: &AppState, options: &JobOptions, _now: UnixMillis) -> anyhow::Result<Value> {
    let accounts = &state.accounts;
    let current = accounts.keyring.current_id().to_owned();
    let before = state.store.master_key_counts().await?;
    let to_do: u64 = before.iter().filter(|(id, _)| *id != current).map(|(_, n)| n).sum();
    let progress = options.progress(to_do, "re-wrapping");
    let (mut rewrapped, mut changed_meanwhile) = (0u64, 0u64);
    let mut unreadable: Vec<String> = Vec::new();
    let mut after = String::new();
    loop {
        let rows = state.store.users_wrapped_by_others(&current, &after, BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = last.id.clone();
        for row in rows {
            let id = row.id.clone();
            let account = match accounts.unseal(row) {
                Ok(account) => account,
                Err(e) => {
                    unreadable.push(format!("{id}: {e}"));
                    continue;
                }
            };
            let mut row = account.row.clone();
            let wrapped = accounts.keyring.wrap(&account.data_key, &row.id);
            row.data_key_sealed = wrapped.sealed;
            row.data_key_master_id = wrapped.master_key_id;
            row.email_index = accounts.keyring.email_index(&account.email);
            // Same version: nothing the user sees changed. A write that slipped in between
            // wins; its row is re-wrapped by the next run.
            match state.store.update_user(&row, account.row.version, &[]).await? {
                UpdateOutcome::Updated => rewrapped += 1,
                UpdateOutcome::VersionMismatch(_) | UpdateOutcome::NotFound => changed_meanwhile += 1,
            }
            progress.inc(1);
        }
    }
    progress.finish();
    let after_counts = state.store.master_key_counts().await?;
    let remaining: u64 = after_counts.iter().filter(|(id, _)| *id != current).map(|(_, n)| n).sum();
    let summary = json!({
        "current_key": current,
        "rewrapped": rewrapped,
        "changed_meanwhile": changed_meanwhile,
        "remaining": remaining,
        "by_key": after_counts.iter().map(|(id, n)| (id.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "unreadable": unreadable.iter().take(20).collect::<Vec<_>>(),
    });
    if !unreadable.is_empty() {
        anyhow::bail!(
            "{} users could not be unwrapped (is every retired key in ORIGIN_PREVIOUS_MASTER_KEYS?): {summary}",
            unreadable.len()
        );
    }
    Ok(summary)
}
