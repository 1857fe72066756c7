//! Account protection at the origin: the login (softlock, password, risk, second factor), MFA
//! challenges, step-up proofs for sensitive changes, TOTP enrolment with recovery codes,
//! one-time codes by email or SMS through the outbox, device tokens, and the security events a
//! user can read.
//!
//! The rules are `domain`'s (`security`, `softlock`, `risk`, `totp`); this module gathers the
//! facts, applies the decisions and keeps their state. Every counter is updated atomically
//! (`Store::update_states`, one write transaction): an attempt is counted *before* its secret
//! is checked and given back when it succeeds, so parallel guesses cannot slip past a limit.
//!
//! What does not decide a login's answer is written after it (write-behind, see
//! [`Accounts::write_behind`]): the last-login time, the history entry and the security events
//! of a success. A crash in the milliseconds after an answer may lose those; it never loses a
//! counter, a challenge or a factor, which are written before the answer.

use crate::metrics::{self, outcome};
use domain::email::Email;
use domain::identity::{Actor, Role, UserId};
use domain::messages::Template;
use domain::problem::{Problem, ProblemKind};
use domain::risk::{self, Assessment, LoginContext, PastLogin};
use domain::security::{self, SecondFactor, SecurityFloor};
use domain::softlock::{FailureCounter, LockKeys, MfaFailures};
use domain::tier::Tier;
use domain::time::UnixMillis;
use domain::totp;
use domain::wire::auth::{
    CodeSent, LoginVerified, MfaChallenge, MfaRequest, MfaSendRequest, PasswordCredentials, SignIn,
    StepUpRequest,
};
use domain::wire::Factor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::crypto::random_16;
use crate::errors::ApiError;
use crate::store::UserRow;
use crate::users::{Account, Accounts};

/// How long an MFA challenge stays open.
const CHALLENGE_TTL_MS: u64 = 10 * 60 * 1000;
/// One-time codes by email or SMS expire after ten minutes and allow five tries.
const OTP_TTL_MS: u64 = 10 * 60 * 1000;
const OTP_MAX_TRIES: u32 = 5;
/// Softlock counters live a day past their last failure.
const LOCK_TTL_MS: u64 = 24 * 3600 * 1000;
/// The second factor's counter covers an hour (`domain::softlock::MfaFailures`).
const MFA_COUNTER_TTL_MS: u64 = 3600 * 1000;
const HISTORY: u32 = 50;
const RECOVERY_CODES: usize = 10;
/// 10 random bytes: 80 bits, 16 base32 characters.
const RECOVERY_CODE_BYTES: usize = 10;

/// What the edge sends to log in: the email and password, the device token, the client's context.
pub type LoginRequest = SignIn<PasswordCredentials>;

/// What the edge saw of the client.
pub use domain::wire::auth::ClientContext as EdgeContext;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Challenge {
    user_id: String,
    methods: Vec<String>,
    context: LoginContext,
    risk: Assessment,
    #[serde(alias = "email_code")]
    one_time_code: Option<OneTimeCode>,
    failures: u32,
    /// A fingerprint of the password hash when the challenge was made: a password change
    /// since then ends the challenge.
    #[serde(default)]
    credential_stamp: String,
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

/// A challenge's completion: the method and its code (or, for `webauthn`, the authenticator's
/// answer to the options from `/auth/mfa/webauthn`).
pub type MfaAnswer = MfaRequest;

/// A code to send for a challenge (or, with `webauthn`, the assertion's options to start).
pub type MfaSend = MfaSendRequest;

/// A proof for a sensitive change: the current password and, with a factor enrolled, a code
/// from it — or a step-up the caller's session made within the last five minutes, which the
/// edge vouches for in `step_up_at`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    #[serde(default)]
    pub current_password: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub step_up_at: Option<u64>,
    /// The authenticator's answer when `method` is `webauthn` (options from a first step-up
    /// call without it).
    #[serde(default)]
    pub credential: Option<Value>,
}

impl From<StepUpRequest> for Proof {
    /// A step-up's own proof: never a previous step-up.
    fn from(request: StepUpRequest) -> Self {
        Self {
            current_password: request.current_password,
            method: request.method.map(|m| m.as_str().to_owned()),
            code: request.code,
            step_up_at: None,
            credential: request.credential,
        }
    }
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

fn throttled(what: &str, wait: u64) -> ApiError {
    ApiError::Client(
        Problem::new(ProblemKind::RateLimited, format!("too many failed {what}; retry in {wait} s"))
            .with("retry_after", wait),
    )
}

fn parse_or_default<T: for<'de> Deserialize<'de> + Default>(value: Option<&String>) -> T {
    value.and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default()
}

/// The fingerprint of the account's state that challenges carry: its password hash and the
/// time of its last change (disabling, enabling, a password or profile change all move it), so
/// a challenge made before any of them no longer completes.
fn credential_stamp(row: &UserRow) -> String {
    let material = format!("{}|{}", row.password_hash.as_deref().unwrap_or_default(), row.updated_at.0);
    sha256_hex(&material).chars().take(16).collect()
}

fn mfa_key(user_id: &str) -> String {
    format!("lock:mfa:{user_id}")
}

fn refused_challenge() -> ApiError {
    ApiError::client(ProblemKind::Unauthenticated, "the challenge is unknown or expired; log in again")
}

/// How an attempt counted by `begin_attempt` ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// The secret was right: the checked counters reset, the others take the attempt back.
    Succeeded,
    /// The secret was wrong: counted already where counted ahead; the others count it now.
    Failed,
    /// The secret was not checked (hashing saturated) or the check was not a login's: every
    /// counter takes the attempt back.
    TakenBack,
}

