//! Password reset and email verification: single-use codes sent by email, stored as hashes.
//!
//! - Forgot password: the answer is the same whether or not the address has an account, and
//!   it is given before any account-dependent work (the lookup, the code, the email run after
//!   the answer), so neither the body nor the timing tells. Codes are limited per account
//!   ([`RESETS_PER_HOUR`], counted in the same transaction that stores one) and per client
//!   address at the edge.
//! - Reset: the code works once and for 30 minutes; the new password follows the policy; in one
//!   transaction the password is replaced, every reset code of the account voided, the softlock
//!   counters cleared, an audit entry, a security event and a notice email written. Changing
//!   the password moves the credential stamp, which ends pending MFA challenges; the edge ends
//!   every session in the user's gate when this answers.
//! - Verification: every created account gets a code (72 hours); using it marks the email
//!   verified (a new profile version). An unverified address still receives reset codes and
//!   email sign-in codes: at signup it is the only channel the account has, and receiving the
//!   code is itself the proof of control the verification asks for. What "unverified" changes
//!   is what the profile tells (`email_verified: false`) and what operators may rely on.

use domain::email::Email;
use domain::identity::{Actor, UserId};
use domain::messages::Template;
use domain::password::check_password;
use domain::problem::ProblemKind;
use domain::time::UnixMillis;
use sha2::{Digest, Sha256};

use crate::crypto::random_16;
use crate::errors::ApiError;
use crate::store::{AuditEntry, CodeRow, PasswordReset};
use crate::users::{authorize, invalid_field, Account, Accounts};

pub const RESET_TTL_MS: u64 = 30 * 60_000;
pub const VERIFY_TTL_MS: u64 = 72 * 3_600_000;
/// Reset codes one account may be sent per hour.
pub const RESETS_PER_HOUR: u32 = 3;
/// Verification codes one account may be sent per day.
pub const VERIFICATIONS_PER_DAY: u32 = 5;

const RESET: &str = "password_reset";
const VERIFY: &str = "email_verification";

pub use domain::wire::auth::{
    ForgotPasswordRequest as Forgot, ResetPasswordRequest as Reset, VerifyEmailRequest as Verify,
};

/// A new code (256 random bits, URL-safe) and the hash stored for it.
fn new_code() -> (String, String) {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&random_16());
    bytes[16..].copy_from_slice(&random_16());
    let code = data_encoding::BASE64URL_NOPAD.encode(&bytes);
    let hash = code_hash(&code);
    (code, hash)
}

fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().as_bytes()))
}

fn refused(what: &str) -> ApiError {
    ApiError::client(
        ProblemKind::Unauthenticated,
        format!("the {what} code is unknown, used or expired; ask for a new one"),
    )
}

impl Accounts {
    /// Checks the address's syntax only: what follows (see [`Self::forgot_password`]) runs
    /// after the answer.
    pub fn parse_forgot(&self, request: &Forgot) -> Result<Email, ApiError> {
        Email::parse(&request.email).map_err(|e| invalid_field("email", e.rule(), e.to_string()))
    }

    /// Sends a reset code to the account with this address, if there is one that may reset
    /// (not disabled, with a password), within the per-account limit. Answers nothing: its
    /// caller has answered already.
    pub async fn forgot_password(&self, email: Email, now: UnixMillis) -> Result<(), ApiError> {
        let Some(row) = self.find_by_email(email.as_str()).await? else { return Ok(()) };
        if row.disabled_at.is_some() || row.password_hash.is_none() {
            return Ok(());
        }
        let account = self.unseal(row)?;
        let (code, hash) = new_code();
        let link = format!("{}/reset-password#code={code}", self.public_url);
        let template = Template::PasswordReset { token: &code, link: &link, minutes: RESET_TTL_MS / 60_000 };
        let message = self.message(&account, "email", &account.email, &template, Some(&code), now)?;
        let row = CodeRow {
            code_hash: hash,
            user_id: account.row.id.clone(),
            purpose: RESET.into(),
            created_at: now,
            expires_at: now.saturating_add_ms(RESET_TTL_MS),
        };
        let hour_ago = now.saturating_sub_ms(3_600_000);
        if self.store.issue_code(&row, RESETS_PER_HOUR, hour_ago, &message).await? {
            self.deliver_soon(&message.id, false).await;
        } else {
            tracing::info!(user = %account.row.id, "password reset not sent: the account's hourly limit");
            self.store.add_security_event(&account.row.id, "password_reset_limited", "{}", now).await?;
        }
        Ok(())
    }

