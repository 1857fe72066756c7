//! Data rights (issue 13): consents, the export archive (portability) and erasure. The rules
//! are `domain::rights`; this module gathers, seals, stores and audits.
//!
//! - Consents: one record per purpose (state, time, source, policy version); every change is
//!   also an audit entry. A `Sec-GPC: 1` signal the edge saw withdraws sale and sharing.
//! - Export: a job builds a ZIP (`manifest.json` + one JSON file per section), sealed with the
//!   user's data key in the `exports` table (so crypto-shredding covers it too); 24 h, 3
//!   downloads, audited; a second request while one runs gets the same job.
//! - Erasure: the owner's request (password, and a code with a factor) is scheduled after the
//!   grace period; an admin may erase at once. Erasing deletes every row about the user (the
//!   wrapped data key with the user row, so what was sealed under it is unreadable), keeps an
//!   erasure record with no personal data, and leaves the edge a wipe to apply (KV entry,
//!   Durable Object storage). The user's behavioural events are deleted, not re-keyed: a
//!   re-keyed event stream still singles one person out by its timing and sequence
//!   (pseudonymous, hence personal data); aggregates already computed (reports, the trained
//!   churn model) hold no per-person rows and stay.

use std::io::Write;
use std::sync::Arc;

use domain::identity::{Actor, UserId};
use domain::problem::{Problem, ProblemKind};
use domain::rights::{self, ExportStatus};
use domain::time::UnixMillis;
use domain::wire::rights::{ConsentView, Consents, ErasureCancelled, ParentalDecision, ParentalOutcome};
use serde_json::{json, Value};

use crate::crypto::random_16;
use crate::errors::ApiError;
use crate::protection::Proof;
use crate::store::{AuditEntry, ErasureRecord, ErasureRequest, ExportRow};
use crate::users::{authorize, not_found, rfc3339, Accounts};

/// What a request for an export's archive gets.
pub enum Download {
    /// Not ready yet: ask again after this many seconds.
    Pending {
        retry_after_secs: u64,
    },
    Ready {
        zip: Vec<u8>,
        downloads_left: u32,
    },
}

/// The body of an erasure request.
pub type EraseRequest = domain::wire::rights::ErasureRequest;

/// What an erasure request did.
pub enum Erasure {
    Scheduled { due_at: UnixMillis },
    Done { purged: std::collections::BTreeMap<String, u64> },
}

fn consents_view(current: &[rights::Consent]) -> Consents {
    Consents {
        consents: current
            .iter()
            .map(|c| ConsentView {
                purpose: c.purpose,
                granted: c.granted,
                at: rfc3339(c.at),
                source: c.source,
                policy_version: c.policy_version.clone(),
            })
            .collect(),
        collects_events: rights::collects_events(current),
    }
}

fn consent_audit(
    actor: &Actor,
    id: &UserId,
    changes: &[rights::Consent],
    now: UnixMillis,
) -> Vec<AuditEntry> {
    changes
        .iter()
        .map(|c| AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: "consent".into(),
            old_value: None,
            new_value: Some(format!(
                "{}={} source={} policy={}",
                c.purpose.as_str(),
                c.granted,
                c.source.as_str(),
                c.policy_version
            )),
            at: now,
        })
        .collect()
}

fn gone(detail: &str) -> ApiError {
    ApiError::client(ProblemKind::Gone, detail.to_owned())
}

impl Accounts {
    /// Every purpose's state (stored or default).
    async fn current_consents(&self, id: &UserId) -> Result<Vec<rights::Consent>, ApiError> {
        let row = self.store.user_by_id(id.as_str()).await?.ok_or_else(|| not_found(id.as_str()))?;
        let stored = self.store.consents(id.as_str()).await?;
        Ok(rights::effective(&stored, row.created_at, false))
    }

    /// Records what a `Sec-GPC: 1` signal withdraws (nothing when it was recorded already).
    async fn honour_gpc(
        &self,
        actor: &Actor,
        id: &UserId,
        current: Vec<rights::Consent>,
        now: UnixMillis,
    ) -> Result<Vec<rights::Consent>, ApiError> {
        let changes = rights::gpc_changes(&current, now);
        if changes.is_empty() {
            return Ok(current);
        }
        self.store.put_consents(id.as_str(), &changes, &consent_audit(actor, id, &changes, now)).await?;
        let stored = self.store.consents(id.as_str()).await?;
        let created = self.store.user_by_id(id.as_str()).await?.map_or(now, |r| r.created_at);
        Ok(rights::effective(&stored, created, false))
    }

