//! Organizations (issue 19): the answers and bodies of the organizations' operations. The
//! origin builds these; an answer that changes what members may do comes wrapped in
//! [`Gated`], whose `gate` the edge records in the members' gates and strips before it
//! answers (`src/orgs.rs`); the edge also adds each member's open sessions to a [`OrgPosture`].

use serde::{Deserialize, Serialize};

use crate::org::{GateUpdate, OrgPolicies, OrgRole};
use crate::security::Factor;
use crate::tier::Tier;

/// An origin's answer with the gate updates the edge records before answering (and strips).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gated<T> {
    #[serde(flatten)]
    pub answer: T,
    #[serde(default)]
    pub gate: Vec<GateUpdate>,
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Org {
    #[cfg_attr(feature = "openapi", schema(pattern = "^org_[0-9a-f]{32}$"))]
    pub id: String,
    pub slug: String,
    pub name: String,
    /// `enterprise` or `vip`.
    pub tier: Tier,
    pub seats: u32,
    pub members: u64,
    /// Invitations not yet accepted: each holds a seat for 7 days
    pub pending_invitations: u64,
    pub policies: OrgPolicies,
    /// The caller's role (absent for a platform admin who is not a member)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub your_role: Option<OrgRole>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub updated_at: String,
}

/// What creates an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub name: String,
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", min_length = 3, max_length = 40)
    )]
    pub slug: String,
    /// `enterprise` or `vip`.
    #[serde(default)]
    pub tier: Option<Tier>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub seats: Option<u32>,
    /// Platform admins only: the first owner (the caller by default).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(pattern = "^usr_[0-9a-f]{32}$"))]
    pub owner_id: Option<String>,
    /// A JSON merge patch of the default policies.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<OrgPolicies>))]
    pub policies: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgMember {
    pub user_id: String,
    pub role: OrgRole,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub joined_at: String,
}

/// The members, owner first; nothing personal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgMembers {
    pub members: Vec<OrgMember>,
}

/// What invites an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    #[cfg_attr(feature = "openapi", schema(format = Email))]
    pub email: String,
    /// `admin` or `member` (the default).
    #[serde(default)]
    pub role: Option<OrgRole>,
}

/// A pending invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitation {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// Null when the inviter's key can no longer open it.
    pub email: Option<String>,
    /// `admin` or `member`.
    pub role: OrgRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited_by: Option<String>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Invitations {
    pub invitations: Vec<Invitation>,
}

/// What accepts an invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    #[cfg_attr(feature = "openapi", schema(pattern = "^inv_[0-9a-f]{64}$"))]
    pub token: String,
}

/// A member's new role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewOrgRole {
    /// `admin` or `member`.
    pub role: OrgRole,
}

/// The role a member has now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgRoleChanged {
    pub user_id: String,
    pub role: OrgRole,
}

/// The member a removal or an end of sessions was about (the edge answers 204).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAffected {
    pub user_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// What hands the organization to another member, with a fresh proof when the session has
/// not stepped up in the last 5 minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OwnershipTransfer {
    #[cfg_attr(feature = "openapi", schema(pattern = "^usr_[0-9a-f]{32}$"))]
    pub new_owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the caller's session last stepped up: the edge sets it from the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub step_up_at: Option<u64>,
}

/// A transfer's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OwnershipTransferred {
    pub owner: String,
    pub previous_owner: String,
    pub previous_owner_role: OrgRole,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrgAuditAction {
    OrgCreated,
    PoliciesUpdated,
    MemberInvited,
    MemberJoined,
    RoleChanged,
    MemberRemoved,
    MemberLeft,
    SessionsEnded,
    OwnershipTransferred,
}

impl OrgAuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrgCreated => "org_created",
            Self::PoliciesUpdated => "policies_updated",
            Self::MemberInvited => "member_invited",
            Self::MemberJoined => "member_joined",
            Self::RoleChanged => "role_changed",
            Self::MemberRemoved => "member_removed",
            Self::MemberLeft => "member_left",
            Self::SessionsEnded => "sessions_ended",
            Self::OwnershipTransferred => "ownership_transferred",
        }
    }
}

impl std::str::FromStr for OrgAuditAction {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned()))
            .map_err(|_| format!("unknown audit action {raw:?}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgAuditEntry {
    pub action: OrgAuditAction,
    /// Who made the change.
    pub actor: String,
    /// The member it was about.
    pub user_id: Option<String>,
    pub detail: Option<String>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub at: String,
}

/// The audit trail, oldest first; never an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgAudit {
    pub entries: Vec<OrgAuditEntry>,
}

/// A member's security posture; nothing else about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MemberPosture {
    pub user_id: String,
    pub role: OrgRole,
    pub mfa_enrolled: bool,
    /// `webauthn`, `totp`, `sms`.
    pub factors: Vec<Factor>,
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub last_login_at: Option<String>,
    /// Open sessions, counted by the edge from the member's gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = u64, required = true))]
    pub active_sessions: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgPosture {
    pub members: Vec<MemberPosture>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_actions_read_back_from_their_names() {
        for action in [OrgAuditAction::OrgCreated, OrgAuditAction::OwnershipTransferred] {
            assert_eq!(action.as_str().parse::<OrgAuditAction>(), Ok(action));
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
        }
    }

    #[test]
    fn a_gated_answer_carries_its_updates_beside_the_answer() {
        let json = serde_json::json!({ "user_id": "usr_1", "role": "admin", "gate": [] });
        let gated: Gated<OrgRoleChanged> = serde_json::from_value(json).unwrap();
        assert_eq!(gated.answer.role, OrgRole::Admin);
        assert!(gated.gate.is_empty());
    }

    #[test]
    fn what_the_old_answers_omitted_stays_omitted() {
        let invitation = Invitation {
            id: "inv_1".into(),
            org_id: None,
            email: None,
            role: OrgRole::Member,
            invited_by: None,
            expires_at: "2026-12-11T00:00:00Z".into(),
        };
        let json = serde_json::to_value(&invitation).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "id": "inv_1", "email": null, "role": "member", "expires_at": "2026-12-11T00:00:00Z" })
        );
        let affected = MemberAffected { user_id: "usr_1".into(), removed: false };
        assert_eq!(serde_json::to_value(&affected).unwrap(), serde_json::json!({ "user_id": "usr_1" }));
    }
}
