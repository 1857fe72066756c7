//! Account protection at the origin: the login decision (softlock, password, risk, second
//! factor), MFA challenges, TOTP enrolment with recovery codes, one-time codes by email through
//! the outbox, and the security events a user can read.
//!
//! The rules are `domain`'s (`softlock`, `risk`, `totp`); this module keeps their state.

use domain::email::Email;
use domain::identity::{Actor, UserId};
use domain::problem::{Problem, ProblemKind};
use domain::profile::MfaMethod;
use domain::risk::{self, Assessment, LoginContext, PastLogin};
use domain::softlock::FailureCounter;
use domain::time::UnixMillis;
use domain::totp;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::crypto::random_16;
use crate::errors::ApiError;
use crate::users::Accounts;

/// How long an MFA challenge stays open.
const CHALLENGE_TTL_MS: u64 = 10 * 60 * 1000;
/// One-time codes by email expire after ten minutes and allow five tries.
const OTP_TTL_MS: u64 = 10 * 60 * 1000;
const OTP_MAX_TRIES: u32 = 5;
/// Softlock counters live a day past their last failure.
const LOCK_TTL_MS: u64 = 24 * 3600 * 1000;
const HISTORY: u32 = 50;
const RECOVERY_CODES: usize = 10;

/// What the edge sends to log in.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub context: EdgeContext,
}