/// The softlock counters' state keys, each living a day past this attempt.
fn with_expiry(locks: &LockKeys, now: UnixMillis) -> Vec<(String, UnixMillis)> {
    locks.keys.iter().map(|k| (k.clone(), now.saturating_add_ms(LOCK_TTL_MS))).collect()
}

impl Accounts {
    /// Counts one attempt against each counter, before the secret is checked, in one write
    /// transaction; answers the wait if a checked counter was already softlocked.
    async fn begin_attempt(&self, locks: &LockKeys, now: UnixMillis) -> Result<(u32, Option<u64>), ApiError> {
        let update = self
            .store
            .update_states(&with_expiry(locks, now), now, &|values| {
                let counters: Vec<FailureCounter> =
                    values.iter().map(|v| parse_or_default(v.as_ref())).collect();
                // An attempt during a pause is a failure on every counter; any other is counted
                // ahead where the keys count ahead.
                let waiting = locks.waiting(&counters, now);
                for ((value, mut counter), ahead) in values.iter_mut().zip(counters).zip(&locks.ahead) {
                    if waiting || *ahead {
                        counter.record_failure(now);
                    }
                    *value = serde_json::to_string(&counter).ok();
                }
            })
            .await?;
        let before: Vec<FailureCounter> =
            update.before.iter().map(|v| parse_or_default(v.as_ref())).collect();
        let after: Vec<FailureCounter> = update.after.iter().map(|v| parse_or_default(v.as_ref())).collect();
        let wait = locks.waiting(&before, now).then(|| {
            after
                .iter()
                .zip(&locks.checked)
                .filter(|(_, checked)| **checked)
                .filter_map(|(c, _)| c.check(now).err())
                .max()
                .unwrap_or(1)
        });
        Ok((before.first().map_or(0, |c| c.consecutive), wait))
    }

    /// Ends an attempt `begin_attempt` counted (see [`Attempt`]).
    async fn end_attempt(&self, locks: &LockKeys, outcome: Attempt, now: UnixMillis) -> Result<(), ApiError> {
        if outcome == Attempt::Failed && locks.ahead.iter().all(|a| *a) {
            return Ok(()); // counted already, everywhere
        }
        self.store
            .update_states(&with_expiry(locks, now), now, &|values| {
                for ((value, checked), ahead) in values.iter_mut().zip(&locks.checked).zip(&locks.ahead) {
                    let mut counter: FailureCounter = parse_or_default(value.as_ref());
                    match (outcome, *ahead) {
                        (Attempt::Succeeded, _) if *checked => counter.record_success(),
                        (Attempt::Succeeded | Attempt::TakenBack, true) => counter.undo_failure(),
                        (Attempt::Failed, false) => counter.record_failure(now),
                        _ => {}
                    }
                    *value = serde_json::to_string(&counter).ok();
                }
            })
            .await?;
        Ok(())
    }