    pub async fn consents(
        &self,
        actor: &Actor,
        id: &UserId,
        gpc: bool,
        now: UnixMillis,
    ) -> Result<Consents, ApiError> {
        authorize(actor, id)?;
        let mut current = self.current_consents(id).await?;
        if gpc {
            current = self.honour_gpc(actor, id, current, now).await?;
        }
        Ok(consents_view(&current))
    }

    /// Sets the consents a body names (`{"consents": {"analytics": false}}`), each change
    /// audited; a GPC signal on the same request still wins for sale and sharing.
    pub async fn put_consents(
        &self,
        actor: &Actor,
        id: &UserId,
        body: &Value,
        gpc: bool,
        now: UnixMillis,
    ) -> Result<Consents, ApiError> {
        authorize(actor, id)?;
        let changes = rights::parse_changes(body, now).map_err(|errors| {
            let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            let list: Vec<Value> = errors
                .iter()
                .map(
                    |e| json!({ "field": e.field, "kind": "invalid", "rule": "consent", "detail": e.detail }),
                )
                .collect();
            ApiError::Client(Problem::new(ProblemKind::ValidationFailed, detail).with("errors", list))
        })?;
        self.current_consents(id).await?;
        let changes: Vec<rights::Consent> = if gpc {
            // A browser that sends the signal cannot opt in to sale or sharing on that request.
            changes.into_iter().filter(|c| !(c.granted && c.purpose.covered_by_gpc())).collect()
        } else {
            changes
        };
        self.store.put_consents(id.as_str(), &changes, &consent_audit(actor, id, &changes, now)).await?;
        self.forget_mood_unless_allowed(id).await?;
        let mut current = self.current_consents(id).await?;
        if gpc {
            current = self.honour_gpc(actor, id, current, now).await?;
        }
        Ok(consents_view(&current))
    }

    /// Whether the edge may collect events about the user (for the gate).
    pub async fn collects_events(&self, id: &UserId) -> Result<bool, ApiError> {
        Ok(rights::collects_events(&self.current_consents(id).await?))
    }

