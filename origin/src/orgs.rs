//! Organizations (issue 19): teams on the enterprise tiers, with their seats, roles, policies,
//! invitations and audit trail. The rules are `domain::org`; this module gathers the facts
//! (who the caller is in the organization), applies the rules, seals, stores and audits.
//!
//! Every answer that changes what a member may do carries `gate`: the
//! [`GateUpdate`]s the edge records in the members' gates before it answers (and strips from
//! the body), so a new tier, a policy, a removal or ended sessions apply on the member's next
//! request. A login's answer carries the member's grant too (`protection.rs`), and the
//! member's floor includes the organization's second factor.
//!
//! Authorisation is checked here on the signed actor: a platform admin may do anything an
//! owner may but transfer the ownership (the owner's own act, with a fresh proof); anyone
//! else acts by their role in the organization, and a non-member learns nothing (404).

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use domain::email::Email;
use domain::identity::{Actor, UserId};
use domain::org::{self, GateUpdate, OrgAction, OrgError, OrgGrant, OrgPolicies, OrgRole};
use domain::problem::{Problem, ProblemKind};
use domain::security::SecurityFloor;
use domain::tier::Tier;
use domain::time::UnixMillis;
use domain::wire::orgs::{
    AcceptInvitation, Gated, Invitation, Invitations, MemberAffected, MemberPosture, NewInvitation, NewOrg,
    NewOrgRole, Org, OrgAudit, OrgAuditAction, OrgAuditEntry, OrgMember, OrgMembers, OrgPosture,
    OrgRoleChanged, OwnershipTransfer, OwnershipTransferred,
};
use domain::wire::Factor;
use serde_json::{json, Value};

use crate::crypto::random_16;
use crate::errors::ApiError;
use crate::extract::parse;
use crate::protection::Proof;
use crate::store::orgs::{
    AcceptOutcome, InvitationRow, InviteOutcome, MemberRow, OrgAuditRow, OrgCreate, OrgRow,
};
use crate::users::{invalid_field, rfc3339, Account, Accounts};
use crate::AppState;

/// The latest audit entries an organization's trail answers with.
const AUDIT_LIMIT: u32 = 500;

/// The internal routes of organizations, merged into the signed router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/orgs", post(create))
        .route("/orgs/{org}", get(read))
        .route("/orgs/{org}/policies", axum::routing::patch(update_policies))
        .route("/orgs/{org}/members", get(members))
        .route("/orgs/{org}/invitations", post(invite).get(invitations))
        .route("/invitations/accept", post(accept))
        .route("/orgs/{org}/members/{user}/role", put(change_role))
        .route("/orgs/{org}/members/{user}", axum::routing::delete(remove))
        .route("/orgs/{org}/members/{user}/sessions/end", post(end_sessions))
        .route("/orgs/{org}/transfer", post(transfer))
        .route("/orgs/{org}/audit", get(audit))
        .route("/orgs/{org}/posture", get(posture))
}

fn no_org(id: &str) -> ApiError {
    ApiError::client(ProblemKind::NotFound, format!("no organization {id}"))
}

