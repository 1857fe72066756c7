//! What organizations store (issue 19): organizations, memberships, invitations and each
//! organization's audit trail (migrations 0018 / pg 0010). Implemented by `sqlite_orgs.rs`
//! and `postgres_orgs.rs` with the same semantics: the seat check of an invitation counts
//! members and pending invitations under the organization's lock (the write lock on SQLite,
//! `SELECT … FOR UPDATE` of the organization's row on PostgreSQL), an acceptance uses its
//! invitation by a conditional `UPDATE`, and role changes, removals and transfers change a
//! member only if their role is still the one the decision read.

use async_trait::async_trait;
use domain::time::UnixMillis;

use super::{OutboxRow, StoreError};

/// An organization as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub tier: String,
    pub seats: u32,
    /// `domain::org::OrgPolicies` as JSON.
    pub policies: String,
    pub created_by: String,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// A member of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub org_id: String,
    pub user_id: String,
    pub role: String,
    pub joined_at: UnixMillis,
}

/// An invitation as stored: the token's hash, the address as a blind index and sealed under
/// the inviter's data key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRow {
    pub id: String,
    pub token_hash: String,
    pub org_id: String,
    pub invited_by: String,
    pub email_index: Vec<u8>,
    pub email_sealed: Vec<u8>,
    pub role: String,
    pub created_at: UnixMillis,
    pub expires_at: UnixMillis,
    pub accepted_at: Option<UnixMillis>,
    pub accepted_by: Option<String>,
    pub revoked_at: Option<UnixMillis>,
}

/// An entry of an organization's audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAuditRow {
    pub org_id: String,
    pub actor: String,
    pub action: String,
    /// The member the entry is about.
    pub user_id: Option<String>,
    pub detail: Option<String>,
    pub at: UnixMillis,
}

/// A member's security posture: nothing personal, only what protects the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostureRow {
    pub user_id: String,
    pub role: String,
    pub last_login_at: Option<UnixMillis>,
    pub webauthn: bool,
    pub totp: bool,
    pub sms: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgCreate {
    Created,
    SlugTaken,
    /// The owner belongs to an organization already.
    AlreadyMember,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteOutcome {
    Invited,
    /// Members and pending invitations hold every seat (the organization's seats).
    SeatsFull {
        seats: u32,
    },
    /// An unused invitation to this address is pending already.
    Pending,
    NoOrg,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    Joined(MemberRow),
    /// No such token, used, revoked or expired.
    Unusable,
    /// The invitation is for another address than the accepting account's.
    WrongAddress,
    AlreadyMember,
}

#[async_trait]
pub trait OrgStore: Send + Sync {
    /// Creates an organization with its owner and the first audit entry, in one transaction.
    async fn create_org(
        &self,
        org: &OrgRow,
        owner: &MemberRow,
        audit: &OrgAuditRow,
    ) -> Result<OrgCreate, StoreError>;
    async fn org(&self, id: &str) -> Result<Option<OrgRow>, StoreError>;
    /// The organization a user belongs to, and their membership.
    async fn membership(&self, user_id: &str) -> Result<Option<(OrgRow, MemberRow)>, StoreError>;
    /// Replaces the policies with `audit`; false when there is no such organization.
    async fn put_org_policies(
        &self,
        id: &str,
        policies: &str,
        at: UnixMillis,
        audit: &OrgAuditRow,
    ) -> Result<bool, StoreError>;
    /// Members, owner first, then by the time they joined.
    async fn org_members(&self, org_id: &str) -> Result<Vec<MemberRow>, StoreError>;
    /// Stores an invitation, its email (`message`) and `audit`, in one transaction, if a seat
    /// is free at `now`: members and unexpired pending invitations are counted under the
    /// organization's lock, so invitations racing for the last seat get it once.
    async fn invite(
        &self,
        invitation: &InvitationRow,
        now: UnixMillis,
        audit: &OrgAuditRow,
        message: &OutboxRow,
    ) -> Result<InviteOutcome, StoreError>;
    /// The invitations still pending at `now`, oldest first.
    async fn pending_invitations(
        &self,
        org_id: &str,
        now: UnixMillis,
    ) -> Result<Vec<InvitationRow>, StoreError>;
    async fn invitation(&self, token_hash: &str) -> Result<Option<InvitationRow>, StoreError>;
    /// Uses an invitation for `user_id` whose address has one of `email_indexes`, and makes
    /// them a member with `audit`, in one transaction: of two acceptances racing, one joins.
    async fn accept_invitation(
        &self,
        token_hash: &str,
        user_id: &str,
        email_indexes: &[Vec<u8>],
        now: UnixMillis,
        audit: &OrgAuditRow,
    ) -> Result<AcceptOutcome, StoreError>;
    /// Sets a member's role if it is still `expected`, with `audit`; false otherwise.
    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        expected: &str,
        role: &str,
        audit: &OrgAuditRow,
    ) -> Result<bool, StoreError>;
    /// Removes a member whose role is still `expected`, with `audit`; false otherwise.
    async fn remove_member(
        &self,
        org_id: &str,
        user_id: &str,
        expected: &str,
        audit: &OrgAuditRow,
    ) -> Result<bool, StoreError>;
    /// Makes `to` (a member or admin) the owner and `from` (the owner) an admin, with `audit`,
    /// in one transaction; false (nothing changed) unless both still hold those roles.
    async fn transfer_ownership(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
        audit: &OrgAuditRow,
    ) -> Result<bool, StoreError>;
    async fn append_org_audit(&self, audit: &OrgAuditRow) -> Result<(), StoreError>;
    /// The organization's audit trail, oldest first, the latest `limit` entries.
    async fn org_audit(&self, org_id: &str, limit: u32) -> Result<Vec<OrgAuditRow>, StoreError>;
    /// Each member's posture, in one query.
    async fn org_posture(&self, org_id: &str) -> Result<Vec<PostureRow>, StoreError>;
}