    /// Starts an export (or finds the one still running): the owner with a fresh proof (a
    /// step-up within 5 minutes, or the password and a code in the request), or an admin.
    /// `sessions` is what the edge's gate holds. Answers the export and whether it is new; a
    /// new one is built in the background.
    pub async fn start_export(
        self: &Arc<Self>,
        actor: &Actor,
        id: &UserId,
        proof: &Proof,
        sessions: Value,
        now: UnixMillis,
    ) -> Result<ExportRow, ApiError> {
        authorize(actor, id)?;
        let owner = actor.user_id() == Some(id);
        if owner {
            self.require_fresh_proof(actor, id, proof, now).await?;
        } else if self.store.user_by_id(id.as_str()).await?.is_none() {
            return Err(not_found(id.as_str()));
        }
        let new = ExportRow {
            id: format!("exp_{}", hex::encode(random_16())),
            user_id: id.to_string(),
            requested_by: actor.to_string(),
            created_at: now,
            ready_at: None,
            expires_at: None,
            downloads: 0,
        };
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: "export_requested".into(),
            old_value: None,
            new_value: Some(new.id.clone()),
            at: now,
        };
        let reuse = move |existing: &ExportRow| rights::reuses(&existing.state(), now);
        let (export, created) =
            self.store.start_export(&new, &reuse, &audit).await?.ok_or_else(|| not_found(id.as_str()))?;
        if created {
            let accounts = Arc::clone(self);
            let job = export.clone();
            tokio::spawn(async move {
                if let Err(e) = accounts.build_export(&job, sessions, now).await {
                    tracing::error!(export = %job.id, error = %e, "export failed");
                }
            });
        }
        Ok(export)
    }

    /// Gathers every section, zips them with the manifest, seals the archive and stores it.
    async fn build_export(
        &self,
        export: &ExportRow,
        sessions: Value,
        now: UnixMillis,
    ) -> Result<(), ApiError> {
        let id: UserId = export
            .user_id
            .parse()
            .map_err(|_| ApiError::Internal(format!("bad user id {}", export.user_id)))?;
        let account = self.load(&id).await?;
        let uid = id.as_str();
        let mut profile =
            serde_json::to_value(&account.profile).map_err(|e| ApiError::Internal(e.to_string()))?;
        if let Some(o) = profile.as_object_mut() {
            o.insert("id".into(), json!(uid));
            o.insert("email".into(), json!(account.email));
            o.insert("email_verified".into(), json!(account.row.email_verified));
            o.insert("role".into(), json!(account.row.role));
            o.insert("tier".into(), json!(account.row.tier));
            o.insert("version".into(), json!(account.row.version));
            o.insert("created_at".into(), json!(rfc3339(account.row.created_at)));
            o.insert("updated_at".into(), json!(rfc3339(account.row.updated_at)));
            o.insert("last_login_at".into(), json!(account.row.last_login_at.map(rfc3339)));
        }
        let audit = self.store.audit_entries(uid).await?;
        let audit_json = |e: &AuditEntry| json!({ "action": e.action, "actor": e.actor, "old": e.old_value, "new": e.new_value, "at": rfc3339(e.at) });
        let tier_history: Vec<Value> = audit
            .iter()
            .filter(|e| e.action == "tier_change" || e.action == "create")
            .map(|e| match e.action.as_str() {
                "create" => json!({ "from": null, "to": account_tier_at_creation(e), "at": rfc3339(e.at), "by": e.actor }),
                _ => json!({ "from": e.old_value, "to": e.new_value, "at": rfc3339(e.at), "by": e.actor }),
            })
            .collect();
        let logins: Vec<Value> = self
            .store
            .recent_logins(uid, 100_000)
            .await?
            .into_iter()
            .map(|(context, at)| {
                json!({ "at": rfc3339(at), "context": serde_json::from_str::<Value>(&context).unwrap_or(Value::String(context)) })
            })
            .collect();
        let security_events: Vec<Value> = self
            .store
            .security_events(uid, 100_000)
            .await?
            .into_iter()
            .map(|e| {
                json!({ "kind": e.kind, "at": rfc3339(e.at),
                        "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::String(e.detail)) })
            })
            .collect();
        let stored_consents = self.store.consents(uid).await?;
        let consents = consents_view(&rights::effective(&stored_consents, account.row.created_at, false));
        // Factors: what they are and when they were set up; never a secret, hash or code.
        let mut factors = Vec::new();
        if let Some(totp) = self.store.totp(uid).await? {
            factors.push(json!({ "type": "totp", "confirmed": totp.confirmed_at.is_some(),
                                  "confirmed_at": totp.confirmed_at.map(rfc3339) }));
        }
        if let Some(sealed) = self.store.sms_phone(uid).await? {
            let number = account.data_key.open(&sealed, &format!("{uid}/sms_phone"))?;
            let masked = domain::phone::Phone::parse(&String::from_utf8_lossy(&number))
                .map(|p| p.masked())
                .unwrap_or_default();
            factors.push(json!({ "type": "sms", "number": masked }));
        }
        let recovery_left = self.store.recovery_codes_left(uid).await?;
        if recovery_left > 0 {
            factors.push(json!({ "type": "recovery_codes", "unused": recovery_left }));
        }
        let events: Vec<Value> = self
            .store
            .user_events(uid, UnixMillis(0), now.saturating_add_ms(1))
            .await?
            .into_iter()
            .map(|e| json!({ "id": e.id, "kind": e.kind, "class": e.class, "at": rfc3339(UnixMillis(e.at)), "data": e.data }))
            .collect();
        let insights =
            serde_json::to_value(self.insights(&Actor::System, &id, now).await?).unwrap_or(Value::Null);
        // The user's membership (none or one): which organization, their role, since when.
        let organization: Vec<Value> = self
            .store
            .membership(uid)
            .await?
            .map(|(org, member)| {
                json!({ "org_id": org.id, "slug": org.slug, "name": org.name,
                        "role": member.role, "joined_at": rfc3339(member.joined_at) })
            })
            .into_iter()
            .collect();
        let usage: Vec<Value> = self
            .store
            .usage(uid)
            .await?
            .into_iter()
            .map(|(resource, used, at)| json!({ "resource": resource, "used": used, "updated_at": rfc3339(at) }))
            .collect();
        let integrations = crate::integrations::export_section(self, &account).await?;

        let personalization = crate::personalisation::export_section(self.store.as_ref(), uid).await?;
        let contents = [
            ("profile", profile),
            (
                "security_settings",
                serde_json::to_value(&account.profile.security_settings).unwrap_or(Value::Null),
            ),
            ("ai_preferences", serde_json::to_value(&account.profile.ai_preferences).unwrap_or(Value::Null)),
            ("tier_history", Value::Array(tier_history)),
            ("sessions", sessions),
            ("login_history", Value::Array(logins)),
            ("security_events", Value::Array(security_events)),
            ("audit_trail", Value::Array(audit.iter().map(audit_json).collect())),
            ("consents", serde_json::to_value(&consents.consents).unwrap_or(Value::Null)),
            ("mfa_factors", Value::Array(factors)),
            ("analytics_events", Value::Array(events)),
            ("insights", insights),
            ("organization", Value::Array(organization)),
            ("usage", Value::Array(usage)),
            ("integrations", integrations),
            ("personalization", personalization),
        ];
        debug_assert!(contents.iter().map(|(n, _)| *n).eq(rights::EXPORT_SECTIONS.iter().copied()));
        let zip = zip_sections(uid, &contents, now)?;
        let sealed = account.data_key.seal(&zip, &format!("{uid}/export/{}", export.id));
        let expires = now.saturating_add_ms(rights::EXPORT_TTL_MS);
        if !self.store.finish_export(&export.id, &sealed, now, expires).await? {
            tracing::info!(export = %export.id, "the export's user was erased while it was built");
        }
        Ok(())
    }

    /// An export's archive, once ready, counted as one download; 404 for another user's or an
    /// unknown export, 410 once expired, used up, or its job died.
    pub async fn download_export(
        &self,
        actor: &Actor,
        id: &UserId,
        export_id: &str,
        now: UnixMillis,
    ) -> Result<Download, ApiError> {
        authorize(actor, id)?;
        let missing = || ApiError::client(ProblemKind::NotFound, format!("no export {export_id}"));
        let export =
            self.store.export(export_id).await?.filter(|e| e.user_id == id.as_str()).ok_or_else(missing)?;
        match rights::export_status(&export.state(), now) {
            ExportStatus::Pending => return Ok(Download::Pending { retry_after_secs: 2 }),
            ExportStatus::Failed => {
                return Err(gone("the export job stopped before it finished; request a new export"))
            }
            ExportStatus::Expired => return Err(gone("the export expired (24 hours); request a new one")),
            ExportStatus::Exhausted => {
                return Err(gone("the export was downloaded as many times as allowed; request a new one"))
            }
            ExportStatus::Ready => {}
        }
        let sealed = self
            .store
            .take_export(export_id, now, rights::EXPORT_MAX_DOWNLOADS)
            .await?
            .ok_or_else(|| gone("the export expired or was downloaded as many times as allowed"))?;
        let account = self.load(id).await?;
        let zip = account.data_key.open(&sealed, &format!("{id}/export/{export_id}"))?;
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: "export_downloaded".into(),
            old_value: None,
            new_value: Some(format!("{export_id} download {}", export.downloads + 1)),
            at: now,
        };
        // No consent changes: the audit entry alone, in its own transaction.
        self.store.put_consents(id.as_str(), &[], &[audit]).await?;
        Ok(Download::Ready {
            zip,
            downloads_left: rights::EXPORT_MAX_DOWNLOADS.saturating_sub(export.downloads + 1),
        })
    }

    /// An erasure request. The owner proves it with the current password (and a code when a
    /// factor is enrolled; a step-up is not enough for this) and gets the grace period; an
    /// admin may schedule it or, with `immediately`, erase at once.
    pub async fn request_erasure(
        &self,
        actor: &Actor,
        id: &UserId,
        request: EraseRequest,
        grace_days: u64,
        now: UnixMillis,
    ) -> Result<Erasure, ApiError> {
        authorize(actor, id)?;
        let owner = actor.user_id() == Some(id);
        if request.immediately && !actor.is_admin() {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                "only an admin can erase an account at once",
            ));
        }
        let account = self.load(id).await?;
        if owner {
            let proof = Proof {
                current_password: request.current_password.clone(),
                method: request.method.clone(),
                code: request.code.clone(),
                step_up_at: None,
                credential: None,
            };
            self.require_fresh_proof(actor, id, &proof, now).await?;
        }
        if request.immediately {
            let asked = self.store.erasure_request(id.as_str()).await?.map_or(now, |r| r.asked_at);
            let by = if owner { "owner".to_owned() } else { actor.to_string() };
            let purged = self.erase(id, asked, &by, now).await?.ok_or_else(|| not_found(id.as_str()))?;
            return Ok(Erasure::Done { purged });
        }
        let due_at = rights::erasure_due(now, grace_days);
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: actor.to_string(),
            action: "erasure_requested".into(),
            old_value: None,
            new_value: Some(format!("due={}", rfc3339(due_at))),
            at: now,
        };
        let by = if owner { "owner".to_owned() } else { actor.to_string() };
        self.store
            .request_erasure(id.as_str(), &ErasureRequest { asked_at: now, due_at, requested_by: by }, &audit)
            .await?;
        let due = rfc3339(due_at);
        let cancel_path = format!("/api/v1/users/{id}/erasure/cancel");
        let template = domain::messages::Template::ErasureScheduled { due: &due, cancel_path: &cancel_path };
        let message = self.message(&account, "email", &account.email, &template, None, now)?;
        self.send_message(message).await?;
        Ok(Erasure::Scheduled { due_at })
    }

    /// Cancels a scheduled erasure with the account's password (counted like a login).
    pub async fn cancel_erasure(
        &self,
        id: &UserId,
        password: &str,
        now: UnixMillis,
    ) -> Result<ErasureCancelled, ApiError> {
        let account = self.load(id).await?;
        self.check_current_password(&account, Some(password), now).await?;
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: Actor::User {
                id: id.clone(),
                role: account.row.role.parse().map_err(ApiError::Internal)?,
            }
            .to_string(),
            action: "erasure_cancelled".into(),
            old_value: None,
            new_value: None,
            at: now,
        };
        if !self.store.cancel_erasure(id.as_str(), &audit).await? {
            return Err(ApiError::client(ProblemKind::Conflict, "no erasure is scheduled for this account"));
        }
        Ok(ErasureCancelled { id: id.to_string(), erasure_cancelled: true })
    }

    /// The refusal a login gets while the account waits for its erasure.
    pub(crate) async fn refuse_if_erasing(&self, id: &str) -> Result<(), ApiError> {
        let Some(request) = self.store.erasure_request(id).await? else { return Ok(()) };
        Err(ApiError::Client(
            Problem::new(
                ProblemKind::ErasurePending,
                format!(
                    "this account is scheduled for erasure on {}; to keep it, cancel with POST /api/v1/users/{id}/erasure/cancel and your password",
                    rfc3339(request.due_at)
                ),
            )
            .with("erasure_due_at", rfc3339(request.due_at))
            .with("cancel", format!("/api/v1/users/{id}/erasure/cancel")),
        ))
    }

    /// Erases a user now: every row, the wrapped data key with them; one record without
    /// personal data remains. `None` when there was no such user.
    pub async fn erase(
        &self,
        id: &UserId,
        asked_at: UnixMillis,
        by: &str,
        now: UnixMillis,
    ) -> Result<Option<std::collections::BTreeMap<String, u64>>, ApiError> {
        let record = ErasureRecord {
            subject: self.erasure_subject(id),
            asked_at,
            ran_at: now,
            requested_by: by.to_owned(),
            purged: String::new(),
        };
        Ok(self.store.erase_user(id.as_str(), &record).await?)
    }

    /// The keyed hash an erasure record is filed under.
    pub fn erasure_subject(&self, id: &UserId) -> String {
        hex::encode(self.keyring.secret_mac("erasure-subject", id.as_str().as_bytes()))
    }

    /// Runs the erasures whose grace period is over (the cleanup job); how many ran.
    pub async fn run_due_erasures(&self, now: UnixMillis) -> Result<u64, ApiError> {
        let mut done = 0;
        for raw in self.store.due_erasures(now, 1000).await? {
            let Ok(id) = raw.parse::<UserId>() else { continue };
            let Some(request) = self.store.erasure_request(id.as_str()).await? else { continue };
            if self.erase(&id, request.asked_at, &request.requested_by, now).await?.is_some() {
                done += 1;
            }
        }
        Ok(done)
    }
}

