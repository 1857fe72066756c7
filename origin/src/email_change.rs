//! Changing an account's email, in two steps. The owner asks with their current password (the
//! recent authentication the change needs); a one-time code goes to the new address and a
//! notice to the old one. The change lands only when the code comes back, which proves the new
//! address is the user's and has no typo: an account is never moved to an address nobody reads.
//!
//! The pending address is personal data, so it waits sealed under the user's data key, and the
//! code only as its hash.

use domain::email::Email;
use domain::identity::{Actor, UserId};
use domain::problem::ProblemKind;
use domain::time::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::crypto::random_16;
use crate::errors::ApiError;
use crate::store::{AuditEntry, UpdateOutcome};
use crate::users::{authorize, invalid_field, not_found, stale, Accounts};

/// A pending change lasts as long as any one-time code, and allows as many tries.
const PENDING_TTL_MS: u64 = 10 * 60 * 1000;
const MAX_TRIES: u32 = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartEmailChange {
    pub email: String,
    #[serde(default)]
    pub current_password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmEmailChange {
    pub code: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    /// The new address, sealed under the user's data key (hex).
    email_sealed: String,
    code_hash: String,
    tries: u32,
    expires_at: UnixMillis,
}

fn state_key(id: &UserId) -> String {
    format!("email_change:{id}")
}

fn sealed_context(id: &UserId) -> String {
    format!("{id}/pending_email")
}

fn code_hash(id: &UserId, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{id}:{}", code.trim()).as_bytes()))
}

/// `jane@example.com` → `j***@example.com`: enough for the owner to recognise, little for
/// anyone else reading the old mailbox.
fn masked(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".to_owned(),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
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
    ) -> Result<Value, ApiError> {
        authorize(actor, id)?;
        let account = self.load(id).await?;
        // An admin acting for someone else need not know their password; the owner must give it.
        if actor.user_id() == Some(id) || !actor.is_admin() {
            let given = request.current_password.as_deref().unwrap_or_default();
            if !self.password_matches(Some(&account.row), given).await {
                return Err(ApiError::client(
                    ProblemKind::Unauthenticated,
                    "changing the email needs your current password",
                ));
            }
        }
        let email =
            Email::parse(&request.email).map_err(|e| invalid_field("email", e.rule(), e.to_string()))?;
        if email.as_str() == account.email {
            return Err(ApiError::client(ProblemKind::Conflict, "this is already the account's email"));
        }
        if self.find_by_email(email.as_str()).await?.is_some() {
            return Err(crate::store::StoreError::DuplicateEmail.into());
        }

        let r = random_16();
        let code = format!("{:06}", u32::from_be_bytes([r[0], r[1], r[2], r[3]]) % 1_000_000);
        let pending = Pending {
            email_sealed: hex::encode(account.data_key.seal(email.as_str().as_bytes(), &sealed_context(id))),
            code_hash: code_hash(id, &code),
            tries: 0,
            expires_at: now.saturating_add_ms(PENDING_TTL_MS),
        };
        let value = serde_json::to_string(&pending).map_err(internal)?;
        self.store.state_put(&state_key(id), &value, pending.expires_at).await?;
        self.outbox.send(
            "email",
            email.as_str(),
            &format!(
                "Your code to confirm this address for your account is {code}. It expires in 10 minutes."
            ),
            Some(&code),
            now,
        )?;
        self.outbox.send(
            "email",
            &account.email,
            &format!(
                "A change of your account's email to {} was requested. If it was not you, change your password now.",
                masked(email.as_str())
            ),
            None,
            now,
        )?;
        self.store
            .add_security_event(
                id.as_str(),
                "email_change_requested",
                &json!({ "by": actor.to_string() }).to_string(),
                now,
            )
            .await?;
        Ok(json!({ "pending_email": email.as_str(), "expires_in": PENDING_TTL_MS / 1000 }))
    }

    /// Completes a change with the code sent to the new address. The address is checked again:
    /// someone may have taken it since the code was sent.
    pub async fn confirm_email_change(
        &self,
        actor: &Actor,
        id: &UserId,
        request: ConfirmEmailChange,
        now: UnixMillis,
    ) -> Result<Value, ApiError> {
        authorize(actor, id)?;
        let key = state_key(id);
        let mut pending: Pending = self
            .store
            .state_get(&key, now)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .filter(|p: &Pending| now < p.expires_at && p.tries < MAX_TRIES)
            .ok_or_else(|| {
                ApiError::client(ProblemKind::Conflict, "no email change is pending; start again")
            })?;
        if pending.code_hash != code_hash(id, &request.code) {
            pending.tries += 1;
            if pending.tries >= MAX_TRIES {
                self.store.state_delete(&key).await?;
            } else {
                let value = serde_json::to_string(&pending).map_err(internal)?;
                self.store.state_put(&key, &value, pending.expires_at).await?;
            }
            self.store.add_security_event(id.as_str(), "email_change_failure", "{}", now).await?;
            return Err(ApiError::client(
                ProblemKind::ValidationFailed,
                format!("the code does not match; {} tries left", MAX_TRIES.saturating_sub(pending.tries)),
            ));
        }

        let account = self.load(id).await?;
        let sealed = hex::decode(&pending.email_sealed).map_err(internal)?;
        let new_email =
            String::from_utf8(account.data_key.open(&sealed, &sealed_context(id))?).map_err(internal)?;
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
        self.store.state_delete(&key).await?;
        self.store
            .add_security_event(
                id.as_str(),
                "email_changed",
                &json!({ "by": actor.to_string() }).to_string(),
                now,
            )
            .await?;
        self.read(actor, id).await
    }
}