    /// Writes what does not decide an answer after the answer: the caller does not wait for it,
    /// and a failure is logged (see the module doc for what a crash may lose).
    pub(crate) fn write_behind<F>(&self, what: &'static str, work: F)
    where
        F: std::future::Future<Output = Result<(), ApiError>> + Send + 'static,
    {
        tokio::spawn(async move {
            if let Err(e) = work.await {
                tracing::error!(error = %e, what, "write-behind failed");
            }
        });
    }

    /// Records a security event after the answer.
    fn event_later(&self, user_id: &str, kind: &'static str, detail: Value, now: UnixMillis) {
        let store = std::sync::Arc::clone(&self.store);
        let user_id = user_id.to_owned();
        self.write_behind("security event", async move {
            store.add_security_event(&user_id, kind, &detail.to_string(), now).await?;
            Ok(())
        });
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

    /// The login history the risk of a new login is assessed against.
    pub(crate) async fn history_of(&self, user_id: &str) -> Result<Vec<PastLogin>, ApiError> {
        self.history(user_id).await
    }

    /// The device a device token names, if the server issued it for this account.
    pub(crate) fn device_of(&self, user_id: &str, token: Option<&str>) -> Option<String> {
        self.verified_device(user_id, token)
    }

    /// The answer of a completed login (see [`Self::logged_in`]).
    pub(crate) async fn login_answer(
        &self,
        account: Account,
        context: LoginContext,
        risk: &Assessment,
        events: Vec<(&'static str, Value)>,
        now: UnixMillis,
    ) -> Result<LoginVerified, ApiError> {
        self.logged_in(account, context, risk, events, now).await
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

    /// A device token: `dt1.<device id>.<keyed hash of user and device>`. The server issues it
    /// at a successful login; presented back, it proves the device logged in to this account.
    fn device_token(&self, user_id: &str, device_id: &str) -> String {
        let mac = self.keyring.secret_mac("device-token", format!("{user_id}:{device_id}").as_bytes());
        format!("dt1.{device_id}.{}", hex::encode(mac))
    }

    /// The device a token names, if the server issued it for this account.
    fn verified_device(&self, user_id: &str, token: Option<&str>) -> Option<String> {
        let mut parts = token?.split('.');
        let (Some("dt1"), Some(device), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let presented = hex::decode(mac).ok()?;
        let ok = self
            .keyring
            .secret_macs("device-token", format!("{user_id}:{device}").as_bytes())
            .iter()
            .any(|m| constant_time_eq(m, &presented));
        ok.then(|| device.to_owned())
    }

    /// Logs in: softlock, then the password, then the risk of the context, then a second
    /// factor when one is enrolled, the account requires one, or the risk asks for one. Every
    /// refusal for a wrong email or password is the same answer after the same work.
    pub async fn login(&self, request: LoginRequest, now: UnixMillis) -> Result<LoginVerified, ApiError> {
        // Every login costs one argon2 check: its place is taken first, so that a flood beyond
        // the pool is refused at once (503 + Retry-After), before any database work.
        let place = self.hasher.reserve().inspect_err(|_| metrics::login(outcome::OVERLOADED, "none"))?;
        let normalised_email = Email::parse(&request.credentials.email)
            .map(|e| e.as_str().to_owned())
            .unwrap_or_else(|_| request.credentials.email.trim().to_lowercase());
        let account_key = hex::encode(self.keyring.email_index(&normalised_email));
        let row = self.find_by_email(&normalised_email).await?;
        let user_for_facts = row.as_ref().map_or("usr_unknown", |r| r.id.as_str()).to_owned();
        // The history and the device token are read for unknown emails too, so that both cases
        // do the same work.
        let history = self.history(&user_for_facts).await?;
        let device = self.verified_device(&user_for_facts, request.device_token.as_deref());
        let context = LoginContext {
            device_id: device.clone(),
            network: request.context.ip.as_deref().map(risk::network_of),
            country: request.context.country.clone(),
            user_agent: request.context.user_agent.clone(),
        };
        let locks = LockKeys::of(&account_key, context.network.as_deref(), device.as_deref());
        let (recent_failures, waiting) = self.begin_attempt(&locks, now).await?;
        let tier_seen = row.as_ref().map_or("none", |r| r.tier.as_str()).to_owned();
        if let Some(wait) = waiting {
            metrics::login(outcome::SOFTLOCKED, &tier_seen);
            // An attempt during a pause is a failure too, refused without checking the
            // password: hammering only lengthens the pause.
            if let Some(r) = &row {
                self.event_later(
                    &r.id,
                    "login_throttled",
                    json!({ "retry_after": wait, "network": context.network }),
                    now,
                );
            }
            return Err(throttled("logins for this account", wait));
        }

        let matches = match self.password_matches_in(place, row.as_ref(), &request.credentials.password).await
        {
            Ok(matches) => matches,
            Err(e) => {
                self.end_attempt(&locks, Attempt::TakenBack, now).await?;
                return Err(e);
            }
        };
        let row = match row {
            Some(r) if matches && r.disabled_at.is_none() && r.password_hash.is_some() => r,
            other => {
                metrics::login(outcome::WRONG_PASSWORD, &tier_seen);
                self.end_attempt(&locks, Attempt::Failed, now).await?;
                if let Some(r) = &other {
                    let detail = json!({ "network": context.network, "device_known": device.is_some() });
                    self.event_later(&r.id, "login_failure", detail, now);
                }
                return Err(wrong_credentials());
            }
        };
        self.end_attempt(&locks, Attempt::Succeeded, now).await?;
        // The right password of an account waiting for its erasure: refused, saying how to
        // cancel (a wrong one got the same answer as any other above).
        self.refuse_if_erasing(&row.id).await?;

        let assessment = risk::assess(&context, &history, recent_failures, now);
        metrics::risk(&assessment);
        let account = self.unseal(row)?;
        let settings = &account.profile.security_settings;
        // An organization's policy adds to the member's own floor and narrows the factors.
        let (floor, org_policies) = self.member_floor(&account).await?;
        let enrolled = self.store.enrolled_factors(&account.row.id).await?;
        let risk_event = json!({ "score": assessment.score, "signals": assessment.signals });
        match security::login_decision(&enrolled, settings, &floor, assessment.score, org_policies.as_ref()) {
            SecondFactor::Refuse => {
                metrics::login(outcome::REFUSED_RISK, &tier_seen);
                self.event_later(&account.row.id, "risk_assessed", risk_event, now);
                self.event_later(&account.row.id, "login_refused", json!({ "score": assessment.score }), now);
                Err(ApiError::client(
                    ProblemKind::LoginRefused,
                    "this login looks too risky and the account has no second factor to confirm it",
                ))
            }
            SecondFactor::Ask { reason, factors } => {
                metrics::login(outcome::MFA_REQUIRED, &tier_seen);
                let id = format!("chl_{}", hex::encode(random_16()));
                let methods: Vec<String> = factors.iter().map(|f| f.as_str().to_owned()).collect();
                let challenge = Challenge {
                    user_id: account.row.id.clone(),
                    methods: methods.clone(),
                    context,
                    risk: assessment,
                    one_time_code: None,
                    failures: 0,
                    credential_stamp: credential_stamp(&account.row),
                };
                let value = serde_json::to_string(&challenge).map_err(internal)?;
                self.store
                    .state_put(&format!("challenge:{id}"), &value, now.saturating_add_ms(CHALLENGE_TTL_MS))
                    .await?;
                self.event_later(&account.row.id, "risk_assessed", risk_event, now);
                self.event_later(
                    &account.row.id,
                    "mfa_challenge",
                    json!({ "reason": reason, "methods": methods }),
                    now,
                );
                // Before the second factor, nothing about the account or the assessment: the
                // holder of a stolen password learns only that a factor is needed.
                let offered = MfaChallenge { mfa_required: true, challenge_id: id, methods: factors };
                let mut problem = Problem::new(
                    ProblemKind::MfaRequired,
                    format!("a second factor is {}", reason.describe()),
                );
                if let Value::Object(fields) = serde_json::to_value(&offered).map_err(internal)? {
                    problem.extensions.extend(fields);
                }
                Err(ApiError::Client(problem))
            }
            SecondFactor::NotNeeded => {
                self.logged_in(account, context, &assessment, vec![("risk_assessed", risk_event)], now).await
            }
        }
    }

    /// The answer of a completed login, and what it records (after the answer).
    async fn logged_in(
        &self,
        account: Account,
        mut context: LoginContext,
        risk: &Assessment,
        mut events: Vec<(&'static str, Value)>,
        now: UnixMillis,
    ) -> Result<LoginVerified, ApiError> {
        let device_id = context.device_id.clone().unwrap_or_else(|| hex::encode(random_16()));
        let device_token = self.device_token(&account.row.id, &device_id);
        context.device_id = Some(device_id);
        let (floor, _) = self.member_floor(&account).await?;
        let limits = floor.session_limits(&account.profile.security_settings);
        // The edge's gate learns the member's organization with the session (and the token
        // carries it as the `org` claim).
        let org = self.org_grant(&account.row.id).await?;
        events.push(("login_success", json!({ "network": context.network, "risk": risk.score })));
        metrics::login(outcome::SUCCESS, &account.row.tier);
        let store = std::sync::Arc::clone(&self.store);
        let user_id = account.row.id.clone();
        let context_json = serde_json::to_string(&context).map_err(internal)?;
        let events: Vec<(String, String)> =
            events.into_iter().map(|(kind, detail)| (kind.to_owned(), detail.to_string())).collect();
        self.write_behind("login record", async move {
            store.record_login_success(&user_id, &context_json, now, &events).await?;
            Ok(())
        });
        Ok(LoginVerified {
            tier: account.row.tier.parse().map_err(internal)?,
            role: account.row.role.parse().map_err(internal)?,
            user_id: account.row.id,
            version: u64::try_from(account.row.version).map_err(internal)?,
            session_timeout_minutes: limits.idle_ms / 60_000,
            session_absolute_ms: Some(limits.absolute_ms),
            device_token: Some(device_token),
            risk: Some(risk.clone()),
            org,
            org_at: Some(now.0),
        })
    }

    async fn challenge(&self, id: &str, now: UnixMillis) -> Result<Challenge, ApiError> {
        self.store
            .state_get(&format!("challenge:{id}"), now)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .ok_or_else(refused_challenge)
    }

    /// Sends a one-time code for a challenge by email or SMS, through the outbox.
    pub async fn send_code(&self, request: MfaSend, now: UnixMillis) -> Result<CodeSent, ApiError> {
        let challenge = self.challenge(&request.challenge_id, now).await?;
        let offered = challenge.methods.iter().any(|m| m == request.method.as_str());
        if !offered || !matches!(request.method, Factor::Email | Factor::Sms) {
            return Err(ApiError::client(
                ProblemKind::BadRequest,
                "codes are sent by email or SMS, when the login offers that method",
            ));
        }
        let id: UserId = challenge.user_id.parse().map_err(internal)?;
        let to = self.code_destination(&id, request.method.as_str()).await?;
        let code = six_digits();
        let one_time = OneTimeCode {
            channel: request.method.as_str().to_owned(),
            hash: sha256_hex(&code),
            expires_at: now.saturating_add_ms(OTP_TTL_MS),
            tries: 0,
        };
        let key = (format!("challenge:{}", request.challenge_id), now.saturating_add_ms(CHALLENGE_TTL_MS));
        let update = self
            .store
            .update_states(std::slice::from_ref(&key), now, &|values| {
                for value in values.iter_mut() {
                    let Some(mut c) = value.as_ref().and_then(|v| serde_json::from_str::<Challenge>(v).ok())
                    else {
                        continue;
                    };
                    c.one_time_code = Some(one_time.clone());
                    *value = serde_json::to_string(&c).ok();
                }
            })
            .await?;
        if update.after.first().is_none_or(Option::is_none) {
            return Err(refused_challenge());
        }
        let account = self.load(&id).await?;
        let template = Template::SignInCode { code: &code, minutes: OTP_TTL_MS / 60_000 };
        let message = self.message(&account, request.method.as_str(), &to, &template, Some(&code), now)?;
        self.send_message(message).await?;
        self.event_later(&challenge.user_id, "mfa_code_sent", json!({ "method": request.method }), now);
        Ok(CodeSent { sent: request.method, expires_in: OTP_TTL_MS / 1000 })
    }

    /// The options of a passkey assertion for a challenge that offers `webauthn`; its state is
    /// kept beside the challenge, for five minutes, and taken by the completion.
    pub async fn mfa_webauthn_options(
        &self,
        request: MfaSend,
        now: UnixMillis,
    ) -> Result<domain::wire::passkeys::AssertionOptions, ApiError> {
        let challenge = self.challenge(&request.challenge_id, now).await?;
        if !challenge.methods.iter().any(|m| m == "webauthn") {
            return Err(ApiError::client(ProblemKind::BadRequest, "this login does not offer a passkey"));
        }
        let key = format!("webauthn:mfa:{}", request.challenge_id);
        self.start_assertion(&challenge.user_id, &key, now).await
    }

    async fn code_destination(&self, id: &UserId, method: &str) -> Result<String, ApiError> {
        if method == "sms" {
            self.sms_number(id).await?.ok_or_else(|| {
                ApiError::client(ProblemKind::Conflict, "the phone number was removed; log in again")
            })
        } else {
            Ok(self.load(id).await?.email)
        }
    }

    /// Completes a challenge with a second factor. The account's wrong codes are counted
    /// atomically, before the code is checked, whatever the challenge; ten in an hour softlock
    /// the second factor. The challenge is consumed once, and only if the account is still
    /// enabled and its password unchanged since the challenge was made.
    pub async fn complete_mfa(&self, answer: MfaAnswer, now: UnixMillis) -> Result<LoginVerified, ApiError> {
        let key = format!("challenge:{}", answer.challenge_id);
        let challenge = self.challenge(&answer.challenge_id, now).await?;
        if !challenge.methods.iter().any(|m| m == answer.method.as_str()) {
            return Err(ApiError::client(
                ProblemKind::BadRequest,
                format!("{} is not offered for this login", answer.method.as_str()),
            ));
        }
        let id: UserId = challenge.user_id.parse().map_err(internal)?;
        let row = self.store.user_by_id(id.as_str()).await?;
        let still_valid = row
            .as_ref()
            .is_some_and(|r| r.disabled_at.is_none() && credential_stamp(r) == challenge.credential_stamp);
        let Some(row) = row.filter(|_| still_valid) else {
            self.store.state_delete(&key).await?;
            return Err(ApiError::client(
                ProblemKind::Unauthenticated,
                "the challenge ended: the account was disabled or its password changed; log in again",
            ));
        };
        self.refuse_if_erasing(id.as_str()).await?;

        // Count the try against the account and the challenge, atomically, before checking.
        let keys = [
            (mfa_key(id.as_str()), now.saturating_add_ms(MFA_COUNTER_TTL_MS)),
            (key.clone(), now.saturating_add_ms(CHALLENGE_TTL_MS)),
        ];
        let update = self
            .store
            .update_states(&keys, now, &|values| {
                if let [counter, challenge] = values {
                    let mut failures: MfaFailures = parse_or_default(counter.as_ref());
                    failures.record_failure(now);
                    *counter = serde_json::to_string(&failures).ok();
                    if let Some(mut c) =
                        challenge.as_ref().and_then(|v| serde_json::from_str::<Challenge>(v).ok())
                    {
                        c.failures += 1;
                        if let Some(code) = &mut c.one_time_code {
                            code.tries += 1;
                        }
                        *challenge = serde_json::to_string(&c).ok();
                    }
                }
            })
            .await?;
        let before_counter: MfaFailures = parse_or_default(update.before.first().and_then(Option::as_ref));
        let Some(before) = update
            .before
            .get(1)
            .and_then(Option::as_ref)
            .and_then(|v| serde_json::from_str::<Challenge>(v).ok())
        else {
            return Err(refused_challenge());
        };
        if let Err(wait) = before_counter.check(now) {
            self.event_later(id.as_str(), "mfa_throttled", json!({ "retry_after": wait }), now);
            return Err(throttled("second-factor codes for this account", wait));
        }
        if before.failures >= OTP_MAX_TRIES {
            self.store.state_delete(&key).await?;
            return Err(refused_challenge());
        }
        let assertion = (format!("webauthn:mfa:{}", answer.challenge_id), answer.credential.as_ref());
        let ok = self
            .check_factor(
                &id,
                answer.method.as_str(),
                &answer.code,
                before.one_time_code.as_ref(),
                assertion,
                now,
            )
            .await?;
        if !ok {
            if before.failures + 1 >= OTP_MAX_TRIES {
                self.store.state_delete(&key).await?;
            }
            self.event_later(id.as_str(), "mfa_failure", json!({ "method": answer.method }), now);
            metrics::mfa(answer.method.as_str(), false);
            metrics::login(outcome::MFA_FAILED, &row.tier);
            return Err(ApiError::client(
                ProblemKind::Unauthenticated,
                "the code is wrong, expired or already used",
            ));
        }
        self.give_back_mfa_try(&id, now).await?;
        // Consumed once: of two completions racing with good codes, one gets the challenge.
        if self.store.state_take(&key, now).await?.is_none() {
            return Err(refused_challenge());
        }
        metrics::mfa(answer.method.as_str(), true);
        let account = self.unseal(row)?;
        let events = vec![("mfa_success", json!({ "method": answer.method }))];
        self.logged_in(account, challenge.context, &challenge.risk, events, now).await
    }

    /// Takes a counted second-factor try off the account's count: it was a good code.
    async fn give_back_mfa_try(&self, id: &UserId, now: UnixMillis) -> Result<(), ApiError> {
        self.store
            .update_states(
                &[(mfa_key(id.as_str()), now.saturating_add_ms(MFA_COUNTER_TTL_MS))],
                now,
                &|values| {
                    for value in values.iter_mut() {
                        let mut failures: MfaFailures = parse_or_default(value.as_ref());
                        failures.undo_failure();
                        *value = serde_json::to_string(&failures).ok();
                    }
                },
            )
            .await?;
        Ok(())
    }

    /// Whether `code` is right for `method`. TOTP steps and recovery codes are used up
    /// atomically; a code by email or SMS must match the one sent for that channel.
    /// A passkey answers the assertion whose state waits under the given key.
    async fn check_factor(
        &self,
        id: &UserId,
        method: &str,
        code: &str,
        sent: Option<&OneTimeCode>,
        (ceremony, credential): (String, Option<&Value>),
        now: UnixMillis,
    ) -> Result<bool, ApiError> {
        Ok(match method {
            "webauthn" => self.verify_assertion(id.as_str(), &ceremony, credential, now).await?,
            "totp" => self.check_totp(id, code, now).await?,
            "recovery_code" => {
                let normalised = code.trim().to_uppercase().replace([' ', '-'], "");
                let mut candidates: Vec<String> = self
                    .keyring
                    .secret_macs("recovery-code", format!("{id}:{normalised}").as_bytes())
                    .iter()
                    .map(hex::encode)
                    .collect();
                // Codes issued before keyed hashing were stored as plain SHA-256.
                candidates.push(sha256_hex(&normalised));
                self.store.use_recovery_code(id.as_str(), &candidates, now).await?
            }
            "email" | "sms" => sent.is_some_and(|c| {
                c.channel == method
                    && now < c.expires_at
                    && c.tries < OTP_MAX_TRIES
                    && constant_time_eq(c.hash.as_bytes(), sha256_hex(code.trim()).as_bytes())
            }),
            _ => false,
        })
    }

    /// Checks a factor code for a sensitive change, counted like a login's second factor.
    async fn counted_factor_check(
        &self,
        id: &UserId,
        method: &str,
        code: &str,
        sent: Option<&OneTimeCode>,
        credential: Option<&Value>,
        now: UnixMillis,
    ) -> Result<bool, ApiError> {
        let keys = [(mfa_key(id.as_str()), now.saturating_add_ms(MFA_COUNTER_TTL_MS))];
        let update = self
            .store
            .update_states(&keys, now, &|values| {
                for value in values.iter_mut() {
                    let mut failures: MfaFailures = parse_or_default(value.as_ref());
                    failures.record_failure(now);
                    *value = serde_json::to_string(&failures).ok();
                }
            })
            .await?;
        let before: MfaFailures = parse_or_default(update.before.first().and_then(Option::as_ref));
        if let Err(wait) = before.check(now) {
            return Err(throttled("second-factor codes for this account", wait));
        }
        let assertion = (format!("webauthn:stepup:{id}"), credential);
        let ok = self.check_factor(id, method, code, sent, assertion, now).await?;
        if ok {
            self.give_back_mfa_try(id, now).await?;
        } else {
            self.event_later(id.as_str(), "mfa_failure", json!({ "method": method }), now);
        }
        Ok(ok)
    }

    async fn check_totp(&self, id: &UserId, code: &str, now: UnixMillis) -> Result<bool, ApiError> {
        let Some(factor) = self.store.totp(id.as_str()).await? else { return Ok(false) };
        if factor.confirmed_at.is_none() {
            return Ok(false);
        }
        let account = self.load(id).await?;
        let secret = account.data_key.open(&factor.secret_sealed, &format!("{id}/totp"))?;
        let Some(step) = totp::verify(&secret, code, now, factor.last_step) else { return Ok(false) };
        // Recorded atomically: the same code presented twice passes once.
        Ok(self.store.use_totp_step(id.as_str(), step).await?)
    }

    /// Checks the account's current password for a change that needs it. A wrong one counts
    /// against the account's softlock like a failed login, atomically; while the account is
    /// softlocked, the check is refused without looking at the password.
    pub(crate) async fn check_current_password(
        &self,
        account: &Account,
        given: Option<&str>,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        let place = self.hasher.reserve()?;
        let account_key = hex::encode(self.keyring.email_index(&account.email));
        let locks = LockKeys::of(&account_key, None, None);
        if let (_, Some(wait)) = self.begin_attempt(&locks, now).await? {
            return Err(throttled("password checks for this account", wait));
        }
        let matches =
            match self.password_matches_in(place, Some(&account.row), given.unwrap_or_default()).await {
                Ok(m) => m,
                Err(e) => {
                    self.end_attempt(&locks, Attempt::TakenBack, now).await?;
                    return Err(e);
                }
            };
        if matches {
            self.end_attempt(&locks, Attempt::TakenBack, now).await?;
            Ok(())
        } else {
            self.event_later(account.row.id.as_str(), "password_check_failure", json!({}), now);
            Err(ApiError::client(ProblemKind::Unauthenticated, "the current password is wrong"))
        }
    }

    /// The recent authentication a change needs: the caller may act on the account, and gives
    /// its current password (counted, see [`Self::check_current_password`]).
    pub(crate) async fn recent_auth(
        &self,
        actor: &Actor,
        id: &UserId,
        password: Option<&str>,
        now: UnixMillis,
    ) -> Result<Account, ApiError> {
        crate::users::authorize(actor, id)?;
        let account = self.load(id).await?;
        self.check_current_password(&account, password, now).await?;
        Ok(account)
    }

    /// The fresh proof a sensitive change needs (weakening the security settings, removing a
    /// factor): a step-up of the caller's session within the last five minutes, or, within the
    /// request, the current password and — when a factor is enrolled — a code from it.
    pub(crate) async fn require_fresh_proof(
        &self,
        actor: &Actor,
        id: &UserId,
        proof: &Proof,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        crate::users::authorize(actor, id)?;
        if security::step_up_fresh(proof.step_up_at.map(UnixMillis), now) {
            return Ok(());
        }
        let enrolled = self.store.enrolled_factors(id.as_str()).await?;
        let methods = self.proof_methods(&enrolled);
        let Some(password) = proof.current_password.as_deref() else {
            return Err(step_up_required(&methods, "this change needs your current password and a second factor, or a step-up (POST /api/v1/auth/step-up) in the last 5 minutes"));
        };
        let account = self.load(id).await?;
        self.check_current_password(&account, Some(password), now).await?;
        if !enrolled.any() {
            return Ok(());
        }
        let (Some(method), Some(code)) =
            (proof.method.as_deref(), proof.code.as_deref().or(proof.credential.as_ref().map(|_| "")))
        else {
            return Err(step_up_required(&methods, "this change also needs a code from your second factor"));
        };
        if !methods.iter().any(|m| m == method) {
            return Err(ApiError::client(
                ProblemKind::BadRequest,
                format!("{method} is not one of your factors"),
            ));
        }
        let sent = self.sent_step_up_code(id, now).await?;
        if self.counted_factor_check(id, method, code, sent.as_ref(), proof.credential.as_ref(), now).await? {
            Ok(())
        } else {
            Err(ApiError::client(ProblemKind::Unauthenticated, "the code is wrong, expired or already used"))
        }
    }

    fn proof_methods(&self, enrolled: &security::Enrolled) -> Vec<String> {
        security::proof_factors(enrolled).into_iter().map(|f| f.as_str().to_owned()).collect()
    }

    async fn sent_step_up_code(&self, id: &UserId, now: UnixMillis) -> Result<Option<OneTimeCode>, ApiError> {
        Ok(self
            .store
            .state_get(&format!("stepup:{id}"), now)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// A step-up: the caller proves again who they are (password, and a code from a factor
    /// when one is enrolled). For SMS, a first call without a code texts one (202).
    pub async fn step_up(
        &self,
        actor: &Actor,
        id: &UserId,
        proof: Proof,
        now: UnixMillis,
    ) -> Result<StepUp, ApiError> {
        if actor.user_id() != Some(id) {
            return Err(ApiError::client(ProblemKind::Forbidden, "a step-up proves your own identity only"));
        }
        let enrolled = self.store.enrolled_factors(id.as_str()).await?;
        if enrolled.webauthn && proof.method.as_deref() == Some("webauthn") && proof.credential.is_none() {
            // The first call proves the password and answers a passkey assertion's options.
            let account = self.load(id).await?;
            self.check_current_password(&account, proof.current_password.as_deref(), now).await?;
            let options = self.start_assertion(id.as_str(), &format!("webauthn:stepup:{id}"), now).await?;
            return Ok(StepUp::Options(options));
        }
        if enrolled.sms && proof.method.as_deref() == Some("sms") && proof.code.is_none() {
            let account = self.load(id).await?;
            self.check_current_password(&account, proof.current_password.as_deref(), now).await?;
            let code = six_digits();
            let sent = OneTimeCode {
                channel: "sms".into(),
                hash: sha256_hex(&code),
                expires_at: now.saturating_add_ms(OTP_TTL_MS),
                tries: 0,
            };
            let value = serde_json::to_string(&sent).map_err(internal)?;
            self.store.state_put(&format!("stepup:{id}"), &value, sent.expires_at).await?;
            let to = self.code_destination(id, "sms").await?;
            let template = Template::ConfirmationCode { code: &code, minutes: OTP_TTL_MS / 60_000 };
            let message = self.message(&account, "sms", &to, &template, Some(&code), now)?;
            self.send_message(message).await?;
            return Ok(StepUp::CodeSent);
        }
        let fresh_proof = Proof { step_up_at: None, ..proof };
        self.require_fresh_proof(actor, id, &fresh_proof, now).await?;
        self.store.state_delete(&format!("stepup:{id}")).await?;
        self.event_later(id.as_str(), "step_up", json!({ "method": fresh_proof.method }), now);
        Ok(StepUp::Done { at: now })
    }

    /// Starts TOTP enrolment: a new secret, unconfirmed until a first code proves the app has it.
    pub async fn enrol_totp(
        &self,
        actor: &Actor,
        id: &UserId,
        password: Option<&str>,
        now: UnixMillis,
    ) -> Result<domain::wire::users::TotpEnrolment, ApiError> {
        let account = self.recent_auth(actor, id, password, now).await?;
        if self.store.totp(id.as_str()).await?.is_some_and(|t| t.confirmed_at.is_some()) {
            return Err(ApiError::client(
                ProblemKind::Conflict,
                "an authenticator is already enrolled; remove it first",
            ));
        }
        let secret: Vec<u8> = random_16().into_iter().chain(random_16()).take(totp::SECRET_BYTES).collect();
        let sealed = account.data_key.seal(&secret, &format!("{id}/totp"));
        self.store.put_pending_totp(id.as_str(), &sealed).await?;
        self.event(id.as_str(), "mfa_enrolment_started", json!({ "method": "totp" }), now).await?;
        let otpauth_uri = totp::otpauth_uri(&secret, "Music AI", &account.email);
        Ok(domain::wire::users::TotpEnrolment {
            secret: totp::secret_base32(&secret),
            qr_svg: qr_svg(&otpauth_uri)?,
            otpauth_uri,
            digits: totp::DIGITS,
            period: totp::STEP_SECS,
        })
    }

    /// Confirms enrolment with a first code; answers the ten recovery codes, shown only now.
    /// Each code is 80 random bits, stored as a keyed hash (NIST SP 800-63B).
    pub async fn confirm_totp(
        &self,
        actor: &Actor,
        id: &UserId,
        code: &str,
        now: UnixMillis,
    ) -> Result<domain::wire::users::FactorEnrolled, ApiError> {
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
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| hex::encode(self.keyring.secret_mac("recovery-code", format!("{id}:{c}").as_bytes())))
            .collect();
        self.store.confirm_totp(id.as_str(), now, step, &hashes).await?;
        self.event(id.as_str(), "mfa_enrolled", json!({ "method": "totp" }), now).await?;
        // Shown as four groups of four for reading aloud; accepted with or without the dashes.
        let shown: Vec<String> = codes
            .iter()
            .map(|c| {
                let chars: Vec<char> = c.chars().collect();
                chars.chunks(4).map(|g| g.iter().collect::<String>()).collect::<Vec<_>>().join("-")
            })
            .collect();
        Ok(domain::wire::users::FactorEnrolled {
            enrolled: domain::security::Factor::Totp,
            recovery_codes: Some(shown),
            phone: None,
        })
    }

    /// Removes the authenticator: a sensitive change, so it needs a fresh proof.
    pub async fn remove_totp(
        &self,
        actor: &Actor,
        id: &UserId,
        proof: &Proof,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        self.require_fresh_proof(actor, id, proof, now).await?;
        self.store.delete_totp(id.as_str()).await?;
        self.event(id.as_str(), "mfa_removed", json!({ "method": "totp" }), now).await?;
        Ok(())
    }

    pub async fn security_events(
        &self,
        actor: &Actor,
        id: &UserId,
    ) -> Result<domain::wire::users::SecurityEvents, ApiError> {
        crate::users::authorize(actor, id)?;
        let events = self.store.security_events(id.as_str(), 100).await?;
        let events = events
            .into_iter()
            .map(|e| domain::wire::users::SecurityEvent {
                kind: e.kind,
                at: crate::users::rfc3339(e.at),
                detail: serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
            })
            .collect();
        Ok(domain::wire::users::SecurityEvents { events })
    }
}

/// The outcome of a step-up.
pub enum StepUp {
    Done {
        at: UnixMillis,
    },
    CodeSent,
    /// The options of a passkey assertion, for the second call.
    Options(domain::wire::passkeys::AssertionOptions),
}

fn step_up_required(methods: &[String], detail: &str) -> ApiError {
    ApiError::Client(
        Problem::new(ProblemKind::StepUpRequired, detail.to_owned()).with("methods", methods.to_vec()),
    )
}

/// The security floor of an account (its tier's and role's).
pub(crate) fn floor_of(account: &Account) -> Result<SecurityFloor, ApiError> {
    let tier: Tier = account.row.tier.parse().map_err(internal)?;
    let role: Role = account.row.role.parse().map_err(internal)?;
    Ok(SecurityFloor::of(tier, role))
}

/// The `otpauth://` URI as a QR code in SVG, so the account page shows it without a QR script
/// of its own and without sending the secret anywhere.
fn qr_svg(uri: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(internal)?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
}

fn six_digits() -> String {
    let r = random_16();
    let n = u32::from_be_bytes([r[0], r[1], r[2], r[3]]) % 1_000_000;
    format!("{n:06}")
}

fn recovery_code() -> String {
    let bytes: Vec<u8> = random_16().into_iter().take(RECOVERY_CODE_BYTES).collect();
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_carry_eighty_bits() {
        let code = recovery_code();
        assert_eq!(code.len(), 16);
        assert_eq!(data_encoding::BASE32_NOPAD.decode(code.as_bytes()).unwrap().len() * 8, 80);
        assert_ne!(recovery_code(), recovery_code());
    }
}