/// What a parent answers through the consent link.
pub use domain::wire::rights::ParentalAnswer;

impl Accounts {
    /// A child's signup (under 13): the account is created disabled, with the tier's default
    /// profile (nothing the child typed beyond the email and password), personalisation and
    /// marketing off, and a single-use link (its hash stored, 72 hours) goes to the parent.
    pub(crate) async fn create_child(
        &self,
        actor: &Actor,
        request: crate::users::CreateUser,
        now: UnixMillis,
    ) -> Result<domain::wire::users::PendingSignup, ApiError> {
        use domain::email::Email;
        use domain::tier::Tier;
        let email = Email::parse(&request.email)
            .map_err(|e| crate::users::invalid_field("email", e.rule(), e.to_string()))?;
        let parent = request
            .parent_email
            .as_deref()
            .ok_or_else(|| {
                crate::users::invalid_field(
                    "parent_email",
                    "required",
                    "under 13, a parent's email is needed for their consent".into(),
                )
            })
            .and_then(|p| {
                Email::parse(p)
                    .map_err(|e| crate::users::invalid_field("parent_email", e.rule(), e.to_string()))
            })?;
        if parent == email {
            return Err(crate::users::invalid_field(
                "parent_email",
                "different",
                "the parent's email must not be the child's".into(),
            ));
        }
        domain::password::check_password(&request.password, &email)
            .map_err(|e| crate::users::invalid_field("password", e.rule(), e.to_string()))?;
        let profile = domain::profile::new_profile(Tier::Free, &Value::Null)
            .map_err(|e| ApiError::Internal(e.summary()))?;
        let hash = self.hasher.hash(&request.password).await?;
        let mut account =
            self.new_account(&email, Tier::Free, domain::identity::Role::User, profile, Some(hash), now)?;
        // Disabled until the parent consents: no login, whatever happens to the steps below.
        account.row.disabled_at = Some(now);
        let audit = AuditEntry {
            user_id: account.row.id.clone(),
            actor: actor.to_string(),
            action: "create".into(),
            old_value: None,
            new_value: Some("tier=free role=user pending=parental_consent".into()),
            at: now,
        };
        self.store.insert_user(&account.row, &audit).await?;
        self.minor_defaults(&account.row.id, now).await?;
        let token = hex::encode([random_16(), random_16()].concat());
        let expires = now.saturating_add_ms(domain::coppa::PARENTAL_LINK_TTL_MS);
        self.store
            .put_parental_request(&account.row.id, &crate::jobs::provision::token_hash(&token), expires)
            .await?;
        let deadline = rfc3339(expires);
        let template = domain::messages::Template::ParentalConsent { token: &token, deadline: &deadline };
        let message = self.message(&account, "email", parent.as_str(), &template, Some(&token), now)?;
        self.send_message(message).await?;
        Ok(domain::wire::users::PendingSignup {
            id: account.row.id.clone(),
            status: domain::wire::users::PENDING_PARENTAL_CONSENT.to_owned(),
            parental_consent_expires_at: rfc3339(expires),
        })
    }

