//! Changes confirmed by a code sent to a new destination (an email change, a phone number for
//! SMS codes): the new value waits in `auth_state`, sealed under the user's data key, with the
//! code's hash, until the code comes back. Ten minutes, five tries, one pending change per
//! purpose and user (a new request replaces the old one, whose code stops working).

use domain::identity::UserId;
use domain::problem::ProblemKind;
use domain::time::UnixMillis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::crypto::{random_16, DataKey};
use crate::errors::ApiError;
use crate::users::Accounts;

pub(crate) const TTL_MS: u64 = 10 * 60 * 1000;
const MAX_TRIES: u32 = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    /// The new value, sealed under the user's data key (hex).
    sealed: String,
    code_hash: String,
    tries: u32,
    expires_at: UnixMillis,
}

fn state_key(purpose: &str, id: &UserId) -> String {
    format!("{purpose}:{id}")
}

fn sealed_context(purpose: &str, id: &UserId) -> String {
    format!("{id}/pending/{purpose}")
}

fn code_hash(purpose: &str, id: &UserId, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{purpose}:{id}:{}", code.trim()).as_bytes()))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl Accounts {
    /// Stores `value` as pending for `purpose` and answers the six-digit code to send.
    pub(crate) async fn start_pending(
        &self,
        purpose: &str,
        id: &UserId,
        data_key: &DataKey,
        value: &str,
        now: UnixMillis,
    ) -> Result<String, ApiError> {
        let r = random_16();
        let code = format!("{:06}", u32::from_be_bytes([r[0], r[1], r[2], r[3]]) % 1_000_000);
        let pending = Pending {
            sealed: hex::encode(data_key.seal(value.as_bytes(), &sealed_context(purpose, id))),
            code_hash: code_hash(purpose, id, &code),
            tries: 0,
            expires_at: now.saturating_add_ms(TTL_MS),
        };
        let json = serde_json::to_string(&pending).map_err(internal)?;
        self.store.state_put(&state_key(purpose, id), &json, pending.expires_at).await?;
        Ok(code)
    }

    /// Checks `code` against the pending change for `purpose` and answers its value. A wrong
    /// code costs a try (and records `<purpose>_failure`); the fifth ends the change.
    pub(crate) async fn finish_pending(
        &self,
        purpose: &str,
        id: &UserId,
        data_key: &DataKey,
        code: &str,
        now: UnixMillis,
    ) -> Result<String, ApiError> {
        let key = state_key(purpose, id);
        let mut pending: Pending = self
            .store
            .state_get(&key, now)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .filter(|p: &Pending| now < p.expires_at && p.tries < MAX_TRIES)
            .ok_or_else(|| {
                ApiError::client(ProblemKind::Conflict, "nothing is pending confirmation; start again")
            })?;
        if pending.code_hash != code_hash(purpose, id, code) {
            pending.tries += 1;
            if pending.tries >= MAX_TRIES {
                self.store.state_delete(&key).await?;
            } else {
                let json = serde_json::to_string(&pending).map_err(internal)?;
                self.store.state_put(&key, &json, pending.expires_at).await?;
            }
            self.store.add_security_event(id.as_str(), &format!("{purpose}_failure"), "{}", now).await?;
            return Err(ApiError::client(
                ProblemKind::ValidationFailed,
                format!("the code does not match; {} tries left", MAX_TRIES.saturating_sub(pending.tries)),
            ));
        }
        let sealed = hex::decode(&pending.sealed).map_err(internal)?;
        let value =
            String::from_utf8(data_key.open(&sealed, &sealed_context(purpose, id))?).map_err(internal)?;
        Ok(value)
    }

    /// Ends the pending change for `purpose` (once it has landed).
    pub(crate) async fn clear_pending(&self, purpose: &str, id: &UserId) -> Result<(), ApiError> {
        self.store.state_delete(&state_key(purpose, id)).await?;
        Ok(())
    }
}