fn no_member(id: &str) -> ApiError {
    ApiError::client(ProblemKind::NotFound, format!("no member {id} in this organization"))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// A refusal of `domain::org`: seats are a conflict naming the limit, the rest forbidden.
fn refused(e: &OrgError) -> ApiError {
    let kind = match e {
        OrgError::SeatsFull { .. } => ProblemKind::Conflict,
        OrgError::NotAMember => ProblemKind::NotFound,
        _ => ProblemKind::Forbidden,
    };
    let mut problem = Problem::new(kind, e.to_string()).with("rule", e.rule());
    if let OrgError::SeatsFull { seats } = e {
        problem = problem.with("seats", *seats);
    }
    ApiError::Client(problem)
}

fn field_problems(errors: &[org::FieldError]) -> ApiError {
    let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let list: Vec<Value> = errors
        .iter()
        .map(|e| json!({ "field": e.field, "kind": "invalid", "rule": e.rule, "detail": e.detail }))
        .collect();
    ApiError::Client(Problem::new(ProblemKind::ValidationFailed, detail).with("errors", list))
}

fn role_of(raw: &str) -> Result<OrgRole, ApiError> {
    raw.parse().map_err(internal)
}

fn tier_of(org: &OrgRow) -> Result<Tier, ApiError> {
    org.tier.parse().map_err(|_| internal(format!("organization {} has an unknown tier", org.id)))
}

fn policies_of(org: &OrgRow) -> Result<OrgPolicies, ApiError> {
    serde_json::from_str(&org.policies).map_err(internal)
}

fn grant(org: &OrgRow, role: OrgRole) -> Result<OrgGrant, ApiError> {
    Ok(OrgGrant::new(&org.id, role, tier_of(org)?, &policies_of(org)?))
}

/// The caller as the organization sees them.
struct Standing {
    org: OrgRow,
    /// Their role, as a member; a platform admin who is not one acts as the owner would.
    role: OrgRole,
    member: bool,
}

impl Standing {
    fn may(&self, action: OrgAction) -> Result<(), ApiError> {
        org::check(self.role, action).map_err(|e| refused(&e))
    }
}

fn audit_row(
    org: &str,
    actor: &Actor,
    action: OrgAuditAction,
    user: Option<&str>,
    detail: Option<String>,
    at: UnixMillis,
) -> OrgAuditRow {
    OrgAuditRow {
        org_id: org.to_owned(),
        actor: actor.to_string(),
        action: action.as_str().to_owned(),
        user_id: user.map(str::to_owned),
        detail,
        at,
    }
}

impl Accounts {
    /// The caller's standing in organization `id`: 404 for a non-member (not even whether it
    /// exists), the platform's admins acting as owners.
    async fn standing(&self, actor: &Actor, id: &str) -> Result<Standing, ApiError> {
        let org = self.store.org(id).await?.ok_or_else(|| no_org(id))?;
        if let Some(user) = actor.user_id() {
            if let Some((joined, member)) = self.store.membership(user.as_str()).await? {
                if joined.id == org.id {
                    return Ok(Standing { org, role: role_of(&member.role)?, member: true });
                }
            }
        }
        if actor.is_admin() {
            return Ok(Standing { org, role: OrgRole::Owner, member: false });
        }
        Err(no_org(id))
    }

    /// A member's role in the organization (404 when not a member).
    async fn member_role(&self, org: &OrgRow, user: &str) -> Result<OrgRole, ApiError> {
        match self.store.membership(user).await? {
            Some((joined, member)) if joined.id == org.id => role_of(&member.role),
            _ => Err(no_member(user)),
        }
    }

    /// What the edge learns of a user's organization at login: their grant, if a member.
    pub(crate) async fn org_grant(&self, user_id: &str) -> Result<Option<OrgGrant>, ApiError> {
        match self.store.membership(user_id).await? {
            Some((org, member)) => Ok(Some(grant(&org, role_of(&member.role)?)?)),
            None => Ok(None),
        }
    }

    /// The account's security floor with its organization's policy on top, and the policy.
    pub(crate) async fn member_floor(
        &self,
        account: &Account,
    ) -> Result<(SecurityFloor, Option<OrgPolicies>), ApiError> {
        let own = crate::protection::floor_of(account)?;
        match self.store.membership(&account.row.id).await? {
            Some((org, _)) => {
                let policies = policies_of(&org)?;
                Ok((policies.floor(own), Some(policies)))
            }
            None => Ok((own, None)),
        }
    }

    async fn org_view(&self, org: &OrgRow, now: UnixMillis) -> Result<Org, ApiError> {
        let members = self.store.org_members(&org.id).await?.len();
        let pending = self.store.pending_invitations(&org.id, now).await?.len();
        Ok(Org {
            id: org.id.clone(),
            slug: org.slug.clone(),
            name: org.name.clone(),
            tier: tier_of(org)?,
            seats: org.seats,
            members: members as u64,
            pending_invitations: pending as u64,
            policies: policies_of(org)?,
            your_role: None,
            created_at: rfc3339(org.created_at),
            updated_at: rfc3339(org.updated_at),
        })
    }

    /// The gate updates that give every member of `org` their grant as it is now.
    async fn grants_for_all(&self, org: &OrgRow, now: UnixMillis) -> Result<Vec<GateUpdate>, ApiError> {
        self.store
            .org_members(&org.id)
            .await?
            .iter()
            .map(|m| {
                Ok(GateUpdate {
                    user_id: m.user_id.clone(),
                    grant: Some(grant(org, role_of(&m.role)?)?),
                    at: now.0,
                    end_sessions: false,
                })
            })
            .collect()
    }

    pub async fn create_org(
        &self,
        actor: &Actor,
        request: NewOrg,
        now: UnixMillis,
    ) -> Result<Gated<Org>, ApiError> {
        let Some(caller) = actor.user_id() else {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                "organizations are created by a signed-in user",
            ));
        };
        let admin = actor.is_admin();
        let own = self
            .store
            .user_by_id(caller.as_str())
            .await?
            .ok_or_else(|| crate::users::not_found(caller.as_str()))?;
        let own_tier: Tier = own.tier.parse().map_err(internal)?;
        if !org::may_create(admin, own_tier) {
            return Err(ApiError::Client(
                Problem::new(
                    ProblemKind::Forbidden,
                    format!("an organization needs an enterprise or vip account (yours is {own_tier}), or a platform admin"),
                )
                .with("rule", "org-tier"),
            ));
        }
        let tier = request.tier.unwrap_or(if admin { Tier::Enterprise } else { own_tier });
        let seats = request.seats.unwrap_or_else(|| org::plan_seats(tier));
        // Self-service takes its own plan: its tier and its seats.
        if !admin && (tier != own_tier || seats != org::plan_seats(tier)) {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                format!(
                    "self-service creates a {own_tier} organization with {} seats; ask an admin for more",
                    org::plan_seats(own_tier)
                ),
            ));
        }
        let owner_id = match request.owner_id.as_deref() {
            Some(raw) if admin => raw
                .parse::<UserId>()
                .map_err(|_| invalid_field("owner_id", "user-id", format!("{raw:?} is not a user id")))?,
            Some(_) => {
                return Err(ApiError::client(
                    ProblemKind::Forbidden,
                    "only a platform admin names another owner",
                ))
            }
            None => caller.clone(),
        };
        if self.store.user_by_id(owner_id.as_str()).await?.is_none() {
            return Err(invalid_field("owner_id", "user-id", format!("no user {owner_id}")));
        }
        let mut errors = Vec::new();
        let name = org::check_name(&request.name).map_err(|e| errors.push(e)).ok();
        if let Err(e) = org::check_slug(&request.slug) {
            errors.push(e);
        }
        if let Err(e) = org::check_tier(tier) {
            errors.push(e);
        }
        if let Err(e) = org::check_seat_count(seats) {
            errors.push(e);
        }
        let policies =
            match OrgPolicies::default().patched(request.policies.as_ref().unwrap_or(&json!({})), tier) {
                Ok(p) => Some(p),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            };
        let (Some(name), Some(policies), true) = (name, policies, errors.is_empty()) else {
            return Err(field_problems(&errors));
        };
        let row = OrgRow {
            id: format!("org_{}", hex::encode(random_16())),
            slug: request.slug.clone(),
            name,
            tier: tier.to_string(),
            seats,
            policies: serde_json::to_string(&policies).map_err(internal)?,
            created_by: actor.to_string(),
            created_at: now,
            updated_at: now,
        };
        let owner = MemberRow {
            org_id: row.id.clone(),
            user_id: owner_id.to_string(),
            role: OrgRole::Owner.as_str().to_owned(),
            joined_at: now,
        };
        let detail = Some(format!("slug={} tier={tier} seats={seats} owner={owner_id}", row.slug));
        let audit =
            audit_row(&row.id, actor, OrgAuditAction::OrgCreated, Some(owner_id.as_str()), detail, now);
        match self.store.create_org(&row, &owner, &audit).await? {
            OrgCreate::Created => {}
            OrgCreate::SlugTaken => {
                return Err(ApiError::Client(
                    Problem::new(ProblemKind::Conflict, format!("the slug {} is taken", row.slug))
                        .with("rule", "slug-unique"),
                ))
            }
            OrgCreate::AlreadyMember => {
                return Err(ApiError::Client(
                    Problem::new(ProblemKind::Conflict, "the owner belongs to an organization already")
                        .with("rule", "one-organization"),
                ))
            }
        }
        let answer = self.org_view(&row, now).await?;
        let update = GateUpdate {
            user_id: owner_id.to_string(),
            grant: Some(grant(&row, OrgRole::Owner)?),
            at: now.0,
            end_sessions: false,
        };
        Ok(Gated { answer, gate: vec![update] })
    }

    pub async fn read_org(&self, actor: &Actor, id: &str, now: UnixMillis) -> Result<Org, ApiError> {
        let standing = self.standing(actor, id).await?;
        standing.may(OrgAction::Read)?;
        let mut view = self.org_view(&standing.org, now).await?;
        if standing.member {
            view.your_role = Some(standing.role);
        }
        Ok(view)
    }

    /// Changes the policies (a JSON merge patch of them); every member's gate learns them.
    pub async fn update_policies(
        &self,
        actor: &Actor,
        id: &str,
        patch: &Value,
        now: UnixMillis,
    ) -> Result<Gated<Org>, ApiError> {
        let standing = self.standing(actor, id).await?;
        standing.may(OrgAction::UpdatePolicies)?;
        let org = standing.org;
        let policies = policies_of(&org)?.patched(patch, tier_of(&org)?).map_err(|e| field_problems(&e))?;
        let json = serde_json::to_string(&policies).map_err(internal)?;
        let fields: Vec<&String> = patch.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        let detail =
            Some(format!("fields={}", fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(",")));
        let audit = audit_row(&org.id, actor, OrgAuditAction::PoliciesUpdated, None, detail, now);
        if !self.store.put_org_policies(&org.id, &json, now, &audit).await? {
            return Err(no_org(id));
        }
        let org = self.store.org(&org.id).await?.ok_or_else(|| no_org(id))?;
        let answer = self.org_view(&org, now).await?;
        Ok(Gated { answer, gate: self.grants_for_all(&org, now).await? })
    }

    pub async fn org_members(&self, actor: &Actor, id: &str) -> Result<OrgMembers, ApiError> {
        let standing = self.standing(actor, id).await?;
        standing.may(OrgAction::ListMembers)?;
        let members = self
            .store
            .org_members(&standing.org.id)
            .await?
            .into_iter()
            .map(|m| {
                Ok(OrgMember { role: role_of(&m.role)?, user_id: m.user_id, joined_at: rfc3339(m.joined_at) })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(OrgMembers { members })
    }

    /// Invites an address: refused (409, naming the seats) when members and pending
    /// invitations hold every seat; the email goes through the outbox in the same transaction.
    pub async fn invite(
        &self,
        actor: &Actor,
        id: &str,
        request: NewInvitation,
        now: UnixMillis,
    ) -> Result<Invitation, ApiError> {
        let standing = self.standing(actor, id).await?;
        standing.may(OrgAction::Invite)?;
        let role = request.role.unwrap_or(OrgRole::Member);
        if role == OrgRole::Owner {
            return Err(refused(&OrgError::OwnerRole));
        }
        if role == OrgRole::Admin && standing.role != OrgRole::Owner {
            return Err(refused(&OrgError::AdminsAreTheOwners));
        }
        let org = standing.org;
        let email =
            Email::parse(&request.email).map_err(|e| invalid_field("email", e.rule(), e.to_string()))?;
        let policies = policies_of(&org)?;
        if !policies.email_allowed(email.as_str()) {
            return Err(invalid_field(
                "email",
                "allowed-email-domains",
                format!(
                    "the organization invites addresses at {} only",
                    policies.allowed_email_domains.join(", ")
                ),
            ));
        }
        let inviter_id = actor
            .user_id()
            .ok_or_else(|| ApiError::client(ProblemKind::Forbidden, "invitations come from a user"))?;
        let inviter = self.load(inviter_id).await?;
        let mut random = [0u8; 32];
        random[..16].copy_from_slice(&random_16());
        random[16..].copy_from_slice(&random_16());
        let token = org::invitation_token(&random);
        let invitation_id = format!("inv_{}", hex::encode(random_16()));
        let expires_at = org::invitation_expiry(now);
        let deadline = rfc3339(expires_at);
        let template =
            domain::messages::Template::OrgInvitation { org: &org.name, token: &token, deadline: &deadline };
        // The mail goes out under the organization's sender name when it has a white label.
        let sender = policies.branding.as_ref().and_then(|b| b.sender_name.as_deref());
        let message =
            self.message_from(&inviter, "email", email.as_str(), &template, Some(&token), sender, now)?;
        let invitation = InvitationRow {
            id: invitation_id.clone(),
            token_hash: org::token_hash(&token),
            org_id: org.id.clone(),
            invited_by: inviter.row.id.clone(),
            email_index: self.keyring.email_index(email.as_str()),
            email_sealed: inviter
                .data_key
                .seal(email.as_str().as_bytes(), &format!("{}/invitation/{invitation_id}", inviter.row.id)),
            role: role.as_str().to_owned(),
            created_at: now,
            expires_at,
            accepted_at: None,
            accepted_by: None,
            revoked_at: None,
        };
        // The audit entry names the invitation, never the address.
        let audit = audit_row(
            &org.id,
            actor,
            OrgAuditAction::MemberInvited,
            None,
            Some(format!("invitation={invitation_id} role={role}")),
            now,
        );
        match self.store.invite(&invitation, now, &audit, &message).await? {
            InviteOutcome::Invited => {}
            InviteOutcome::SeatsFull { seats } => return Err(refused(&OrgError::SeatsFull { seats })),
            InviteOutcome::Pending => {
                return Err(ApiError::Client(
                    Problem::new(ProblemKind::Conflict, "an invitation to this address is pending already")
                        .with("rule", "one-pending-invitation"),
                ))
            }
            InviteOutcome::NoOrg => return Err(no_org(id)),
        }
        self.deliver_soon(&message.id, true).await;
        Ok(Invitation {
            id: invitation_id,
            org_id: Some(org.id),
            email: Some(email.as_str().to_owned()),
            role,
            invited_by: None,
            expires_at: rfc3339(expires_at),
        })
    }

    /// Pending invitations, with their addresses unsealed (the inviter's key sealed them).
    pub async fn invitations(
        &self,
        actor: &Actor,
        id: &str,
        now: UnixMillis,
    ) -> Result<Invitations, ApiError> {
        let standing = self.standing(actor, id).await?;
        standing.may(OrgAction::Invite)?;
        let mut list = Vec::new();
        for invitation in self.store.pending_invitations(&standing.org.id, now).await? {
            let email = match self.store.user_by_id(&invitation.invited_by).await? {
                Some(row) => {
                    let inviter = self.unseal(row)?;
                    let context = format!("{}/invitation/{}", inviter.row.id, invitation.id);
                    inviter
                        .data_key
                        .open(&invitation.email_sealed, &context)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                }
                None => None,
            };
            list.push(Invitation {
                role: role_of(&invitation.role)?,
                id: invitation.id,
                org_id: None,
                email,
                invited_by: Some(invitation.invited_by),
                expires_at: rfc3339(invitation.expires_at),
            });
        }
        Ok(Invitations { invitations: list })
    }

    /// Accepts an invitation for the signed-in account whose address it was sent to.
    pub async fn accept_invitation(
        &self,
        actor: &Actor,
        token: &str,
        now: UnixMillis,
    ) -> Result<Gated<Org>, ApiError> {
        let Some(user) = actor.user_id() else {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                "sign in with the invited address to accept",
            ));
        };
        let unknown = || ApiError::client(ProblemKind::NotFound, "no such invitation");
        if !org::is_token(token) {
            return Err(unknown());
        }
        let hash = org::token_hash(token);
        let invitation = self.store.invitation(&hash).await?.ok_or_else(unknown)?;
        let state = org::InvitationState {
            expires_at: invitation.expires_at,
            accepted: invitation.accepted_at.is_some(),
            revoked: invitation.revoked_at.is_some(),
        };
        if !state.usable(now) {
            return Err(ApiError::client(
                ProblemKind::Gone,
                "the invitation was used, revoked or has expired",
            ));
        }
        let org = self.store.org(&invitation.org_id).await?.ok_or_else(unknown)?;
        let account = self.load(user).await?;
        if !policies_of(&org)?.email_allowed(&account.email) {
            return Err(ApiError::client(
                ProblemKind::Forbidden,
                "the organization's policy no longer allows this address",
            ));
        }
        let mut indexes = vec![self.keyring.email_index(&account.email)];
        indexes.extend(self.keyring.retired_email_indexes(&account.email));
        let detail = Some(format!("invitation={} role={}", invitation.id, invitation.role));
        let audit = audit_row(&org.id, actor, OrgAuditAction::MemberJoined, Some(user.as_str()), detail, now);
        match self.store.accept_invitation(&hash, user.as_str(), &indexes, now, &audit).await? {
            AcceptOutcome::Joined(member) => {
                let role = role_of(&member.role)?;
                let mut answer = self.org_view(&org, now).await?;
                answer.your_role = Some(role);
                let update = GateUpdate {
                    user_id: user.to_string(),
                    grant: Some(grant(&org, role)?),
                    at: now.0,
                    end_sessions: false,
                };
                Ok(Gated { answer, gate: vec![update] })
            }
            AcceptOutcome::Unusable => {
                Err(ApiError::client(ProblemKind::Gone, "the invitation was used, revoked or has expired"))
            }
            AcceptOutcome::WrongAddress => {
                Err(ApiError::client(ProblemKind::Forbidden, "this invitation was sent to another address"))
            }
            AcceptOutcome::AlreadyMember => Err(ApiError::Client(
                Problem::new(ProblemKind::Conflict, "you belong to an organization already")
                    .with("rule", "one-organization"),
            )),
        }
    }

    pub async fn change_role(
        &self,
        actor: &Actor,
        id: &str,
        user: &str,
        new: OrgRole,
        now: UnixMillis,
    ) -> Result<Gated<OrgRoleChanged>, ApiError> {
        let standing = self.standing(actor, id).await?;
        let current = self.member_role(&standing.org, user).await?;
        org::check_role_change(standing.role, current, new).map_err(|e| refused(&e))?;
        let detail = Some(format!("{current}->{new}"));
        let audit = audit_row(&standing.org.id, actor, OrgAuditAction::RoleChanged, Some(user), detail, now);
        if current != new
            && !self
                .store
                .set_member_role(&standing.org.id, user, current.as_str(), new.as_str(), &audit)
                .await?
        {
            return Err(ApiError::client(
                ProblemKind::Conflict,
                "the member's role changed meanwhile; read it again",
            ));
        }
        let update = GateUpdate {
            user_id: user.to_owned(),
            grant: Some(grant(&standing.org, new)?),
            at: now.0,
            end_sessions: false,
        };
        Ok(Gated { answer: OrgRoleChanged { user_id: user.to_owned(), role: new }, gate: vec![update] })
    }

    /// Removes a member (or a member leaves): their sessions end at once and their tier falls
    /// back to their own.
    pub async fn remove_member(
        &self,
        actor: &Actor,
        id: &str,
        user: &str,
        now: UnixMillis,
    ) -> Result<Gated<MemberAffected>, ApiError> {
        let standing = self.standing(actor, id).await?;
        let current = self.member_role(&standing.org, user).await?;
        let itself = actor.user_id().is_some_and(|u| u.as_str() == user);
        org::check_removal(standing.role, current, itself).map_err(|e| refused(&e))?;
        let action = if itself { OrgAuditAction::MemberLeft } else { OrgAuditAction::MemberRemoved };
        let audit =
            audit_row(&standing.org.id, actor, action, Some(user), Some(format!("role={current}")), now);
        if !self.store.remove_member(&standing.org.id, user, current.as_str(), &audit).await? {
            return Err(ApiError::client(
                ProblemKind::Conflict,
                "the member's role changed meanwhile; read it again",
            ));
        }
        let update = GateUpdate { user_id: user.to_owned(), grant: None, at: now.0, end_sessions: true };
        Ok(Gated { answer: MemberAffected { user_id: user.to_owned(), removed: true }, gate: vec![update] })
    }

    /// An admin ends a member's sessions (audited); the edge revokes them in the member's gate.
    pub async fn end_member_sessions(
        &self,
        actor: &Actor,
        id: &str,
        user: &str,
        now: UnixMillis,
    ) -> Result<Gated<MemberAffected>, ApiError> {
        let standing = self.standing(actor, id).await?;
        standing.may(OrgAction::EndSessions)?;
        let target = self.member_role(&standing.org, user).await?;
        let itself = actor.user_id().is_some_and(|u| u.as_str() == user);
        org::check_end_sessions(standing.role, target, itself).map_err(|e| refused(&e))?;
        self.store
            .append_org_audit(&audit_row(
                &standing.org.id,
                actor,
                OrgAuditAction::SessionsEnded,
                Some(user),
                None,
                now,
            ))
            .await?;
        let update = GateUpdate {
            user_id: user.to_owned(),
            grant: Some(grant(&standing.org, target)?),
            at: now.0,
            end_sessions: true,
        };
        Ok(Gated { answer: MemberAffected { user_id: user.to_owned(), removed: false }, gate: vec![update] })
    }

    /// Hands the organization to another member: the owner only, with a fresh proof (a
    /// step-up of their session within 5 minutes, or the password and a code in the request).
    pub async fn transfer_ownership(
        &self,
        actor: &Actor,
        id: &str,
        request: OwnershipTransfer,
        now: UnixMillis,
    ) -> Result<Gated<OwnershipTransferred>, ApiError> {
        let standing = self.standing(actor, id).await?;
        if !standing.member {
            return Err(refused(&OrgError::NotAllowed(OrgRole::Admin)));
        }
        standing.may(OrgAction::TransferOwnership)?;
        let owner = actor.user_id().ok_or_else(|| no_org(id))?.clone();
        let new_owner = request.new_owner.as_str();
        if new_owner == owner.as_str() {
            return Err(invalid_field(
                "new_owner",
                "another-member",
                "the new owner must be another member".into(),
            ));
        }
        self.member_role(&standing.org, new_owner).await.map_err(|_| refused(&OrgError::NotAMember))?;
        let proof = Proof {
            current_password: request.current_password,
            method: request.method,
            code: request.code,
            step_up_at: request.step_up_at,
            credential: None,
        };
        self.require_fresh_proof(actor, &owner, &proof, now).await?;
        let detail = Some(format!("from={owner} to={new_owner}"));
        let audit = audit_row(
            &standing.org.id,
            actor,
            OrgAuditAction::OwnershipTransferred,
            Some(new_owner),
            detail,
            now,
        );
        if !self.store.transfer_ownership(&standing.org.id, owner.as_str(), new_owner, &audit).await? {
            return Err(ApiError::client(
                ProblemKind::Conflict,
                "the roles changed meanwhile; read them again",
            ));
        }
        let updates = vec![
            GateUpdate {
                user_id: new_owner.to_owned(),
                grant: Some(grant(&standing.org, OrgRole::Owner)?),
                at: now.0,
                end_sessions: false,
            },
            GateUpdate {
                user_id: owner.to_string(),
                grant: Some(grant(&standing.org, OrgRole::Admin)?),
                at: now.0,
                end_sessions: false,
            },
        ];
        let answer = OwnershipTransferred {
            owner: new_owner.to_owned(),
            previous_owner: owner.to_string(),
            previous_owner_role: OrgRole::Admin,
        };
        Ok(Gated { answer, gate: updates })
    }

    pub async fn org_audit(&self, actor: &Actor, id: &str) -> Result<OrgAudit, ApiError> {
        let standing = self.standing(actor, id).await?;
        standing.may(OrgAction::ReadAudit)?;
        let entries = self
            .store
            .org_audit(&standing.org.id, AUDIT_LIMIT)
            .await?
            .into_iter()
            .map(|e| {
                Ok(OrgAuditEntry {
                    action: e.action.parse().map_err(internal)?,
                    actor: e.actor,
                    user_id: e.user_id,
                    detail: e.detail,
                    at: rfc3339(e.at),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(OrgAudit { entries })
    }

    /// Each member's security posture: factors enrolled and last login (the edge adds the
    /// open sessions from the gates). Nothing else about them: no address, no profile.
    pub async fn org_posture(&self, actor: &Actor, id: &str) -> Result<OrgPosture, ApiError> {
        let standing = self.standing(actor, id).await?;
        standing.may(OrgAction::ReadPosture)?;
        let members = self
            .store
            .org_posture(&standing.org.id)
            .await?
            .into_iter()
            .map(|p| {
                let mut factors = Vec::new();
                for (on, factor) in
                    [(p.webauthn, Factor::Webauthn), (p.totp, Factor::Totp), (p.sms, Factor::Sms)]
                {
                    if on {
                        factors.push(factor);
                    }
                }
                Ok(MemberPosture {
                    role: role_of(&p.role)?,
                    user_id: p.user_id,
                    mfa_enrolled: !factors.is_empty(),
                    factors,
                    last_login_at: p.last_login_at.map(rfc3339),
                    active_sessions: None,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(OrgPosture { members })
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Gated<Org>>), ApiError> {
    let request: NewOrg = parse(&body)?;
    Ok((StatusCode::CREATED, Json(state.accounts.create_org(&actor, request, state.clock.now()).await?)))
}

async fn read(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
) -> Result<Json<Org>, ApiError> {
    Ok(Json(state.accounts.read_org(&actor, &org, state.clock.now()).await?))
}

async fn update_policies(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Gated<Org>>, ApiError> {
    let patch: Value = parse(&body)?;
    Ok(Json(state.accounts.update_policies(&actor, &org, &patch, state.clock.now()).await?))
}

async fn members(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
) -> Result<Json<OrgMembers>, ApiError> {
    Ok(Json(state.accounts.org_members(&actor, &org).await?))
}

async fn invite(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    let request: NewInvitation = parse(&body)?;
    Ok((StatusCode::CREATED, Json(state.accounts.invite(&actor, &org, request, state.clock.now()).await?)))
}

async fn invitations(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
) -> Result<Json<Invitations>, ApiError> {
    Ok(Json(state.accounts.invitations(&actor, &org, state.clock.now()).await?))
}

async fn accept(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<Json<Gated<Org>>, ApiError> {
    let request: AcceptInvitation = parse(&body)?;
    Ok(Json(state.accounts.accept_invitation(&actor, &request.token, state.clock.now()).await?))
}

async fn change_role(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((org, user)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Gated<OrgRoleChanged>>, ApiError> {
    let request: NewOrgRole = parse(&body)?;
    Ok(Json(state.accounts.change_role(&actor, &org, &user, request.role, state.clock.now()).await?))
}

async fn remove(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Gated<MemberAffected>>, ApiError> {
    Ok(Json(state.accounts.remove_member(&actor, &org, &user, state.clock.now()).await?))
}

async fn end_sessions(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((org, user)): Path<(String, String)>,
) -> Result<Json<Gated<MemberAffected>>, ApiError> {
    Ok(Json(state.accounts.end_member_sessions(&actor, &org, &user, state.clock.now()).await?))
}

async fn transfer(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Gated<OwnershipTransferred>>, ApiError> {
    let request: OwnershipTransfer = parse(&body)?;
    Ok(Json(state.accounts.transfer_ownership(&actor, &org, request, state.clock.now()).await?))
}

async fn audit(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
) -> Result<Json<OrgAudit>, ApiError> {
    Ok(Json(state.accounts.org_audit(&actor, &org).await?))
}

async fn posture(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(org): Path<String>,
) -> Result<Json<OrgPosture>, ApiError> {
    Ok(Json(state.accounts.org_posture(&actor, &org).await?))
}
