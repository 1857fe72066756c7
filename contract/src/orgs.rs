//! Organizations (issue 19): teams on the enterprise tiers, with their seats, roles, policies,
//! invitations, audit trail and members' security posture.

use domain::org::{Branding, OrgPolicies, OrgRole};
use domain::problem::Problem;
use domain::wire::orgs::{
    AcceptInvitation, Invitation, Invitations, MemberPosture, NewInvitation, NewOrg, NewOrgRole, Org,
    OrgAudit, OrgAuditAction, OrgAuditEntry, OrgMember, OrgMembers, OrgPosture, OrgRoleChanged,
    OwnershipTransfer, OwnershipTransferred,
};
use utoipa::OpenApi;

use crate::common;

#[derive(OpenApi)]
#[openapi(
    paths(
        create_org,
        read_org,
        update_org_policies,
        list_org_members,
        list_org_invitations,
        invite_to_org,
        accept_invitation,
        remove_org_member,
        change_org_role,
        end_org_member_sessions,
        transfer_org_ownership,
        read_org_audit,
        read_org_posture,
    ),
    components(schemas(
        Org,
        OrgPolicies,
        Branding,
        OrgRole,
        NewOrg,
        OrgMember,
        OrgMembers,
        NewInvitation,
        Invitation,
        Invitations,
        AcceptInvitation,
        NewOrgRole,
        OrgRoleChanged,
        OwnershipTransfer,
        OwnershipTransferred,
        OrgAuditAction,
        OrgAuditEntry,
        OrgAudit,
        MemberPosture,
        OrgPosture,
    ))
)]
pub struct Api;

