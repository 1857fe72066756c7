//! Changing an account's email, in two steps. The owner asks with their current password (the
//! recent authentication the change needs); a one-time code goes to the new address and a
//! notice to the old one. The change lands only when the code comes back, which proves the new
//! address is the user's and has no typo: an account is never moved to an address nobody reads.
//!
//! The pending address waits as `pending.rs` keeps such values: sealed, with the code's hash.

use domain::email::Email;
use domain::identity::{Actor, UserId};
use domain::messages::Template;
use domain::problem::ProblemKind;
use domain::time::UnixMillis;
use serde_json::json;

use crate::errors::ApiError;
use crate::pending;
use crate::store::{AuditEntry, UpdateOutcome};
use crate::users::{authorize, invalid_field, not_found, stale, Accounts};

/// The `auth_state` purpose an email change waits under.
const PURPOSE: &str = "email_change";

pub use domain::wire::users::{Code as ConfirmEmailChange, EmailChangeStarted, StartEmailChange, User};

/// `jane@example.com` → `j***@example.com`: enough for the owner to recognise, little for
/// anyone else reading the old mailbox.
fn masked(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".to_owned(),
    }
}

impl Accounts {
    /// Starts a change: checks the caller, the new address and that nobody has it, then sends
    /// the code. A second request replaces the first (its code stops working).
    pub async fn start_email_change(
        &self,
        actor: &Actor,
        id: &UserId,
        request: StartEmailChange,
        now: UnixMillis,
    ) -> Result<EmailChangeStarted, ApiError> {
        authorize(actor, id)?;
        let account = self.load(id).await?;
        // An admin acting for someone else need not know their password; the owner must give it.
        if actor.user_id() == Some(id) || !actor.is_admin() {
            self.check_current_password(&account, request.current_password.as_deref(), now).await?;
        }
        let email =
            Email::parse(&request.email).map_err(|e| invalid_field("email", e.rule(), e.to_string()))?;
        if email.as_str() == account.email {
            return Err(ApiError::client(ProblemKind::Conflict, "this is already the account's email"));
        }
        if self.find_by_email(email.as_str()).await?.is_some() {
            return Err(crate::store::StoreError::DuplicateEmail.into());
        }

        let code = self.start_pending(PURPOSE, id, &account.data_key, email.as_str(), now).await?;
        let minutes = pending::TTL_MS / 60_000;
        let to_new = self.message(
            &account,
            "email",
            email.as_str(),
            &Template::EmailChangeCode { code: &code, minutes },
            Some(&code),
            now,
        )?;
        self.send_message(to_new).await?;
        let masked_new = masked(email.as_str());
        let notice = self.message(
            &account,
            "email",
            &account.email,
            &Template::EmailChangeNotice { masked_new: &masked_new },
            None,
            now,
        )?;
        self.send_message(notice).await?;
        self.event(id.as_str(), "email_change_requested", json!({ "by": actor.to_string() }), now).await?;
        Ok(EmailChangeStarted {
            pending_email: email.as_str().to_owned(),
            expires_in: pending::TTL_MS / 1000,
        })
    }

    /// Completes a change with the code sent to the new address. The address is checked again:
    /// someone may have taken it since the code was sent.
    pub async fn confirm_email_change(
        &self,
        actor: &Actor,
        id: &UserId,
        request: ConfirmEmailChange,
        now: UnixMillis,
    ) -> Result<User, ApiError> {
        authorize(actor, id)?;
        let account = self.load(id).await?;
        let new_email = self.finish_pending(PURPOSE, id, &account.data_key, &request.code, now).await?;
        // Taken since the code was sent? The unique index catches it under the current key;
        // this, under a retired one during a rotation.
        if self.find_by_email(&new_email).await?.is_some_and(|other| other.id != id.as_str()) {
            return Err(crate::store::StoreError::DuplicateEmail.into());
        }
        let mut row = account.row.clone();
        row.email_index = self.keyring.email_index(&new_email);
        row.email_sealed = account.data_key.seal(new_email.as_bytes(), &format!("{id}/email"));
        // The code proved the new address.
        row.email_verified = true;
        row.version += 1;
        row.updated_at = now;
        // The audit log names the change, never the addresses (it is not encrypted).
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: "email_change".into(),
            old_value: None,
            new_value: None,
            at: now,
        };
        match self.store.update_user(&row, account.row.version, &[audit]).await? {
            UpdateOutcome::Updated => {}
            UpdateOutcome::VersionMismatch(current) => return Err(stale(account.row.version, current)),
            UpdateOutcome::NotFound => return Err(not_found(id.as_str())),
        }
        self.clear_pending(PURPOSE, id).await?;
        self.event(id.as_str(), "email_changed", json!({ "by": actor.to_string() }), now).await?;
        self.read(actor, id).await
    }
}