    /// A minor's consents start with personalisation and marketing off (recorded as defaults).
    pub(crate) async fn minor_defaults(&self, user_id: &str, now: UnixMillis) -> Result<(), ApiError> {
        let defaults: Vec<rights::Consent> = rights::PURPOSES
            .iter()
            .filter(|p| p.default_granted(false) != p.default_granted(true))
            .map(|&purpose| rights::Consent {
                purpose,
                granted: purpose.default_granted(true),
                at: now,
                source: rights::Source::Default,
                policy_version: rights::POLICY_VERSION.to_owned(),
            })
            .collect();
        Ok(self.store.put_consents(user_id, &defaults, &[]).await?)
    }

    /// A parent's answer: `grant` enables the account (the method recorded in the audit log),
    /// `refuse` erases it. The link works once.
    pub async fn parental_consent(
        &self,
        answer: &ParentalAnswer,
        now: UnixMillis,
    ) -> Result<ParentalOutcome, ApiError> {
        if answer.decision != "grant" && answer.decision != "refuse" {
            return Err(crate::users::invalid_field(
                "decision",
                "enum",
                "must be \"grant\" or \"refuse\"".into(),
            ));
        }
        let hash = crate::jobs::provision::token_hash(&answer.token);
        let id = self.store.take_parental_request(&hash, now).await?.ok_or_else(|| {
            ApiError::client(ProblemKind::NotFound, "the consent link is unknown, used or expired")
        })?;
        let id: UserId = id.parse().map_err(|_| ApiError::Internal(format!("bad user id {id}")))?;
        if answer.decision == "refuse" {
            self.erase(&id, now, "parent", now).await?;
            return Ok(ParentalOutcome {
                id: id.to_string(),
                decision: ParentalDecision::Refuse,
                method: None,
                consented_at: None,
                erased: Some(true),
            });
        }
        let account = self.load(&id).await?;
        let mut row = account.row.clone();
        row.disabled_at = None;
        row.updated_at = now;
        let audit = AuditEntry {
            user_id: id.to_string(),
            actor: "parent".into(),
            action: "parental_consent".into(),
            old_value: None,
            new_value: Some("granted method=email_link".into()),
            at: now,
        };
        match self.store.update_user(&row, account.row.version, &[audit]).await? {
            crate::store::UpdateOutcome::Updated => Ok(ParentalOutcome {
                id: id.to_string(),
                decision: ParentalDecision::Grant,
                method: Some("email_link".to_owned()),
                consented_at: Some(rfc3339(now)),
                erased: None,
            }),
            _ => Err(ApiError::client(
                ProblemKind::Conflict,
                "the account changed meanwhile; use the link again",
            )),
        }
    }