/// Create an organization: a platform admin (any seats, tier enterprise or vip, `owner_id` names the owner), or self-service by an enterprise or vip user for their own tier with the plan's seats (enterprise 25, vip 10). The creator's policies start from `mfa_required: true`.
#[utoipa::path(
    post,
    path = "/api/v1/orgs",
    operation_id = "createOrg",
    tag = "orgs",
    security(("bearerAuth" = [])),
    request_body(content = NewOrg, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `Location` names it", body = Org, headers(("Location" = String, description = "/api/v1/orgs/{id}"))),
        (status = 400, response = common::BadRequest),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a platform admin nor an enterprise or vip account (rule org-tier), or a self-service request beyond the plan", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The slug is taken (rule slug-unique), or the owner belongs to an organization already (rule one-organization)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn create_org() {}

/// The organization (any member, or a platform admin)
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{id}",
    operation_id = "readOrg",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization")),
    responses(
        (status = 200, description = "The organization", body = Org),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role in the organization does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn read_org() {}

/// Change the policies (admins and the owner) with a JSON merge patch; every member's gate learns them, so they apply on each member's next request. Audited.
#[utoipa::path(
    patch,
    path = "/api/v1/orgs/{id}/policies",
    operation_id = "updateOrgPolicies",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization")),
    request_body(content((OrgPolicies = "application/merge-patch+json"), (OrgPolicies = "application/json"))),
    responses(
        (status = 200, description = "The organization with its new policies", body = Org),
        (status = 400, description = "A policy failed validation (validation-failed, each field named)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role in the organization does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn update_org_policies() {}

/// Members and their roles (admins and the owner); nothing personal
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{id}/members",
    operation_id = "listOrgMembers",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization")),
    responses(
        (status = 200, description = "The members, owner first", body = OrgMembers),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role in the organization does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn list_org_members() {}

/// Pending invitations with their addresses (admins)
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{id}/invitations",
    operation_id = "listOrgInvitations",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization")),
    responses(
        (status = 200, description = "Pending invitations", body = Invitations),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role in the organization does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn list_org_invitations() {}

/// Invite an address (admins; only the owner invites admins). A single-use token (only its hash is stored) is mailed through the outbox; it works 7 days. Members and pending invitations hold seats: beyond them, 409 naming the limit. Audited without the address.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{id}/invitations",
    operation_id = "inviteToOrg",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization")),
    request_body(content = NewInvitation, content_type = "application/json"),
    responses(
        (status = 201, description = "Invited; the email is on its way", body = Invitation),
        (status = 400, description = "Not an address, or one the policy's allowed_email_domains exclude (validation-failed)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role in the organization does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Every seat is taken (rule seats, with `seats`: the limit), or an invitation to this address is pending", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn invite_to_org() {}

/// Accept an invitation as the signed-in account it was sent to; the organization's tier and policies apply from the next request (a policy requiring a second factor refuses the session that accepted, if it was opened without one: sign in again).
#[utoipa::path(
    post,
    path = "/api/v1/invitations/accept",
    operation_id = "acceptInvitation",
    tag = "orgs",
    security(("bearerAuth" = [])),
    request_body(content = AcceptInvitation, content_type = "application/json"),
    responses(
        (status = 200, description = "Joined (`your_role`)", body = Org),
        (status = 400, response = common::BadRequest),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The invitation was sent to another address, or the policy no longer allows it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such invitation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account belongs to an organization already", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The invitation was used, revoked or has expired", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn accept_invitation() {}

/// Remove a member (admins remove members, the owner admins too), or leave (the caller's own id). Their sessions end at once and their tier falls back to their own. The owner stays until a transfer.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{id}/members/{user_id}",
    operation_id = "removeOrgMember",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization"), ("user_id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The member")),
    responses(
        (status = 204, description = "Removed; every session of the member ended"),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed (rules org-role, admins-by-owner, owner-stays)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The member's role changed meanwhile", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn remove_org_member() {}

/// Change a member's role: admins change members; only the owner makes or unmakes admins; the owner's role changes by transfer only. Audited.
#[utoipa::path(
    put,
    path = "/api/v1/orgs/{id}/members/{user_id}/role",
    operation_id = "changeOrgRole",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization"), ("user_id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The member")),
    request_body(content = NewOrgRole, content_type = "application/json"),
    responses(
        (status = 200, description = "The new role", body = OrgRoleChanged),
        (status = 400, response = common::BadRequest),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed (rules org-role, admins-by-owner, owner-by-transfer)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The member's role changed meanwhile", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn change_org_role() {}

/// End every session of a member (admins; the owner for admins too). Audited.
#[utoipa::path(
    delete,
    path = "/api/v1/orgs/{id}/members/{user_id}/sessions",
    operation_id = "endOrgMemberSessions",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization"), ("user_id" = String, Path, pattern = r"^usr_[0-9a-f]{32}$", description = "The member")),
    responses(
        (status = 204, description = "Every session of the member ended"),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role in the organization does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn end_org_member_sessions() {}

/// Hand the organization to another member (the owner only). Needs a fresh proof: a step-up of this session in the last 5 minutes (POST /api/v1/auth/step-up), or the current password (and a code with a factor enrolled) in the body. The former owner becomes an admin. Audited.
#[utoipa::path(
    post,
    path = "/api/v1/orgs/{id}/transfer",
    operation_id = "transferOrgOwnership",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization")),
    request_body(content = OwnershipTransfer, content_type = "application/json"),
    responses(
        (status = 200, description = "Transferred", body = OwnershipTransferred),
        (status = 400, response = common::BadRequest),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the owner, or no fresh proof (step-up-required)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or the new owner is not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The roles changed meanwhile", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn transfer_org_ownership() {}

/// The organization's audit trail, oldest first (admins and the owner): every change, who made it, about which member; never an address
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{id}/audit",
    operation_id = "readOrgAudit",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization")),
    responses(
        (status = 200, description = "The trail", body = OrgAudit),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role in the organization does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn read_org_audit() {}

/// Each member's security posture (admins and the owner): factors enrolled, last login, open sessions (counted by the edge's gates). Nothing else about them.
#[utoipa::path(
    get,
    path = "/api/v1/orgs/{id}/posture",
    operation_id = "readOrgPosture",
    tag = "orgs",
    security(("bearerAuth" = [])),
    params(("id" = String, Path, pattern = r"^org_[0-9a-f]{32}$", description = "The organization")),
    responses(
        (status = 200, description = "The posture", body = OrgPosture),
        (status = 401, description = "No valid token, or a session the organization's policy refuses (opened without a second factor)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller's role in the organization does not allow this", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such organization, or not one the caller belongs to (or no such member)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub fn read_org_posture() {}
