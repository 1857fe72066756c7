//! The account service: creating users, reading and changing their profiles and tiers, and
//! verifying their passwords. Handlers call one function here each; this module applies the
//! rules from `domain`, seals and unseals personal data (see `crypto`), and talks to the store.

use std::sync::Arc;

use domain::analytics;
use domain::email::Email;
use domain::identity::{Actor, Role, UserId};
use domain::password::check_password;
use domain::problem::{Problem, ProblemKind};
use domain::profile::{self, Profile, ProfileErrors};
use domain::tier::Tier;
use domain::time::UnixMillis;
use domain::wire::users::{
    AuditEntry as AuditLine, AuditLog, Churn, ChurnFactor, Insights, Signup, StatusChanged, Upgraded, User,
};
use serde_json::{json, Value};

use crate::crypto::{random_16, DataKey, Keyring, WrappedKey};
use crate::errors::ApiError;
use crate::outbox::Outbox;
use crate::passwords;
use crate::store::{AuditEntry, Store, StoreError, UpdateOutcome, UserRow};

/// What the account service needs: the store, the keys, and the dummy hash that makes an
/// unknown email cost as much as a wrong password.
pub struct Accounts {
    pub store: Arc<dyn Store>,
    pub keyring: Keyring,
    pub(crate) dummy_hash: String,
    pub(crate) outbox: Outbox,
    /// The bounded argon2 pool every password check and hash goes through.
    pub hasher: passwords::Hasher,
    /// The WebAuthn relying party (`passkeys`).
    pub(crate) webauthn: webauthn_rs::Webauthn,
    /// The service's public address, for the links in emails.
    pub(crate) public_url: String,
    /// The age under which an account is a minor's (`ORIGIN_MINOR_AGE`).
    pub minor_under: u32,
}

pub use domain::wire::users::{ChangePassword, CreateUser};

/// A user with their personal data unsealed.
pub(crate) struct Account {
    pub(crate) row: UserRow,
    pub(crate) email: String,
    pub(crate) profile: Profile,
    pub(crate) data_key: DataKey,
}

