//! Passkeys and security keys (WebAuthn) at the origin, the relying party: registration (a
//! logged-in user with a recent authentication), passwordless sign-in with a discoverable
//! credential (also offered as passkey autofill), and the assertions the second factor and the
//! step-up use. `webauthn-rs` verifies every ceremony; `domain::passkey` holds the rules around
//! it (the tier's policy, the counter and backup-flag checks, labels).
//!
//! A ceremony's state waits in `auth_state` under a random id for five minutes and is taken
//! once (`Store::state_take`): of two answers to one challenge, at most one is verified. Every
//! use moves the credential's counter by compare-and-set, so two uses racing with one counter
//! value cannot both pass.

use domain::identity::{Actor, UserId};
use domain::passkey::{self, SeenUse, StoredUse, CEREMONY_TTL_MS};
use domain::problem::{Problem, ProblemKind};
use domain::risk::{self, LoginContext};
use domain::tier::Tier;
use domain::time::UnixMillis;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::crypto::random_16;
use crate::errors::ApiError;
use crate::store::{PasskeyInsert, PasskeyRow, PasskeyUse};
use crate::users::Accounts;

/// Builds the relying party from the configured RP id and origin.
pub fn relying_party(rp_id: &str, origin: &str) -> anyhow::Result<Webauthn> {
    let url = Url::parse(origin)?;
    Ok(WebauthnBuilder::new(rp_id, &url)?.rp_name("Music AI").build()?)
}

use domain::wire::passkeys::{
    AssertionOptions, Mediation, PasskeyList, PasskeyLoginOptions, RegistrationOptions,
};
pub use domain::wire::passkeys::{
    PasskeyKind, RegisterPasskeyRequest as RegistrationFinish, RegistrationStart,
    RenamePasskeyRequest as Rename,
};

/// A passwordless sign-in's answer, as the edge forwards it (`/internal/auth/webauthn/login`).
pub type PasswordlessFinish = domain::wire::auth::SignIn<domain::wire::auth::PasskeyCredentials>;

#[derive(Serialize, Deserialize)]
struct RegistrationState {
    user_id: String,
    user_handle: String,
    kind: PasskeyKind,
    state: PasskeyRegistration,
}