    /// Sets a new password with a reset code (see the module doc). Answers the user's id, so
    /// the edge can end the sessions in their gate.
    pub async fn reset_password(
        &self,
        request: Reset,
        now: UnixMillis,
    ) -> Result<domain::wire::auth::PasswordResetDone, ApiError> {
        let hash = code_hash(&request.code);
        let user_id = self.store.code_user(&hash, RESET, now).await?.ok_or_else(|| refused("reset"))?;
        let id: UserId = user_id.parse().map_err(|_| refused("reset"))?;
        let account = self.load(&id).await?;
        let email = Email::parse(&account.email).map_err(|e| ApiError::Internal(e.to_string()))?;
        check_password(&request.new_password, &email)
            .map_err(|e| invalid_field("new_password", e.rule(), e.to_string()))?;
        let password_hash = self.hasher.hash(&request.new_password).await?;
        let notice =
            self.message(&account, "email", &account.email, &Template::PasswordResetNotice, None, now)?;
        let account_key = hex::encode(self.keyring.email_index(&account.email));
        let audit = AuditEntry {
            user_id: user_id.clone(),
            actor: "reset-code".into(),
            action: "password_reset".into(),
            old_value: None,
            new_value: None,
            at: now,
        };
        let reset = PasswordReset {
            code_hash: &hash,
            user_id: &user_id,
            password_hash: &password_hash,
            now,
            audit: &audit,
            state_keys: &[
                format!("lock:acct:{account_key}"),
                format!("lock:mfa:{user_id}"),
                format!("stepup:{user_id}"),
            ],
            state_prefixes: &[format!("lock:net:{account_key}:"), format!("lock:dev:{account_key}:")],
            security_event: ("password_reset", "{}"),
            notice: &notice,
        };
        if !self.store.reset_password(&reset).await? {
            return Err(refused("reset"));
        }
        self.deliver_soon(&notice.id, true).await;
        Ok(domain::wire::auth::PasswordResetDone { user_id: user_id.to_string(), reset: true })
    }

    /// Queues a verification code for the account's address.
    pub(crate) async fn send_verification(
        &self,
        account: &Account,
        now: UnixMillis,
    ) -> Result<bool, ApiError> {
        let (code, hash) = new_code();
        let link = format!("{}/verify-email#code={code}", self.public_url);
        let template = Template::VerifyEmail { token: &code, link: &link, hours: VERIFY_TTL_MS / 3_600_000 };
        let message = self.message(account, "email", &account.email, &template, Some(&code), now)?;
        let row = CodeRow {
            code_hash: hash,
            user_id: account.row.id.clone(),
            purpose: VERIFY.into(),
            created_at: now,
            expires_at: now.saturating_add_ms(VERIFY_TTL_MS),
        };
        let day_ago = now.saturating_sub_ms(86_400_000);
        let issued = self.store.issue_code(&row, VERIFICATIONS_PER_DAY, day_ago, &message).await?;
        if issued {
            self.deliver_soon(&message.id, true).await;
        }
        Ok(issued)
    }

    /// Sends a new verification code to the account's address (its owner or an admin).
    pub async fn resend_verification(
        &self,
        actor: &Actor,
        id: &UserId,
        now: UnixMillis,
    ) -> Result<domain::wire::users::VerificationSent, ApiError> {
        authorize(actor, id)?;
        let account = self.load(id).await?;
        if account.row.email_verified {
            return Err(ApiError::client(ProblemKind::Conflict, "the email address is verified already"));
        }
        if !self.send_verification(&account, now).await? {
            return Err(ApiError::client(
                ProblemKind::RateLimited,
                format!("at most {VERIFICATIONS_PER_DAY} verification emails a day; use one already sent"),
            ));
        }
        Ok(domain::wire::users::VerificationSent {
            sent: domain::security::Factor::Email,
            expires_in: VERIFY_TTL_MS / 1000,
        })
    }

    /// Marks the address verified with a code sent to it. Answers the user's new view (the
    /// edge records it, then answers the caller less).
    pub async fn verify_email(
        &self,
        request: Verify,
        now: UnixMillis,
    ) -> Result<domain::wire::users::User, ApiError> {
        let hash = code_hash(&request.code);
        let user_id =
            self.store.code_user(&hash, VERIFY, now).await?.ok_or_else(|| refused("verification"))?;
        let audit = AuditEntry {
            user_id: user_id.clone(),
            actor: "verification-code".into(),
            action: "email_verified".into(),
            old_value: Some("false".into()),
            new_value: Some("true".into()),
            at: now,
        };
        if !self.store.verify_email(&hash, &user_id, now, &audit).await? {
            return Err(refused("verification"));
        }
        let id: UserId = user_id.parse().map_err(|_| refused("verification"))?;
        self.view(&self.load(&id).await?)
    }
}