pub(crate) fn rfc3339(t: UnixMillis) -> String {
    let nanos = i128::from(t.0) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn tier_of(row: &UserRow) -> Result<Tier, ApiError> {
    row.tier
        .parse()
        .map_err(|_| ApiError::Internal(format!("user {} has an unknown tier {:?}", row.id, row.tier)))
}

/// A 400 naming one field and the rule it broke, in the same shape as profile errors.
pub(crate) fn invalid_field(field: &str, rule: &str, detail: String) -> ApiError {
    ApiError::Client(
        Problem::new(ProblemKind::ValidationFailed, format!("{field}: {detail}"))
            .with("errors", json!([{ "field": field, "kind": "invalid", "rule": rule, "detail": detail }])),
    )
}

fn profile_problem(errors: &ProfileErrors) -> ApiError {
    // A field the caller may not touch, or a feature their tier lacks, is a 403; anything
    // else (unknown field, bad value) a 400. Every error found is listed either way.
    let forbidden = errors.is_forbidden();
    let kind = if forbidden { ProblemKind::Forbidden } else { ProblemKind::ValidationFailed };
    let detail = errors.summary();
    ApiError::Client(
        Problem::new(kind, detail).with("errors", serde_json::to_value(errors).unwrap_or(Value::Null)),
    )
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::client(ProblemKind::NotFound, format!("no user {id}"))
}

impl Accounts {
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Keyring,
        outbox: Outbox,
        hasher: passwords::Hasher,
        webauthn: webauthn_rs::Webauthn,
        public_url: String,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            store,
            keyring,
            dummy_hash: passwords::dummy_hash()?,
            outbox,
            hasher,
            webauthn,
            public_url,
            minor_under: domain::coppa::DEFAULT_MINOR_UNDER,
        })
    }

    /// Whether `raw` is the account's password. With no account, or none set yet, it checks a
    /// dummy hash instead, so that every answer costs one argon2 verification. `Err` (503)
    /// when the hashing pool is saturated.
    /// The caller reserves the hashing place (`hasher.reserve()`) before its other work, so a
    /// saturated pool refuses the request before it costs anything else.
    pub(crate) async fn password_matches_in(
        &self,
        place: passwords::Reservation,
        row: Option<&UserRow>,
        raw: &str,
    ) -> Result<bool, ApiError> {
        let stored = row.and_then(|r| r.password_hash.clone()).unwrap_or_else(|| self.dummy_hash.clone());
        Ok(self.hasher.verify_reserved(place, raw, stored).await?)
    }

    /// The user view the API answers with. Never includes secrets.
    pub(crate) fn view(&self, account: &Account) -> Result<User, ApiError> {
        let tier = tier_of(&account.row)?;
        let role: Role = account.row.role.parse().map_err(ApiError::Internal)?;
        let profile = account.profile.clone();
        Ok(User {
            id: account.row.id.clone(),
            email: account.email.clone(),
            email_verified: account.row.email_verified,
            role,
            tier,
            display_name: profile.display_name,
            language: profile.language,
            timezone: profile.timezone,
            ai_preferences: profile.ai_preferences,
            security_settings: profile.security_settings,
            limits: tier.limits().clone(),
            version: u64::try_from(account.row.version).unwrap_or_default(),
            created_at: rfc3339(account.row.created_at),
            updated_at: rfc3339(account.row.updated_at),
        })
    }

    pub(crate) fn unseal(&self, row: UserRow) -> Result<Account, ApiError> {
        let wrapped =
            WrappedKey { master_key_id: row.data_key_master_id.clone(), sealed: row.data_key_sealed.clone() };
        let data_key = self.keyring.unwrap(&wrapped, &row.id)?;
        let email = String::from_utf8(data_key.open(&row.email_sealed, &format!("{}/email", row.id))?)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let profile_json = data_key.open(&row.profile_sealed, &format!("{}/profile", row.id))?;
        let profile: Profile =
            serde_json::from_slice(&profile_json).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(Account { row, email, profile, data_key })
    }

    fn seal_profile(&self, account: &Account) -> Result<Vec<u8>, ApiError> {
        let json = serde_json::to_vec(&account.profile).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(account.data_key.seal(&json, &format!("{}/profile", account.row.id)))
    }

    /// The account with this normalised email: found through the current key's blind index,
    /// or, while a master-key rotation is under way, through a retired key's.
    pub(crate) async fn find_by_email(&self, normalised_email: &str) -> Result<Option<UserRow>, ApiError> {
        if let Some(row) = self.store.user_by_email_index(&self.keyring.email_index(normalised_email)).await?
        {
            return Ok(Some(row));
        }
        for index in self.keyring.retired_email_indexes(normalised_email) {
            if let Some(row) = self.store.user_by_email_index(&index).await? {
                return Ok(Some(row));
            }
        }
        Ok(None)
    }

    pub(crate) async fn load(&self, id: &UserId) -> Result<Account, ApiError> {
        let row = self.store.user_by_id(id.as_str()).await?.ok_or_else(|| not_found(id.as_str()))?;
        self.unseal(row)
    }

    pub async fn create(
        &self,
        actor: &Actor,
        request: CreateUser,
        now: UnixMillis,
    ) -> Result<Signup, ApiError> {
        // The declared age comes first: a child's signup stores nothing but what the parent's
        // consent needs.
        let group = match request.birth_date.as_deref() {
            Some(raw) => domain::coppa::group(raw, now, self.minor_under)
                .map_err(|e| invalid_field("birth_date", e.rule(), e.to_string()))?,
            None => domain::coppa::AgeGroup::Adult,
        };
        if group == domain::coppa::AgeGroup::Child {
            return Ok(Signup::Pending(self.create_child(actor, request, now).await?));
        }
        let tier = request.tier.unwrap_or(Tier::Free);
        let role = request.role.unwrap_or(Role::User);
        if !actor.is_admin() && tier != Tier::Free {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                "only an admin can create a user with a paid tier",
            ));
        }
        if !actor.is_admin() && role != Role::User {
            return Err(ApiError::client(ProblemKind::Forbidden, "only an admin can create an admin"));
        }
        let email =
            Email::parse(&request.email).map_err(|e| invalid_field("email", e.rule(), e.to_string()))?;
        check_password(&request.password, &email)
            .map_err(|e| invalid_field("password", e.rule(), e.to_string()))?;
        let profile = profile::new_profile(tier, request.profile.as_ref().unwrap_or(&Value::Null))
            .map_err(|e| profile_problem(&e))?;

        // The unique index sees the current key's blind index only; during a rotation the
        // address may still be indexed under a retired key.
        if self.keyring.has_retired() && self.find_by_email(email.as_str()).await?.is_some() {
            return Err(StoreError::DuplicateEmail.into());
        }
        let hash = self.hasher.hash(&request.password).await?;

        let account = self.new_account(&email, tier, role, profile, Some(hash), now)?;
        let row = account.row.clone();
        let audit = AuditEntry {
            user_id: row.id.clone(),
            actor: actor.to_string(),
            action: "create".into(),
            old_value: None,
            new_value: Some(format!("tier={tier} role={role}")),
            at: now,
        };
        self.store.insert_user(&row, &audit).await?;
        crate::metrics::signup(tier.as_str(), if actor.is_admin() { "admin" } else { "signup" });
        // The account exists whatever happens to this email: a failure to queue it is logged,
        // and the owner can ask for another (`POST …/email/verification`).
        if let Err(e) = self.send_verification(&account, now).await {
            tracing::warn!(user = %row.id, error = %e, "the verification email could not be queued");
        }
        if group == domain::coppa::AgeGroup::Minor {
            self.minor_defaults(&row.id, now).await?;
        }
        Ok(Signup::Created(Box::new(self.view(&account)?)))
    }

    /// A new account, its personal data sealed under a fresh data key. `password_hash` is
    /// `None` for accounts provisioned with an activation token.
    pub(crate) fn new_account(
        &self,
        email: &Email,
        tier: Tier,
        role: Role,
        profile: Profile,
        password_hash: Option<String>,
        now: UnixMillis,
    ) -> Result<Account, ApiError> {
        // A new account starts at its tier's and role's security floor (an admin's sessions
        // are short and need a second factor from the first login).
        let mut profile = profile;
        profile.security_settings =
            domain::security::SecurityFloor::of(tier, role).apply(&profile.security_settings);
        let id = UserId::from_random(random_16());
        let data_key = DataKey::generate();
        let wrapped = self.keyring.wrap(&data_key, id.as_str());
        let mut account = Account {
            row: UserRow {
                id: id.to_string(),
                email_index: self.keyring.email_index(email.as_str()),
                email_sealed: data_key.seal(email.as_str().as_bytes(), &format!("{id}/email")),
                data_key_sealed: wrapped.sealed,
                data_key_master_id: wrapped.master_key_id,
                role: role.as_str().to_owned(),
                tier: tier.to_string(),
                email_verified: false,
                password_hash,
                profile_sealed: Vec::new(),
                version: 1,
                created_at: now,
                updated_at: now,
                last_login_at: None,
                disabled_at: None,
            },
            email: email.as_str().to_owned(),
            profile,
            data_key,
        };
        account.row.profile_sealed = self.seal_profile(&account)?;
        Ok(account)
    }

    /// Activates a provisioned account with its token, setting its first password.
    pub async fn activate(
        &self,
        token: &str,
        password: &str,
        now: UnixMillis,
    ) -> Result<domain::wire::auth::Activated, ApiError> {
        let token_hash = crate::jobs::provision::token_hash(token);
        let refused =
            || ApiError::client(ProblemKind::Unauthenticated, "the activation token is unknown or expired");
        // The password is checked against the account's email before anything is stored.
        let row = self.store.activation_user(&token_hash, now).await?.ok_or_else(refused)?;
        let account = self.unseal(row)?;
        let email = Email::parse(&account.email).map_err(|e| ApiError::Internal(e.to_string()))?;
        check_password(password, &email).map_err(|e| invalid_field("password", e.rule(), e.to_string()))?;
        let hash = self.hasher.hash(password).await?;
        let id = self.store.activate(&token_hash, &hash, now).await?.ok_or_else(refused)?;
        Ok(domain::wire::auth::Activated { user_id: id.to_string(), activated: true })
    }

    pub async fn read(&self, actor: &Actor, id: &UserId) -> Result<User, ApiError> {
        authorize(actor, id)?;
        let account = self.load(id).await?;
        self.view(&account)
    }

    pub async fn update(
        &self,
        actor: &Actor,
        id: &UserId,
        patch: &Value,
        if_match: Option<u64>,
        step_up_at: Option<u64>,
        now: UnixMillis,
    ) -> Result<User, ApiError> {
        authorize(actor, id)?;
        let mut account = self.load(id).await?;
        let expected = account.row.version;
        let if_match = if_match.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        if let Some(wanted) = if_match {
            if wanted != expected {
                return Err(stale(wanted, expected));
            }
        }
        let tier = tier_of(&account.row)?;
        let before = account.profile.security_settings.clone();
        account.profile =
            profile::apply_merge_patch(&account.profile, patch, tier).map_err(|e| profile_problem(&e))?;
        let weakened = domain::security::weakened_fields(&before, &account.profile.security_settings);
        if !weakened.is_empty() {
            // No proof lowers the tier's or role's floor; within it, weakening needs a fresh one.
            let floor = crate::protection::floor_of(&account)?;
            let breaches = floor.violations(&account.profile.security_settings);
            if !breaches.is_empty() {
                let rules: Vec<Value> = breaches
                    .iter()
                    .map(|(field, rule)| json!({ "field": field, "kind": "forbidden", "rule": rule }))
                    .collect();
                return Err(ApiError::Client(
                    Problem::new(
                        ProblemKind::Forbidden,
                        format!(
                            "the {} tier{} requires these settings: {}",
                            account.row.tier,
                            if account.row.role == "admin" { " and the admin role" } else { "" },
                            breaches.iter().map(|(_, r)| *r).collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .with("errors", rules),
                ));
            }
            let proof = crate::protection::Proof { step_up_at, ..Default::default() };
            self.require_fresh_proof(actor, id, &proof, now).await.map_err(|e| match e {
                ApiError::Client(p) if p.status == 403 => {
                    ApiError::Client(p.with("weakened", weakened.clone()))
                }
                other => other,
            })?;
        }
        account.row.profile_sealed = self.seal_profile(&account)?;
        account.row.version = expected + 1;
        account.row.updated_at = now;
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: "profile_update".into(),
            old_value: Some(format!("version={expected}")),
            new_value: Some(format!("version={}", expected + 1)),
            at: now,
        };
        match self.store.update_user(&account.row, expected, &[audit]).await? {
            UpdateOutcome::Updated => {
                // Mood detection turned off: the stored mood goes before the answer.
                self.forget_mood_unless_allowed(id).await?;
                self.view(&account)
            }
            UpdateOutcome::VersionMismatch(current) => Err(stale(if_match.unwrap_or(expected), current)),
            UpdateOutcome::NotFound => Err(not_found(id.as_str())),
        }
    }

    pub async fn change_tier(
        &self,
        actor: &Actor,
        id: &UserId,
        new_tier: Tier,
        now: UnixMillis,
    ) -> Result<Upgraded, ApiError> {
        authorize(actor, id)?;
        let mut account = self.load(id).await?;
        let old_tier = tier_of(&account.row)?;
        if !domain::tier::may_change_tier(old_tier, new_tier, actor.is_admin()) {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                format!("only an admin can move an account from {old_tier} to {new_tier}"),
            ));
        }
        if new_tier == old_tier {
            return Ok(Upgraded { user: self.view(&account)?, integrations_disabled: Vec::new() });
        }
        // Settings the new tier does not allow are brought within it (a downgrade switches
        // off, say, custom model training), so the stored profile always fits its tier.
        account.profile = profile::fit_to_tier(&account.profile, new_tier);
        // Moving into a tier with a floor (enterprise, VIP: zero-trust) raises the settings to it.
        let role: Role = account.row.role.parse().map_err(ApiError::Internal)?;
        account.profile.security_settings =
            domain::security::SecurityFloor::of(new_tier, role).apply(&account.profile.security_settings);
        let expected = account.row.version;
        account.row.tier = new_tier.to_string();
        account.row.profile_sealed = self.seal_profile(&account)?;
        account.row.version = expected + 1;
        account.row.updated_at = now;
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: "tier_change".into(),
            old_value: Some(old_tier.to_string()),
            new_value: Some(new_tier.to_string()),
            at: now,
        };
        match self.store.update_user(&account.row, expected, &[audit]).await? {
            UpdateOutcome::Updated => {
                crate::metrics::tier_migration(old_tier.as_str(), new_tier.as_str());
                // Integrations the new tier does not allow are disabled (kept), and named.
                let integrations_disabled =
                    self.disable_forbidden_integrations(id.as_str(), new_tier, now).await?;
                Ok(Upgraded { user: self.view(&account)?, integrations_disabled })
            }
            UpdateOutcome::VersionMismatch(current) => Err(stale(expected, current)),
            UpdateOutcome::NotFound => Err(not_found(id.as_str())),
        }
    }

    /// Changes a password. The owner must give the current one (the recent authentication
    /// such a change requires); an admin resetting someone else's need not.
    pub async fn change_password(
        &self,
        actor: &Actor,
        id: &UserId,
        request: ChangePassword,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        authorize(actor, id)?;
        let account = self.load(id).await?;
        let email = Email::parse(&account.email).map_err(|e| ApiError::Internal(e.to_string()))?;
        let acting_on_self = actor.user_id() == Some(id);
        if acting_on_self || !actor.is_admin() {
            self.check_current_password(&account, request.current_password.as_deref(), now).await?;
        }
        check_password(&request.new_password, &email)
            .map_err(|e| invalid_field("new_password", e.rule(), e.to_string()))?;
        let hash = self.hasher.hash(&request.new_password).await?;
        let mut row = account.row.clone();
        row.password_hash = Some(hash);
        row.updated_at = now;
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: "password_change".into(),
            old_value: None,
            new_value: None,
            at: now,
        };
        match self.store.update_user(&row, account.row.version, &[audit]).await? {
            UpdateOutcome::Updated => Ok(()),
            UpdateOutcome::VersionMismatch(current) => Err(stale(account.row.version, current)),
            UpdateOutcome::NotFound => Err(not_found(id.as_str())),
        }
    }

    /// Disables or re-enables an account (admins only). A disabled account cannot log in; the
    /// edge ends its sessions when this answers.
    pub async fn set_disabled(
        &self,
        actor: &Actor,
        id: &UserId,
        disabled: bool,
        now: UnixMillis,
    ) -> Result<StatusChanged, ApiError> {
        if !actor.is_admin() {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                "only an admin can disable or enable an account",
            ));
        }
        let account = self.load(id).await?;
        let mut row = account.row.clone();
        row.disabled_at = if disabled { Some(now) } else { None };
        row.updated_at = now;
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: if disabled { "disable" } else { "enable" }.into(),
            old_value: Some(account.row.disabled_at.is_some().to_string()),
            new_value: Some(disabled.to_string()),
            at: now,
        };
        match self.store.update_user(&row, account.row.version, &[audit]).await? {
            UpdateOutcome::Updated => {
                Ok(StatusChanged { id: id.to_string(), disabled, sessions_ended: None })
            }
            UpdateOutcome::VersionMismatch(current) => Err(stale(account.row.version, current)),
            UpdateOutcome::NotFound => Err(not_found(id.as_str())),
        }
    }

    /// The account's audit trail, oldest first: who changed what, from what to what, and when.
    /// Entries name changes, never personal data (the log is not encrypted).
    pub async fn audit(&self, actor: &Actor, id: &UserId) -> Result<AuditLog, ApiError> {
        authorize(actor, id)?;
        if self.store.user_by_id(id.as_str()).await?.is_none() {
            return Err(not_found(id.as_str()));
        }
        let entries = self
            .store
            .audit_entries(id.as_str())
            .await?
            .into_iter()
            .map(|e| AuditLine {
                action: e.action,
                actor: e.actor,
                old: e.old_value,
                new: e.new_value,
                at: rfc3339(e.at),
            })
            .collect();
        Ok(AuditLog { entries })
    }

    pub async fn insights(&self, actor: &Actor, id: &UserId, now: UnixMillis) -> Result<Insights, ApiError> {
        authorize(actor, id)?;
        let account = self.load(id).await?;
        let tier = tier_of(&account.row)?;
        let age_days = now.0.saturating_sub(account.row.created_at.0) / 86_400_000;
        let events = self
            .store
            .user_events(id.as_str(), now.saturating_sub_ms(30 * 86_400_000), now.saturating_add_ms(1))
            .await?;
        let activity: Vec<analytics::Activity> = events
            .iter()
            .map(|e| analytics::Activity { kind: e.kind, class: e.class.clone(), at: UnixMillis(e.at) })
            .collect();
        let engagement = analytics::engagement(&activity, now);
        let recommendation = analytics::recommend_tier(tier, &activity, age_days, now);
        let mut by_kind: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        for e in &events {
            *by_kind.entry(e.kind.as_str()).or_default() += 1;
        }
        let churn = match self.store.model("churn").await? {
            Some(model) if age_days >= 7 => {
                let model: analytics::ChurnModel =
                    serde_json::from_str(&model).map_err(|e| ApiError::Internal(e.to_string()))?;
                let features = engagement.components.features(age_days);
                Churn {
                    available: true,
                    probability: Some((model.probability(&features) * 1000.0).round() / 1000.0),
                    factors: Some(
                        model
                            .factors(&features)
                            .into_iter()
                            .map(|(factor, contribution)| ChurnFactor {
                                factor,
                                contribution,
                                effect: if contribution >= 0.0 { "raises" } else { "lowers" }.to_owned(),
                            })
                            .collect(),
                    ),
                    model_auc: Some(model.auc),
                    reason: None,
                }
            }
            Some(_) => Churn::unavailable("under 7 days of history: too little to predict"),
            None => Churn::unavailable("no churn model trained yet (origin generate-analytics)"),
        };
        Ok(Insights {
            user_id: account.row.id.clone(),
            tier,
            account_age_days: age_days,
            created_at: rfc3339(account.row.created_at),
            last_login_at: account.row.last_login_at.map(rfc3339),
            limits: tier.limits().clone(),
            usage: None,
            segment: analytics::segment(&engagement, age_days).to_owned(),
            engagement,
            cohort: analytics::cohort(account.row.created_at),
            churn,
            tier_recommendation: recommendation,
            activity_30d: by_kind.into_iter().map(|(k, n)| (k.to_owned(), n)).collect(),
        })
    }
}

pub(crate) fn authorize(actor: &Actor, id: &UserId) -> Result<(), ApiError> {
    if actor.may_act_on(id) {
        Ok(())
    } else {
        Err(ApiError::client(ProblemKind::Forbidden, "you may only act on your own account"))
    }
}

pub(crate) fn stale(wanted: i64, current: i64) -> ApiError {
    ApiError::Client(
        Problem::new(
            ProblemKind::PreconditionFailed,
            format!("the profile is at version {current}, not {wanted}; read it again and retry"),
        )
        .with("current_version", current),
    )
}