    /// Children whose parent did not answer within 72 hours are erased (the cleanup job).
    pub async fn purge_unconsented_children(&self, now: UnixMillis) -> Result<u64, ApiError> {
        let mut done = 0;
        for raw in self.store.expired_parental_requests(now, 1000).await? {
            let Ok(id) = raw.parse::<UserId>() else { continue };
            if self.erase(&id, now, "parental consent expired", now).await?.is_some() {
                done += 1;
            }
        }
        Ok(done)
    }
}

/// The tier a `create` audit entry names (`tier=free role=user`).
fn account_tier_at_creation(entry: &AuditEntry) -> Value {
    entry
        .new_value
        .as_deref()
        .and_then(|v| v.split(' ').find_map(|p| p.strip_prefix("tier=")))
        .map_or(Value::Null, |t| json!(t))
}

/// The archive: `manifest.json` first, then one deflated JSON file per section.
fn zip_sections(user_id: &str, contents: &[(&str, Value)], now: UnixMillis) -> Result<Vec<u8>, ApiError> {
    let io = |e: std::io::Error| ApiError::Internal(format!("export archive: {e}"));
    let zip_err = |e: zip::result::ZipError| ApiError::Internal(format!("export archive: {e}"));
    let mut files = Vec::new();
    let mut entries = Vec::new();
    for (name, value) in contents {
        let (bytes, entry) = rights::section(name, value);
        files.push((entry.file.clone(), bytes));
        entries.push(entry);
    }
    let manifest = serde_json::to_vec_pretty(&rights::manifest(user_id, &rfc3339(now), &entries))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600);
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer.start_file("manifest.json", options).map_err(zip_err)?;
    writer.write_all(&manifest).map_err(io)?;
    for (file, bytes) in files {
        writer.start_file(file, options).map_err(zip_err)?;
        writer.write_all(&bytes).map_err(io)?;
    }
    Ok(writer.finish().map_err(zip_err)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestOrigin;
    use crate::users::CreateUser;
    use sqlx::Row;

    async fn new_user(origin: &TestOrigin, email: &str) -> UserId {
        let request = CreateUser {
            email: email.to_owned(),
            password: "a long enough passphrase 42".to_owned(),
            tier: None,
            role: None,
            profile: Some(json!({ "display_name": "Erased Person" })),
            birth_date: None,
            parent_email: None,
        };
        let view = origin.state.accounts.create(&Actor::System, request, UnixMillis(1_000)).await.unwrap();
        view.id().parse().unwrap()
    }

    #[tokio::test]
    async fn a_child_whose_parent_does_not_answer_in_72_hours_is_erased() {
        let origin = TestOrigin::start().await;
        let accounts = &origin.state.accounts;
        let now = UnixMillis(1_764_000_000_000);
        let request = CreateUser {
            email: "child@example.com".to_owned(),
            password: "a long enough passphrase 42".to_owned(),
            tier: None,
            role: None,
            profile: None,
            birth_date: Some("2020-01-01".to_owned()),
            parent_email: Some("parent@example.com".to_owned()),
        };
        let pending = accounts.create(&Actor::Anonymous, request, now).await.unwrap();
        assert!(
            matches!(&pending, domain::wire::users::Signup::Pending(p) if p.status == "pending_parental_consent")
        );
        let id: UserId = pending.id().parse().unwrap();
        let row = origin.state.store.user_by_id(id.as_str()).await.unwrap().unwrap();
        assert!(row.disabled_at.is_some(), "a child cannot log in before the consent");
        let before = now.saturating_add_ms(domain::coppa::PARENTAL_LINK_TTL_MS - 1);
        assert_eq!(accounts.purge_unconsented_children(before).await.unwrap(), 0);
        let after = now.saturating_add_ms(domain::coppa::PARENTAL_LINK_TTL_MS);
        assert_eq!(accounts.purge_unconsented_children(after).await.unwrap(), 1);
        assert!(origin.state.store.user_by_id(id.as_str()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn concurrent_export_starts_make_one_job() {
        let origin = TestOrigin::start().await;
        let id = new_user(&origin, "exporter@example.com").await;
        let store = Arc::clone(&origin.state.store);
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (store, id) = (Arc::clone(&store), id.clone());
                tokio::spawn(async move {
                    let new = ExportRow {
                        id: format!("exp_{i}"),
                        user_id: id.to_string(),
                        requested_by: "test".into(),
                        created_at: UnixMillis(5_000),
                        ready_at: None,
                        expires_at: None,
                        downloads: 0,
                    };
                    let audit = AuditEntry {
                        user_id: id.to_string(),
                        actor: "test".into(),
                        action: "export_requested".into(),
                        old_value: None,
                        new_value: None,
                        at: UnixMillis(5_000),
                    };
                    let reuse = |e: &ExportRow| rights::reuses(&e.state(), UnixMillis(5_000));
                    store.start_export(&new, &reuse, &audit).await.unwrap().unwrap()
                })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
        let first = &results[0].0.id;
        assert!(results.iter().all(|(e, _)| &e.id == first), "one job for all");
    }

    #[tokio::test]
    async fn an_erasure_empties_every_table_of_the_user_and_keeps_a_record_without_them() {
        let origin = TestOrigin::start().await;
        let accounts = &origin.state.accounts;
        let store = &origin.state.store;
        let id = new_user(&origin, "erased@example.com").await;
        let kept = new_user(&origin, "kept@example.com").await;
        let uid = id.as_str();
        let now = UnixMillis(10_000);
        // Rows about the user in as many tables as a test can reach through the store.
        accounts
            .put_consents(&Actor::System, &id, &json!({ "consents": { "marketing": true } }), false, now)
            .await
            .unwrap();
        store.append_login(uid, r#"{"network":"10.0.0.0/24"}"#, now).await.unwrap();
        store.add_security_event(uid, "login_failure", "{}", now).await.unwrap();
        store.state_put(&format!("mfa:{uid}"), "{}", UnixMillis(u64::MAX / 2)).await.unwrap();
        store
            .state_put("challenge:x", &format!(r#"{{"user_id":"{uid}"}}"#), UnixMillis(u64::MAX / 2))
            .await
            .unwrap();
        store.put_pending_totp(uid, b"sealed").await.unwrap();
        let event = crate::store::EventRow {
            id: "ev1".into(),
            kind: domain::wire::event::EventKind::ApiRequest,
            user_id: Some(uid.to_owned()),
            class: None,
            at: 9_000,
            data: json!({}),
        };
        store.store_events(&[event], now).await.unwrap();
        let asked = EraseRequest { immediately: true, ..Default::default() };
        let Erasure::Done { purged } =
            accounts.request_erasure(&Actor::System, &id, asked, 14, now).await.unwrap()
        else {
            panic!("an immediate erasure was scheduled");
        };
        assert_eq!(purged["users"], 1);
        assert_eq!(purged["events"], 1);
        assert_eq!(purged["auth_state"], 2);
        assert_eq!(purged["consents"], 1);

        let db = origin.sqlite().await;
        for table in crate::store::ERASED_TABLES.iter().chain(&["users"]) {
            let rows = sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(db.pool()).await.unwrap();
            for row in rows {
                for i in 0..row.len() {
                    let text: Option<String> = row.try_get(i).ok().flatten();
                    assert!(!text.unwrap_or_default().contains(uid), "{table} still names the user");
                }
            }
        }
        // The other user is untouched; the record names nobody.
        assert!(store.user_by_id(kept.as_str()).await.unwrap().is_some());
        let record = store.erasure_record(&accounts.erasure_subject(&id)).await.unwrap().unwrap();
        assert_eq!(record.requested_by, "system");
        assert!(!record.purged.contains(uid) && !record.subject.contains(uid));
        // An event about the erased user that arrives later is dropped.
        let late = crate::store::EventRow {
            id: "ev2".into(),
            kind: domain::wire::event::EventKind::ApiRequest,
            user_id: Some(uid.to_owned()),
            class: None,
            at: 11_000,
            data: json!({}),
        };
        assert_eq!(store.store_events(&[late], now).await.unwrap().0, 0);
        // The edge's wipe is the last trace, until it confirms.
        assert_eq!(store.pending_edge_wipes(10).await.unwrap(), vec![uid.to_owned()]);
        assert!(store.edge_wiped(uid).await.unwrap());
        assert!(store.pending_edge_wipes(10).await.unwrap().is_empty());
        // The address can sign up again.
        new_user(&origin, "erased@example.com").await;
    }
}