#[derive(Serialize, Deserialize)]
struct AssertionState {
    /// The account the assertion must come from (`None`: passwordless, any account).
    user_id: Option<String>,
    state: Value,
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::client(ProblemKind::BadRequest, detail.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

fn ceremony_expired() -> ApiError {
    ApiError::client(
        ProblemKind::Unauthenticated,
        "the passkey ceremony is unknown, used or expired; start again",
    )
}

fn new_ceremony_id() -> String {
    format!("wac_{}", hex::encode(random_16()))
}

/// What a stored credential looks like to its owner.
fn view(row: &PasskeyRow) -> domain::wire::passkeys::Passkey {
    domain::wire::passkeys::Passkey {
        id: row.id.clone(),
        label: row.label.clone(),
        kind: PasskeyKind::of(row.discoverable),
        aaguid: row.aaguid.clone(),
        backup_eligible: row.backup_eligible,
        backup_state: row.backup_state,
        transports: serde_json::from_str::<Value>(&row.transports).unwrap_or(Value::Null),
        counter: row.counter,
        created_at: crate::users::rfc3339(row.created_at),
        last_used_at: row.last_used_at.map(crate::users::rfc3339),
    }
}

/// The counter and flags webauthn-rs keeps inside a serialised passkey.
fn credential_facts(passkey: &Passkey) -> Result<(u32, bool, bool, Value), ApiError> {
    let value = serde_json::to_value(passkey).map_err(internal)?;
    let cred = value.get("cred").ok_or_else(|| internal("a passkey without its credential"))?;
    let counter = cred.get("counter").and_then(Value::as_u64).unwrap_or(0);
    Ok((
        u32::try_from(counter).unwrap_or(u32::MAX),
        cred.get("backup_eligible").and_then(Value::as_bool).unwrap_or(false),
        cred.get("backup_state").and_then(Value::as_bool).unwrap_or(false),
        cred.get("transports").cloned().unwrap_or(Value::Null),
    ))
}

impl Accounts {
    fn tier_of(row: &crate::store::UserRow) -> Result<Tier, ApiError> {
        row.tier.parse().map_err(internal)
    }

    /// Starts registering a passkey or security key: the caller's recent authentication, the
    /// tier's policy, then the options for `navigator.credentials.create`.
    pub async fn passkey_registration_start(
        &self,
        actor: &Actor,
        id: &UserId,
        request: RegistrationStart,
        now: UnixMillis,
    ) -> Result<RegistrationOptions, ApiError> {
        crate::users::authorize(actor, id)?;
        let account = if domain::security::step_up_fresh(request.step_up_at.map(UnixMillis), now) {
            self.load(id).await?
        } else {
            self.recent_auth(actor, id, request.current_password.as_deref(), now).await?
        };
        let policy = &Self::tier_of(&account.row)?.rules().passkey_policy;
        if policy.attested_keys_only {
            return Err(ApiError::client(
                ProblemKind::Conflict,
                "this tier accepts only attested hardware keys, and this service has no attestation CA list configured",
            ));
        }
        let existing = self.store.passkeys(id.as_str()).await?;
        if existing.len() >= passkey::MAX_PASSKEYS {
            return Err(ApiError::client(
                ProblemKind::Conflict,
                format!("an account holds at most {} passkeys; remove one first", passkey::MAX_PASSKEYS),
            ));
        }
        let user_handle = match existing.first() {
            Some(row) => Uuid::parse_str(&row.user_handle).map_err(internal)?,
            None => Uuid::from_bytes(random_16()),
        };
        let exclude: Vec<_> = existing
            .iter()
            .filter_map(|row| serde_json::from_str::<Passkey>(&row.passkey).ok())
            .map(|p| p.cred_id().clone())
            .collect();
        let display = account.profile.display_name.clone().unwrap_or_else(|| account.email.clone());
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user_handle, &account.email, &display, Some(exclude))
            .map_err(internal)?;
        let mut options = serde_json::to_value(options.public_key).map_err(internal)?;
        // A passkey is created discoverable (resident): it signs in without an email. A security
        // key is asked for on a roaming authenticator and kept as a second factor.
        let selection = match request.kind {
            PasskeyKind::Passkey => json!({
                "residentKey": "required",
                "requireResidentKey": true,
                "userVerification": "required",
            }),
            PasskeyKind::SecurityKey => json!({
                "authenticatorAttachment": "cross-platform",
                "residentKey": "discouraged",
                "requireResidentKey": false,
                "userVerification": "required",
            }),
        };
        if let Some(o) = options.as_object_mut() {
            o.insert("authenticatorSelection".into(), selection);
            if request.kind == PasskeyKind::SecurityKey {
                o.insert("hints".into(), json!(["security-key"]));
            }
        }
        let ceremony_id = new_ceremony_id();
        let stored = RegistrationState {
            user_id: id.to_string(),
            user_handle: user_handle.to_string(),
            kind: request.kind,
            state,
        };
        self.store
            .state_put(
                &format!("webauthn:reg:{ceremony_id}"),
                &serde_json::to_string(&stored).map_err(internal)?,
                now.saturating_add_ms(CEREMONY_TTL_MS),
            )
            .await?;
        Ok(RegistrationOptions { ceremony_id, public_key: options, expires_in: CEREMONY_TTL_MS / 1000 })
    }

    /// Verifies the authenticator's answer and stores the credential.
    pub async fn passkey_registration_finish(
        &self,
        actor: &Actor,
        id: &UserId,
        request: RegistrationFinish,
        now: UnixMillis,
    ) -> Result<domain::wire::passkeys::Passkey, ApiError> {
        crate::users::authorize(actor, id)?;
        let label = match request.label.as_deref() {
            Some(raw) => passkey::label(raw).ok_or_else(|| {
                ApiError::Client(
                    Problem::new(
                        ProblemKind::ValidationFailed,
                        format!(
                            "the label must be 1 to {} characters, without control characters",
                            passkey::MAX_LABEL_CHARS
                        ),
                    )
                    .with("field", "label"),
                )
            })?,
            None => String::new(),
        };
        let credential: RegisterPublicKeyCredential = serde_json::from_value(request.credential)
            .map_err(|e| bad(format!("credential is not a WebAuthn registration answer: {e}")))?;
        let stored: RegistrationState = self
            .store
            .state_take(&format!("webauthn:reg:{}", request.ceremony_id), now)
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .filter(|s: &RegistrationState| s.user_id == id.as_str())
            .ok_or_else(ceremony_expired)?;
        let passkey = self.webauthn.finish_passkey_registration(&credential, &stored.state).map_err(|e| {
            ApiError::client(
                ProblemKind::ValidationFailed,
                format!("the authenticator's answer does not verify: {e}"),
            )
        })?;
        let aaguid = passkey::aaguid_of(&credential.response.attestation_object)
            .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".to_owned());
        let account = self.load(id).await?;
        let policy = &Self::tier_of(&account.row)?.rules().passkey_policy;
        if let Err(refusal) = policy.admits(&aaguid) {
            self.event(id.as_str(), refusal.event_kind(), json!({ "aaguid": aaguid }), now).await?;
            return Err(ApiError::client(ProblemKind::Forbidden, refusal.to_string()));
        }
        let (counter, backup_eligible, backup_state, transports) = credential_facts(&passkey)?;
        let discoverable = stored.kind.discoverable();
        let label = if label.is_empty() { stored.kind.default_label().to_owned() } else { label };
        let row = PasskeyRow {
            id: credential.id.clone(),
            user_id: id.to_string(),
            user_handle: stored.user_handle,
            passkey: serde_json::to_string(&passkey).map_err(internal)?,
            counter,
            aaguid,
            backup_eligible,
            backup_state,
            discoverable,
            transports: transports.to_string(),
            label,
            created_at: now,
            last_used_at: None,
        };
        match self.store.insert_passkey(&row, passkey::MAX_PASSKEYS).await? {
            PasskeyInsert::Inserted => {}
            PasskeyInsert::Duplicate => {
                return Err(ApiError::client(
                    ProblemKind::Conflict,
                    "this authenticator is registered already",
                ))
            }
            PasskeyInsert::TooMany => {
                return Err(ApiError::client(
                    ProblemKind::Conflict,
                    format!("an account holds at most {} passkeys; remove one first", passkey::MAX_PASSKEYS),
                ))
            }
        }
        let detail = json!({ "method": "webauthn", "credential": row.id, "kind": stored.kind });
        self.event(id.as_str(), "mfa_enrolled", detail, now).await?;
        Ok(view(&row))
    }

    pub async fn list_passkeys(&self, actor: &Actor, id: &UserId) -> Result<PasskeyList, ApiError> {
        crate::users::authorize(actor, id)?;
        let rows = self.store.passkeys(id.as_str()).await?;
        Ok(PasskeyList { passkeys: rows.iter().map(view).collect() })
    }

    pub async fn rename_passkey(
        &self,
        actor: &Actor,
        id: &UserId,
        credential_id: &str,
        request: Rename,
    ) -> Result<domain::wire::passkeys::Passkey, ApiError> {
        crate::users::authorize(actor, id)?;
        let label = passkey::label(&request.label).ok_or_else(|| {
            ApiError::Client(
                Problem::new(
                    ProblemKind::ValidationFailed,
                    format!(
                        "the label must be 1 to {} characters, without control characters",
                        passkey::MAX_LABEL_CHARS
                    ),
                )
                .with("field", "label"),
            )
        })?;
        if !self.store.rename_passkey(id.as_str(), credential_id, &label).await? {
            return Err(ApiError::client(ProblemKind::NotFound, format!("no passkey {credential_id}")));
        }
        let row =
            self.store.passkey(credential_id).await?.ok_or_else(|| {
                ApiError::client(ProblemKind::NotFound, format!("no passkey {credential_id}"))
            })?;
        Ok(view(&row))
    }

    /// Removes a passkey: removing a factor is a sensitive change, so it needs a fresh proof.
    pub async fn remove_passkey(
        &self,
        actor: &Actor,
        id: &UserId,
        credential_id: &str,
        proof: &crate::protection::Proof,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        crate::users::authorize(actor, id)?;
        if !self.store.passkeys(id.as_str()).await?.iter().any(|p| p.id == credential_id) {
            return Err(ApiError::client(ProblemKind::NotFound, format!("no passkey {credential_id}")));
        }
        self.require_fresh_proof(actor, id, proof, now).await?;
        if !self.store.delete_passkey(id.as_str(), credential_id).await? {
            return Err(ApiError::client(ProblemKind::NotFound, format!("no passkey {credential_id}")));
        }
        let detail = json!({ "method": "webauthn", "credential": credential_id });
        self.event(id.as_str(), "mfa_removed", detail, now).await?;
        Ok(())
    }

    /// Starts an assertion by one of the user's credentials (a second factor, a step-up), its
    /// state kept under `key`: the options for `navigator.credentials.get`.
    pub(crate) async fn start_assertion(
        &self,
        user_id: &str,
        key: &str,
        now: UnixMillis,
    ) -> Result<AssertionOptions, ApiError> {
        let passkeys: Vec<Passkey> = self
            .store
            .passkeys(user_id)
            .await?
            .iter()
            .filter_map(|row| serde_json::from_str(&row.passkey).ok())
            .collect();
        if passkeys.is_empty() {
            return Err(ApiError::client(ProblemKind::Conflict, "the account has no passkey"));
        }
        let (options, state) = self.webauthn.start_passkey_authentication(&passkeys).map_err(internal)?;
        let stored = AssertionState {
            user_id: Some(user_id.to_owned()),
            state: serde_json::to_value(&state).map_err(internal)?,
        };
        self.store
            .state_put(
                key,
                &serde_json::to_string(&stored).map_err(internal)?,
                now.saturating_add_ms(CEREMONY_TTL_MS),
            )
            .await?;
        let public_key = serde_json::to_value(options.public_key).map_err(internal)?;
        Ok(AssertionOptions { public_key, expires_in: CEREMONY_TTL_MS / 1000 })
    }

    /// Verifies an assertion answering the ceremony under `key`, by one of `user_id`'s
    /// credentials. False when the ceremony is gone or the answer does not verify; a refusal
    /// of the credential itself (cloned counter, changed backup flag) is an error, recorded as
    /// a security event.
    pub(crate) async fn verify_assertion(
        &self,
        user_id: &str,
        key: &str,
        credential: Option<&Value>,
        now: UnixMillis,
    ) -> Result<bool, ApiError> {
        let Some(credential) = credential else {
            return Err(bad("method webauthn needs `credential`: the authenticator's answer"));
        };
        let credential: PublicKeyCredential = serde_json::from_value(credential.clone())
            .map_err(|e| bad(format!("credential is not a WebAuthn assertion: {e}")))?;
        let Some(stored) = self
            .store
            .state_take(key, now)
            .await?
            .and_then(|v| serde_json::from_str::<AssertionState>(&v).ok())
            .filter(|s| s.user_id.as_deref() == Some(user_id))
        else {
            return Ok(false);
        };
        let state: PasskeyAuthentication = serde_json::from_value(stored.state).map_err(internal)?;
        let Some(row) = self.store.passkey(&credential.id).await?.filter(|r| r.user_id == user_id) else {
            return Ok(false);
        };
        let result = self.webauthn.finish_passkey_authentication(&credential, &state);
        self.record_use(&row, result, now).await
    }

    /// Checks and records a verified use of `row` (see the module doc); false when the
    /// signature did not verify.
    async fn record_use(
        &self,
        row: &PasskeyRow,
        result: Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
        now: UnixMillis,
    ) -> Result<bool, ApiError> {
        let stored = StoredUse { counter: row.counter, backup_eligible: row.backup_eligible };
        let result = match result {
            Ok(result) => result,
            // webauthn-rs makes the same two checks; its refusals are recorded alike.
            Err(WebauthnError::CredentialPossibleCompromise) => {
                let refusal =
                    passkey::Refusal::CounterWentBackwards { stored: row.counter, seen: row.counter };
                return Err(self.refuse_credential(row, refusal, now).await);
            }
            Err(WebauthnError::CredentialBackupEligibilityInconsistent) => {
                return Err(self
                    .refuse_credential(row, passkey::Refusal::BackupEligibilityChanged, now)
                    .await);
            }
            Err(e) => {
                tracing::info!(error = %e, "a WebAuthn assertion did not verify");
                return Ok(false);
            }
        };
        let seen = SeenUse { counter: result.counter(), backup_eligible: result.backup_eligible() };
        if let Err(refusal) = passkey::check_use(stored, seen) {
            return Err(self.refuse_credential(row, refusal, now).await);
        }
        let mut passkey: Passkey = serde_json::from_str(&row.passkey).map_err(internal)?;
        passkey.update_credential(&result);
        let update = PasskeyUse {
            expected_counter: row.counter,
            counter: result.counter(),
            backup_state: result.backup_state(),
            passkey: serde_json::to_string(&passkey).map_err(internal)?,
            at: now,
        };
        if !self.store.use_passkey(&row.id, &update).await? {
            // Another use moved the counter first: this one carried the same or an older value.
            let refusal =
                passkey::Refusal::CounterWentBackwards { stored: row.counter, seen: result.counter() };
            return Err(self.refuse_credential(row, refusal, now).await);
        }
        Ok(true)
    }

    /// Records a refused credential as a security event (before answering) and builds the answer.
    async fn refuse_credential(
        &self,
        row: &PasskeyRow,
        refusal: passkey::Refusal,
        now: UnixMillis,
    ) -> ApiError {
        let detail = json!({ "credential": row.id, "label": row.label, "reason": refusal.to_string() });
        if let Err(e) = self.event(&row.user_id, refusal.event_kind(), detail, now).await {
            return e;
        }
        ApiError::Client(
            Problem::new(ProblemKind::Unauthenticated, format!("this passkey was refused: {refusal}"))
                .with("reason", refusal.event_kind()),
        )
    }

    /// Starts a passwordless sign-in: options for a discoverable credential (also for the
    /// browser's passkey autofill, `mediation: conditional`).
    pub async fn passwordless_start(&self, now: UnixMillis) -> Result<PasskeyLoginOptions, ApiError> {
        let (options, state) = self.webauthn.start_discoverable_authentication().map_err(internal)?;
        let ceremony_id = new_ceremony_id();
        let stored = AssertionState { user_id: None, state: serde_json::to_value(&state).map_err(internal)? };
        self.store
            .state_put(
                &format!("webauthn:login:{ceremony_id}"),
                &serde_json::to_string(&stored).map_err(internal)?,
                now.saturating_add_ms(CEREMONY_TTL_MS),
            )
            .await?;
        Ok(PasskeyLoginOptions {
            ceremony_id,
            public_key: serde_json::to_value(options.public_key).map_err(internal)?,
            mediation: Mediation::Conditional,
            expires_in: CEREMONY_TTL_MS / 1000,
        })
    }

    /// Completes a passwordless sign-in: the discoverable credential names its account; a
    /// verified assertion with user verification is the whole login (something held and
    /// something known or are), answered like a password login's success.
    pub async fn passwordless_finish(
        &self,
        request: PasswordlessFinish,
        now: UnixMillis,
    ) -> Result<domain::wire::auth::LoginVerified, ApiError> {
        let refused = || ApiError::client(ProblemKind::Unauthenticated, "this passkey is not recognised");
        let credential: PublicKeyCredential = serde_json::from_value(request.credentials.credential)
            .map_err(|e| bad(format!("credential is not a WebAuthn assertion: {e}")))?;
        let stored = self
            .store
            .state_take(&format!("webauthn:login:{}", request.credentials.ceremony_id), now)
            .await?
            .and_then(|v| serde_json::from_str::<AssertionState>(&v).ok())
            .ok_or_else(ceremony_expired)?;
        let state = serde_json::from_value(stored.state).map_err(internal)?;
        let (handle, _) =
            self.webauthn.identify_discoverable_authentication(&credential).map_err(|_| refused())?;
        let Some(row) = self.store.passkey(&credential.id).await? else { return Err(refused()) };
        if !row.discoverable || Uuid::parse_str(&row.user_handle).ok() != Some(handle) {
            return Err(refused());
        }
        let passkey: Passkey = serde_json::from_str(&row.passkey).map_err(internal)?;
        let result = self.webauthn.finish_discoverable_authentication_v2(&credential, state, &passkey);
        if !self.record_use(&row, result, now).await? {
            self.event(&row.user_id, "passkey_login_failure", json!({ "credential": row.id }), now).await?;
            return Err(refused());
        }
        let user = self.store.user_by_id(&row.user_id).await?.ok_or_else(refused)?;
        if user.disabled_at.is_some() {
            return Err(ApiError::client(ProblemKind::Unauthenticated, "the account is disabled"));
        }
        let history = self.history_of(&row.user_id).await?;
        let device = self.device_of(&row.user_id, request.device_token.as_deref());
        let context = LoginContext {
            device_id: device,
            network: request.context.ip.as_deref().map(risk::network_of),
            country: request.context.country.clone(),
            user_agent: request.context.user_agent.clone(),
        };
        let assessment = risk::assess(&context, &history, 0, now);
        let account = self.unseal(user)?;
        let events = vec![
            ("risk_assessed", json!({ "score": assessment.score, "signals": assessment.signals })),
            ("passkey_login", json!({ "credential": row.id, "label": row.label })),
        ];
        self.login_answer(account, context, &assessment, events, now).await
    }
}
