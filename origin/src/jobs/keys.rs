//! `rewrap-keys`: completes a master-key rotation, and moves legacy wraps to the derived
//! wrapping key. Each user whose data key is still wrapped by a retired master key, or by the
//! current master key's bytes themselves (the format from before the wrapping key was derived
//! with HKDF, see `crypto`), gets it re-wrapped in the current format (the stored wrap id is
//! then [`Keyring::current_wrap_id`](crate::crypto::Keyring::current_wrap_id)), and their
//! email's blind index recomputed under the current key, for the email in its current normal
//! form (see `domain::email`: an address stored before NFKC and IDNA is re-sealed in that form).
//! The rest of the personal data is not touched (it is sealed by the data key, which does not
//! change). Re-running finds nothing left to do; once it reports `remaining: 0`, the retired
//! keys can leave the configuration.

use domain::email::Email;
use domain::time::UnixMillis;
use serde_json::{json, Value};

use super::JobOptions;
use crate::store::{StoreError, UpdateOutcome};
use crate::AppState;

const BATCH: u32 = 500;

pub async fn run(state: &AppState, options: &JobOptions, _now: UnixMillis) -> anyhow::Result<Value> {
    let accounts = &state.accounts;
    // Every stored wrap id but this one (current key, derived wrapping key) is to be moved.
    let current = accounts.keyring.current_wrap_id();
    let before = state.store.master_key_counts().await?;
    let to_do: u64 = before.iter().filter(|(id, _)| *id != current).map(|(_, n)| n).sum();
    let progress = options.progress(to_do, "re-wrapping");
    let (mut rewrapped, mut changed_meanwhile, mut renormalised) = (0u64, 0u64, 0u64);
    let mut look_alikes: Vec<String> = Vec::new();
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
            // An address stored before emails were normalised with NFKC and IDNA (a Unicode
            // domain, fullwidth letters) takes its normal form, so it is found as it is typed
            // now; for every ASCII address the form is unchanged.
            let normal =
                Email::parse(&account.email).map_or_else(|_| account.email.clone(), |e| e.to_string());
            if normal != account.email {
                row.email_sealed = account.data_key.seal(normal.as_bytes(), &format!("{}/email", row.id));
            }
            row.email_index = accounts.keyring.email_index(&normal);
            // Same version: nothing the user sees changed. A write that slipped in between
            // wins; its row is re-wrapped by the next run.
            let mut outcome = state.store.update_user(&row, account.row.version, &[]).await;
            if matches!(outcome, Err(StoreError::DuplicateEmail)) {
                // Another account holds the normal form (a look-alike registered before the
                // normalisation): this one keeps its address as stored, for the operator.
                look_alikes.push(id.clone());
                row.email_sealed = account.row.email_sealed.clone();
                row.email_index = accounts.keyring.email_index(&account.email);
                outcome = state.store.update_user(&row, account.row.version, &[]).await;
            } else if normal != account.email {
                renormalised += 1;
            }
            match outcome? {
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
        "current_key": accounts.keyring.current_id(),
        "current_wrap": current,
        "rewrapped": rewrapped,
        "changed_meanwhile": changed_meanwhile,
        "emails_renormalised": renormalised,
        "look_alike_emails_kept": look_alikes.iter().take(20).collect::<Vec<_>>(),
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

#[cfg(test)]
mod tests {
    use domain::identity::Role;
    use domain::profile;
    use domain::tier::Tier;

    use super::*;
    use crate::store::AuditEntry;
    use crate::testing::TestOrigin;

    const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

    /// Inserts a user as an origin from before the derived wrapping key (and before NFKC/IDNA
    /// email normalisation) stored it: a legacy wrap, and `stored_email` as it was normalised.
    async fn insert_legacy(origin: &TestOrigin, stored_email: &str) -> String {
        let accounts = &origin.state.accounts;
        let email = Email::parse("placeholder@example.com").unwrap();
        let profile = profile::defaults(Tier::Free).unwrap();
        let mut account = accounts.new_account(&email, Tier::Free, Role::User, profile, None, NOW).unwrap();
        let id = account.row.id.clone();
        let legacy = accounts.keyring.wrap_legacy(&account.data_key, &id);
        account.row.data_key_sealed = legacy.sealed;
        account.row.data_key_master_id = legacy.master_key_id;
        account.row.email_sealed = account.data_key.seal(stored_email.as_bytes(), &format!("{id}/email"));
        account.row.email_index = accounts.keyring.email_index(stored_email);
        let audit = AuditEntry {
            user_id: id.clone(),
            actor: "test".into(),
            action: "create".into(),
            old_value: None,
            new_value: None,
            at: NOW,
        };
        origin.state.store.insert_user(&account.row, &audit).await.unwrap();
        id
    }

    async fn email_of(origin: &TestOrigin, id: &str) -> (String, String) {
        let row = origin.state.store.user_by_id(id).await.unwrap().unwrap();
        let wrap = row.data_key_master_id.clone();
        (wrap, origin.state.accounts.unseal(row).unwrap().email)
    }

    #[tokio::test]
    async fn rewrap_keys_moves_legacy_wraps_to_the_derived_wrapping_key_once() {
        let origin = TestOrigin::start().await;
        let (state, accounts) = (&origin.state, &origin.state.accounts);
        let plain = insert_legacy(&origin, "legacy@example.com").await;
        // Before the job: the legacy row is found by email and readable.
        let found = accounts.find_by_email("legacy@example.com").await.unwrap().unwrap();
        assert_eq!(found.id, plain);
        assert_eq!(email_of(&origin, &plain).await, ("k1".to_owned(), "legacy@example.com".to_owned()));
        let sealed_before = found.data_key_sealed.clone();

        let summary = run(state, &origin.options(), NOW).await.unwrap();
        assert_eq!(summary["rewrapped"], 1, "{summary}");
        assert_eq!(summary["remaining"], 0, "{summary}");
        assert_eq!(summary["current_key"], "k1");
        assert_eq!(summary["current_wrap"], "k1.v2");
        assert_eq!(summary["emails_renormalised"], 0, "{summary}");

        let row = state.store.user_by_id(&plain).await.unwrap().unwrap();
        assert_ne!(row.data_key_sealed, sealed_before);
        assert_eq!(email_of(&origin, &plain).await, ("k1.v2".to_owned(), "legacy@example.com".to_owned()));
        assert_eq!(accounts.find_by_email("legacy@example.com").await.unwrap().unwrap().id, plain);

        let again = run(state, &origin.options(), NOW).await.unwrap();
        assert_eq!(again["rewrapped"], 0, "a re-run has nothing to do: {again}");
        assert_eq!(again["remaining"], 0);
    }

    #[tokio::test]
    async fn rewrap_keys_renormalises_emails_stored_before_nfkc_and_idna() {
        let origin = TestOrigin::start().await;
        let (state, accounts) = (&origin.state, &origin.state.accounts);
        let unicode = insert_legacy(&origin, "old@bücher.example").await;
        let first = insert_legacy(&origin, "look@example.com").await;
        // A look-alike the old normalisation let in: its normal form is the account above's.
        let look_alike = insert_legacy(&origin, "ｌｏｏｋ@example.com").await;

        let summary = run(state, &origin.options(), NOW).await.unwrap();
        assert_eq!(summary["rewrapped"], 3, "{summary}");
        assert_eq!(summary["emails_renormalised"], 1, "{summary}");
        assert_eq!(summary["look_alike_emails_kept"], serde_json::json!([look_alike]), "{summary}");

        let normal = "old@xn--bcher-kva.example";
        assert_eq!(email_of(&origin, &unicode).await.1, normal);
        assert_eq!(accounts.find_by_email(normal).await.unwrap().unwrap().id, unicode);
        assert_eq!(accounts.find_by_email("look@example.com").await.unwrap().unwrap().id, first);
        assert_eq!(
            email_of(&origin, &look_alike).await,
            ("k1.v2".to_owned(), "ｌｏｏｋ@example.com".to_owned())
        );
    }
}