/// What the edge saw of the client.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct EdgeContext {
    pub ip: Option<String>,
    pub country: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Challenge {
    user_id: String,
    methods: Vec<String>,
    context: LoginContext,
    risk: Assessment,
    #[serde(alias = "email_code")]
    one_time_code: Option<OneTimeCode>,
    failures: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OneTimeCode {
    /// `email` or `sms`: a code is accepted only for the method it was sent by.
    #[serde(default = "email_channel")]
    channel: String,
    hash: String,
    expires_at: UnixMillis,
    tries: u32,
}

#[derive(Debug, Deserialize)]
pub struct MfaAnswer {
    pub challenge_id: String,
    pub method: String,
    pub code: String,
}

#[derive(Debug, Deserialize)]
pub struct MfaSend {
    pub challenge_id: String,
    pub method: String,
}

fn email_channel() -> String {
    "email".to_owned()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn wrong_credentials() -> ApiError {
    ApiError::client(ProblemKind::Unauthenticated, "the email or the password is wrong")
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl Accounts {
    async fn counter(&self, key: &str, now: UnixMillis) -> Result<FailureCounter, ApiError> {
        Ok(self
            .store
            .state_get(key, now)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default())
    }

    async fn save_counter(
        &self,
        key: &str,
        counter: &FailureCounter,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        let value = serde_json::to_string(counter).map_err(internal)?;
        self.store.state_put(key, &value, now.saturating_add_ms(LOCK_TTL_MS)).await?;
        Ok(())
    }

    async fn record_failure(
        &self,
        counters: &[(String, FailureCounter)],
        event: Option<(&str, &str, &str)>,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        let expires = now.saturating_add_ms(LOCK_TTL_MS);
        let states = counters
            .iter()
            .map(|(k, c)| Ok((k.clone(), serde_json::to_string(c).map_err(internal)?, expires)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        self.store.record_failure(&states, event, now).await?;
        Ok(())
    }

    /// Records a security event the user can read.
    pub(crate) async fn event(
        &self,
        user_id: &str,
        kind: &str,
        detail: Value,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        self.store.add_security_event(user_id, kind, &detail.to_string(), now).await?;
        Ok(())
    }

    async fn history(&self, user_id: &str) -> Result<Vec<PastLogin>, ApiError> {
        Ok(self
            .store
            .recent_logins(user_id, HISTORY)
            .await?
            .into_iter()
            .filter_map(|(context, at)| Some(PastLogin { context: serde_json::from_str(&context).ok()?, at }))
            .collect())
    }

    /// Logs in: softlock, then the password, then the risk of the context, then a second
    /// factor when the account or the risk asks for one. Every refusal for a wrong email or
    /// password is the same answer after the same work.
    pub async fn login(&self, request: LoginRequest, now: UnixMillis) -> Result<Value, ApiError> {
        let normalised_email = Email::parse(&request.email)
            .map(|e| e.as_str().to_owned())
            .unwrap_or_else(|_| request.email.trim().to_lowercase());
        let account_key = hex::encode(self.keyring.email_index(&normalised_email));
        let context = LoginContext {
            device_id: request.device_id.clone().filter(|d| !d.is_empty()),
            network: request.context.ip.as_deref().map(risk::network_of),
            country: request.context.country.clone(),
            user_agent: request.context.user_agent.clone(),
        };
        let row = self.find_by_email(&normalised_email).await?;
        // The history is read for unknown emails too (it is empty), so that both cases do the
        // same queries.
        let history = self.history(row.as_ref().map_or("usr_unknown", |r| r.id.as_str())).await?;
        let known_device = context
            .device_id
            .as_ref()
            .is_some_and(|d| history.iter().any(|h| h.context.device_id.as_ref() == Some(d)));

        // Softlock: a device that already logged in to this account is held back only by its
        // own failures, so failures from elsewhere cannot lock the owner out.
        let lock_keys: Vec<String> = {
            let mut keys = vec![format!("lock:acct:{account_key}")];
            if let Some(net) = &context.network {
                keys.push(format!("lock:net:{account_key}:{net}"));
            }
            if let Some(device) = &context.device_id {
                keys.push(format!("lock:dev:{account_key}:{}", sha256_hex(device)));
            }
            keys
        };
        let checked: Vec<String> =
            lock_keys.iter().filter(|k| k.starts_with("lock:dev:") == known_device).cloned().collect();
        let mut counters = Vec::new();
        for key in &lock_keys {
            counters.push((key.clone(), self.counter(key, now).await?));
        }
        let waiting =
            counters.iter().filter(|(k, _)| checked.contains(k)).find_map(|(_, c)| c.check(now).err());
        if waiting.is_some() {
            // An attempt during a pause is a failure too, refused without checking the
            // password: hammering only lengthens the pause.
            let mut wait = 0;
            for (key, counter) in &mut counters {
                counter.record_failure(now);
                if checked.contains(&*key) {
                    wait = wait.max(counter.check(now).err().unwrap_or(0));
                }
            }
            let detail = json!({ "retry_after": wait, "network": context.network }).to_string();
            self.record_failure(
                &counters,
                row.as_ref().map(|r| (r.id.as_str(), "login_throttled", detail.as_str())),
                now,
            )
            .await?;
            return Err(ApiError::Client(
                Problem::new(
                    ProblemKind::RateLimited,
                    format!("too many failed logins for this account; retry in {wait} s"),
                )
                .with("retry_after", wait),
            ));
        }

        let matches = self.password_matches(row.as_ref(), &request.password).await;
        let row = match row {
            Some(r) if matches && r.disabled_at.is_none() && r.password_hash.is_some() => r,
            other => {
                for (_, counter) in &mut counters {
                    counter.record_failure(now);
                }
                // One transaction either way (counters, plus the event for a real account), so
                // that the two cases cost the same.
                let detail = json!({ "network": context.network, "device_known": known_device }).to_string();
                self.record_failure(
                    &counters,
                    other.as_ref().map(|r| (r.id.as_str(), "login_failure", detail.as_str())),
                    now,
                )
                .await?;
                return Err(wrong_credentials());
            }
        };

        let recent_failures = counters.first().map_or(0, |(_, c)| c.consecutive);
        for (key, counter) in &mut counters {
            if checked.contains(&*key) {
                counter.record_success();
                self.save_counter(key, counter, now).await?;
            }
        }
        let assessment = risk::assess(&context, &history, recent_failures, now);
        let account = self.unseal(row)?;
        let security = &account.profile.security_settings;
        let totp_ready = self.store.totp(&account.row.id).await?.is_some_and(|t| t.confirmed_at.is_some());
        let sms_ready = self.store.sms_phone(&account.row.id).await?.is_some();
        let mut methods = Vec::new();
        if totp_ready {
            methods.push("totp".to_owned());
        }
        if sms_ready {
            methods.push("sms".to_owned());
        }
        // A code by email is offered when the user chose it, and also when the account
        // requires a second factor but none is enrolled: the address is always there, and
        // `require_mfa` must never mean a login without one.
        let enrolled = totp_ready || sms_ready;
        if security.mfa_methods.contains(&MfaMethod::Email) || (security.require_mfa && !enrolled) {
            methods.push("email".to_owned());
        }
        if totp_ready && self.store.recovery_codes_left(&account.row.id).await? > 0 {
            methods.push("recovery_code".to_owned());
        }
        let risky = assessment.score >= security.risk_score_threshold;
        self.event(
            &account.row.id,
            "risk_assessed",
            json!({ "score": assessment.score, "signals": assessment.signals }),
            now,
        )
        .await?;

        if risky && methods.is_empty() && assessment.score >= risk::EXTREME {
            self.event(&account.row.id, "login_refused", json!({ "score": assessment.score }), now).await?;
            return Err(ApiError::Client(
                Problem::new(
                    ProblemKind::LoginRefused,
                    "this login looks too risky and the account has no second factor to confirm it",
                )
                .with("risk", serde_json::to_value(&assessment).map_err(internal)?),
            ));
        }
        if (security.require_mfa || risky) && !methods.is_empty() {
            let id = format!("chl_{}", hex::encode(random_16()));
            let challenge = Challenge {
                user_id: account.row.id.clone(),
                methods: methods.clone(),
                context,
                risk: assessment.clone(),
                one_time_code: None,
                failures: 0,
            };
            let value = serde_json::to_string(&challenge).map_err(internal)?;
            self.store
                .state_put(&format!("challenge:{id}"), &value, now.saturating_add_ms(CHALLENGE_TTL_MS))
                .await?;
            let reason =
                if security.require_mfa { "required by the account" } else { "required by the login's risk" };
            self.event(
                &account.row.id,
                "mfa_challenge",
                json!({ "reason": reason, "methods": methods }),
                now,
            )
            .await?;
            return Err(ApiError::Client(
                Problem::new(ProblemKind::MfaRequired, format!("a second factor is {reason}"))
                    .with("mfa_required", true)
                    .with("challenge_id", id)
                    .with("methods", methods)
                    .with("risk", serde_json::to_value(&assessment).map_err(internal)?),
            ));
        }
        self.logged_in(&account.row.id, &context, &assessment, now).await
    }

    async fn logged_in(
        &self,
        user_id: &str,
        context: &LoginContext,
        risk: &Assessment,
        now: UnixMillis,
    ) -> Result<Value, ApiError> {
        let row = self.store.user_by_id(user_id).await?.ok_or_else(wrong_credentials)?;
        self.store.record_login(&row.id, now).await?;
        self.store.append_login(&row.id, &serde_json::to_string(context).map_err(internal)?, now).await?;
        self.event(&row.id, "login_success", json!({ "network": context.network, "risk": risk.score }), now)
            .await?;
        let account = self.unseal(row)?;
        Ok(json!({
            "user_id": account.row.id,
            "tier": account.row.tier,
            "role": account.row.role,
            "version": account.row.version,
            "session_timeout_minutes": account.profile.security_settings.session_timeout_minutes,
            "risk": risk,
        }))
    }

    async fn challenge(&self, id: &str, now: UnixMillis) -> Result<Challenge, ApiError> {
        self.store
            .state_get(&format!("challenge:{id}"), now)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .ok_or_else(|| {
                ApiError::client(
                    ProblemKind::Unauthenticated,
                    "the challenge is unknown or expired; log in again",
                )
            })
    }

    /// Sends a one-time code for a challenge by email or SMS, through the outbox.
    pub async fn send_code(&self, request: MfaSend, now: UnixMillis) -> Result<Value, ApiError> {
        let mut challenge = self.challenge(&request.challenge_id, now).await?;
        let offered = challenge.methods.contains(&request.method);
        if !offered || !matches!(request.method.as_str(), "email" | "sms") {
            return Err(ApiError::client(
                ProblemKind::BadRequest,
                "codes are sent by email or SMS, when the login offers that method",
            ));
        }
        let id: UserId = challenge.user_id.parse().map_err(internal)?;
        let to = if request.method == "sms" {
            self.sms_number(&id).await?.ok_or_else(|| {
                ApiError::client(ProblemKind::Conflict, "the phone number was removed; log in again")
            })?
        } else {
            self.load(&id).await?.email
        };
        let r = random_16();
        let n = u32::from_be_bytes([r[0], r[1], r[2], r[3]]) % 1_000_000;
        let code = format!("{n:06}");
        challenge.one_time_code = Some(OneTimeCode {
            channel: request.method.clone(),
            hash: sha256_hex(&code),
            expires_at: now.saturating_add_ms(OTP_TTL_MS),
            tries: 0,
        });
        let value = serde_json::to_string(&challenge).map_err(internal)?;
        self.store
            .state_put(
                &format!("challenge:{}", request.challenge_id),
                &value,
                now.saturating_add_ms(CHALLENGE_TTL_MS),
            )
            .await?;
        self.outbox.send(
            &request.method,
            &to,
            &format!("Your sign-in code is {code}. It expires in 10 minutes."),
            Some(&code),
            now,
        )?;
        self.event(&challenge.user_id, "mfa_code_sent", json!({ "method": request.method }), now).await?;
        Ok(json!({ "sent": request.method, "expires_in": OTP_TTL_MS / 1000 }))
    }

    /// Completes a challenge with a second factor.
    pub async fn complete_mfa(&self, answer: MfaAnswer, now: UnixMillis) -> Result<Value, ApiError> {
        let key = format!("challenge:{}", answer.challenge_id);
        let mut challenge = self.challenge(&answer.challenge_id, now).await?;
        if !challenge.methods.contains(&answer.method) {
            return Err(ApiError::client(
                ProblemKind::BadRequest,
                format!("{} is not offered for this login", answer.method),
            ));
        }
        let id: UserId = challenge.user_id.parse().map_err(internal)?;
        let ok = match answer.method.as_str() {
            "totp" => self.check_totp(&id, &answer.code, now).await?,
            "recovery_code" => {
                let normalised = answer.code.trim().to_uppercase().replace([' ', '-'], "");
                self.store.use_recovery_code(id.as_str(), &sha256_hex(&normalised), now).await?
            }
            "email" | "sms" => match &mut challenge.one_time_code {
                Some(code)
                    if code.channel == answer.method
                        && now < code.expires_at
                        && code.tries < OTP_MAX_TRIES =>
                {
                    code.tries += 1;
                    code.hash == sha256_hex(answer.code.trim())
                }
                _ => false,
            },
            _ => false,
        };
        if !ok {
            challenge.failures += 1;
            self.event(&challenge.user_id, "mfa_failure", json!({ "method": answer.method }), now).await?;
            if challenge.failures >= OTP_MAX_TRIES {
                self.store.state_delete(&key).await?;
            } else {
                let value = serde_json::to_string(&challenge).map_err(internal)?;
                self.store.state_put(&key, &value, now.saturating_add_ms(CHALLENGE_TTL_MS)).await?;
            }
            return Err(ApiError::client(
                ProblemKind::Unauthenticated,
                "the code is wrong, expired or already used",
            ));
        }
        self.store.state_delete(&key).await?;
        self.event(&challenge.user_id, "mfa_success", json!({ "method": answer.method }), now).await?;
        self.logged_in(&challenge.user_id, &challenge.context, &challenge.risk, now).await
    }

    async fn check_totp(&self, id: &UserId, code: &str, now: UnixMillis) -> Result<bool, ApiError> {
        let Some(factor) = self.store.totp(id.as_str()).await? else { return Ok(false) };
        let account = self.load(id).await?;
        let secret = account.data_key.open(&factor.secret_sealed, &format!("{id}/totp"))?;
        let Some(step) = totp::verify(&secret, code, now, factor.last_step) else { return Ok(false) };
        // Recorded atomically: the same code presented twice passes once.
        Ok(self.store.use_totp_step(id.as_str(), step).await?)
    }

    pub(crate) async fn recent_auth(
        &self,
        actor: &Actor,
        id: &UserId,
        password: Option<&str>,
    ) -> Result<(), ApiError> {
        crate::users::authorize(actor, id)?;
        let account = self.load(id).await?;
        if self.password_matches(Some(&account.row), password.unwrap_or_default()).await {
            Ok(())
        } else {
            Err(ApiError::client(ProblemKind::Unauthenticated, "this change needs your current password"))
        }
    }

    /// Starts TOTP enrolment: a new secret, unconfirmed until a first code proves the app has it.
    pub async fn enrol_totp(
        &self,
        actor: &Actor,
        id: &UserId,
        password: Option<&str>,
        now: UnixMillis,
    ) -> Result<Value, ApiError> {
        self.recent_auth(actor, id, password).await?;
        if self.store.totp(id.as_str()).await?.is_some_and(|t| t.confirmed_at.is_some()) {
            return Err(ApiError::client(
                ProblemKind::Conflict,
                "an authenticator is already enrolled; remove it first",
            ));
        }
        let secret: Vec<u8> = random_16().into_iter().chain(random_16()).take(totp::SECRET_BYTES).collect();
        let account = self.load(id).await?;
        let sealed = account.data_key.seal(&secret, &format!("{id}/totp"));
        self.store.put_pending_totp(id.as_str(), &sealed).await?;
        self.event(id.as_str(), "mfa_enrolment_started", json!({ "method": "totp" }), now).await?;
        Ok(json!({
            "secret": totp::secret_base32(&secret),
            "otpauth_uri": totp::otpauth_uri(&secret, "Music AI", &account.email),
            "digits": totp::DIGITS,
            "period": totp::STEP_SECS,
        }))
    }

    /// Confirms enrolment with a first code; answers the ten recovery codes, shown only now.
    pub async fn confirm_totp(
        &self,
        actor: &Actor,
        id: &UserId,
        code: &str,
        now: UnixMillis,
    ) -> Result<Value, ApiError> {
        crate::users::authorize(actor, id)?;
        let factor =
            self.store.totp(id.as_str()).await?.filter(|t| t.confirmed_at.is_none()).ok_or_else(|| {
                ApiError::client(ProblemKind::Conflict, "no authenticator enrolment is pending")
            })?;
        let account = self.load(id).await?;
        let secret = account.data_key.open(&factor.secret_sealed, &format!("{id}/totp"))?;
        let step = totp::verify(&secret, code, now, None).ok_or_else(|| {
            ApiError::client(ProblemKind::ValidationFailed, "the code does not match; check the app's clock")
        })?;
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| data_encoding::BASE32_NOPAD.encode(&random_16()).chars().take(10).collect::<String>())
            .collect();
        let hashes: Vec<String> = codes.iter().map(|c| sha256_hex(c)).collect();
        self.store.confirm_totp(id.as_str(), now, step, &hashes).await?;
        self.event(id.as_str(), "mfa_enrolled", json!({ "method": "totp" }), now).await?;
        // Shown as two groups of five for reading aloud; accepted with or without the dash.
        let shown: Vec<String> = codes
            .iter()
            .map(|c| {
                format!("{}-{}", c.chars().take(5).collect::<String>(), c.chars().skip(5).collect::<String>())
            })
            .collect();
        Ok(json!({ "enrolled": "totp", "recovery_codes": shown }))
    }

    pub async fn remove_totp(
        &self,
        actor: &Actor,
        id: &UserId,
        password: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        self.recent_auth(actor, id, password).await?;
        self.store.delete_totp(id.as_str()).await?;
        self.event(id.as_str(), "mfa_removed", json!({ "method": "totp" }), now).await?;
        Ok(())
    }

    pub async fn security_events(&self, actor: &Actor, id: &UserId) -> Result<Value, ApiError> {
        crate::users::authorize(actor, id)?;
        let events = self.store.security_events(id.as_str(), 100).await?;
        let listed: Vec<Value> = events
            .into_iter()
            .map(|e| {
                json!({
                    "kind": e.kind,
                    "at": crate::users::rfc3339(e.at),
                    "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
                })
            })
            .collect();
        Ok(json!({ "events": listed }))
    }
}
