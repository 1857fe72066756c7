//! SMS one-time codes as a second factor. The phone number is enrolled like an email change:
//! the current password (recent authentication), then a code sent to the number proves it is
//! the user's; only then does the login offer `sms`. The number is personal data: sealed under
//! the user's data key in `mfa_sms`, and shown back masked.

use domain::identity::{Actor, UserId};
use domain::messages::Template;
use domain::phone::Phone;
use domain::security::Factor;
use domain::sms_quota::{self, SmsLimit};
use domain::time::UnixMillis;
use serde_json::json;

use crate::errors::ApiError;
use crate::pending;
use crate::users::{authorize, invalid_field, Accounts};

/// The `auth_state` purpose an enrolment waits under.
const PURPOSE: &str = "sms_enrolment";

pub use domain::wire::users::EnrolSms;
use domain::wire::users::{FactorEnrolled, SmsEnrolment};

fn sealed_context(id: &UserId) -> String {
    format!("{id}/sms_phone")
}

impl Accounts {
    /// Starts enrolment: sends a code to the number.
    pub async fn enrol_sms(
        &self,
        actor: &Actor,
        id: &UserId,
        request: EnrolSms,
        now: UnixMillis,
    ) -> Result<SmsEnrolment, ApiError> {
        let account = self.recent_auth(actor, id, request.current_password.as_deref(), now).await?;
        let phone = Phone::parse(&request.phone_number)
            .map_err(|e| invalid_field("phone_number", e.rule(), e.to_string()))?;
        self.count_enrolment_text(id, &phone, now).await?;
        let code = self.start_pending(PURPOSE, id, &account.data_key, phone.as_str(), now).await?;
        let minutes = pending::TTL_MS / 60_000;
        let text = self.message(
            &account,
            "sms",
            phone.as_str(),
            &Template::PhoneCode { code: &code, minutes },
            Some(&code),
            now,
        )?;
        self.send_message(text).await?;
        self.event(id.as_str(), "mfa_enrolment_started", json!({ "method": "sms" }), now).await?;
        Ok(SmsEnrolment { pending_phone: phone.masked(), expires_in: pending::TTL_MS / 1000 })
    }

    /// Counts one enrolment text against the number's and the account's daily limits (see
    /// `domain::sms_quota`), or refuses it with a 429 naming the limit. Checked after the
    /// password, so only the account holder can spend the account's texts. The number is
    /// counted by a keyed hash, so the counters hold no phone number.
    async fn count_enrolment_text(
        &self,
        id: &UserId,
        phone: &Phone,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        let number_key = hex::encode(self.keyring.secret_mac("sms-number", phone.as_str().as_bytes()));
        let counters = [
            (format!("number:{number_key}"), sms_quota::TEXTS_PER_NUMBER_PER_DAY),
            (format!("account:{id}"), sms_quota::TEXTS_PER_ACCOUNT_PER_DAY),
        ];
        let limits = [SmsLimit::PerNumber, SmsLimit::PerAccount];
        match self.store.count_sms_text(&counters, sms_quota::day(now)).await? {
            None => Ok(()),
            Some(i) => {
                let limit = limits.get(i).copied().unwrap_or(SmsLimit::PerAccount);
                let detail = json!({ "method": "sms", "limit": limit.name() }).to_string();
                self.store.add_security_event(id.as_str(), "sms_limit_reached", &detail, now).await?;
                Err(ApiError::Client(sms_quota::refusal(limit, now)))
            }
        }
    }

    /// Completes enrolment with the code the number received.
    pub async fn confirm_sms(
        &self,
        actor: &Actor,
        id: &UserId,
        code: &str,
        now: UnixMillis,
    ) -> Result<FactorEnrolled, ApiError> {
        authorize(actor, id)?;
        let account = self.load(id).await?;
        let number = self.finish_pending(PURPOSE, id, &account.data_key, code, now).await?;
        let sealed = account.data_key.seal(number.as_bytes(), &sealed_context(id));
        self.store.put_sms_phone(id.as_str(), &sealed, now).await?;
        self.clear_pending(PURPOSE, id).await?;
        self.event(id.as_str(), "mfa_enrolled", json!({ "method": "sms" }), now).await?;
        let masked = Phone::parse(&number).map(|p| p.masked()).unwrap_or_default();
        Ok(FactorEnrolled { enrolled: Factor::Sms, recovery_codes: None, phone: Some(masked) })
    }

    pub async fn remove_sms(
        &self,
        actor: &Actor,
        id: &UserId,
        proof: &crate::protection::Proof,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        // Removing a factor is a sensitive change: a fresh proof, like weakening the settings.
        self.require_fresh_proof(actor, id, proof, now).await?;
        if self.store.delete_sms_phone(id.as_str()).await? {
            self.event(id.as_str(), "mfa_removed", json!({ "method": "sms" }), now).await?;
        }
        Ok(())
    }

    /// The confirmed phone number, if the user enrolled one.
    pub(crate) async fn sms_number(&self, id: &UserId) -> Result<Option<String>, ApiError> {
        let Some(sealed) = self.store.sms_phone(id.as_str()).await? else { return Ok(None) };
        let account = self.load(id).await?;
        let number = account.data_key.open(&sealed, &sealed_context(id))?;
        Ok(Some(String::from_utf8(number).map_err(|e| ApiError::Internal(e.to_string()))?))
    }
}
