//! The SQLite backend of [`OrgStore`]. Every read-then-write runs under `BEGIN IMMEDIATE`
//! (SQLite's one write lock, taken before the read), so two invitations racing for the last
//! seat, or two acceptances of one token, serialise.

use async_trait::async_trait;
use domain::time::UnixMillis;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::orgs::{
    AcceptOutcome, InvitationRow, InviteOutcome, MemberRow, OrgAuditRow, OrgCreate, OrgRow, OrgStore,
    PostureRow,
};
use super::sqlite::{millis, unix};
use super::{OutboxRow, SqliteStore, StoreError};

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

const ORG_COLUMNS: &str = "id, slug, name, tier, seats, policies, created_by, created_at, updated_at";
const INVITATION_COLUMNS: &str =
    "id, token_hash, org_id, user_id, email_index, email_sealed, role, created_at, \
     expires_at, accepted_at, accepted_by, revoked_at";
/// An invitation that still holds a seat at `?`.
const PENDING: &str = "accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?";

fn org_from(r: &SqliteRow) -> Result<OrgRow, sqlx::Error> {
    Ok(OrgRow {
        id: r.try_get("id")?,
        slug: r.try_get("slug")?,
        name: r.try_get("name")?,
        tier: r.try_get("tier")?,
        seats: u32::try_from(r.try_get::<i64, _>("seats")?).unwrap_or(0),
        policies: r.try_get("policies")?,
        created_by: r.try_get("created_by")?,
        created_at: unix(r.try_get("created_at")?),
        updated_at: unix(r.try_get("updated_at")?),
    })
}

fn member_from(r: &SqliteRow) -> Result<MemberRow, sqlx::Error> {
    Ok(MemberRow {
        org_id: r.try_get("org_id")?,
        user_id: r.try_get("user_id")?,
        role: r.try_get("role")?,
        joined_at: unix(r.try_get("joined_at")?),
    })
}

fn invitation_from(r: &SqliteRow) -> Result<InvitationRow, sqlx::Error> {
    Ok(InvitationRow {
        id: r.try_get("id")?,
        token_hash: r.try_get("token_hash")?,
        org_id: r.try_get("org_id")?,
        invited_by: r.try_get("user_id")?,
        email_index: r.try_get("email_index")?,
        email_sealed: r.try_get("email_sealed")?,
        role: r.try_get("role")?,
        created_at: unix(r.try_get("created_at")?),
        expires_at: unix(r.try_get("expires_at")?),
        accepted_at: r.try_get::<Option<i64>, _>("accepted_at")?.map(unix),
        accepted_by: r.try_get("accepted_by")?,
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(unix),
    })
}

async fn insert_audit(tx: &mut Tx<'_>, a: &OrgAuditRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO org_audit (org_id, actor, action, user_id, detail, at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&a.org_id)
    .bind(&a.actor)
    .bind(&a.action)
    .bind(&a.user_id)
    .bind(&a.detail)
    .bind(millis(a.at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_member(tx: &mut Tx<'_>, m: &MemberRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO org_members (org_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)")
        .bind(&m.org_id)
        .bind(&m.user_id)
        .bind(&m.role)
        .bind(millis(m.joined_at))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn is_member(tx: &mut Tx<'_>, user_id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM org_members WHERE user_id = ?")
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

#[async_trait]
impl OrgStore for SqliteStore {
    async fn create_org(
        &self,
        org: &OrgRow,
        owner: &MemberRow,
        audit: &OrgAuditRow,
    ) -> Result<OrgCreate, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        if is_member(&mut tx, &owner.user_id).await? {
            return Ok(OrgCreate::AlreadyMember);
        }
        let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM orgs WHERE slug = ?")
            .bind(&org.slug)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Ok(OrgCreate::SlugTaken);
        }
        sqlx::query(&format!("INSERT INTO orgs ({ORG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&org.id)
            .bind(&org.slug)
            .bind(&org.name)
            .bind(&org.tier)
            .bind(i64::from(org.seats))
            .bind(&org.policies)
            .bind(&org.created_by)
            .bind(millis(org.created_at))
            .bind(millis(org.updated_at))
            .execute(&mut *tx)
            .await?;
        insert_member(&mut tx, owner).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(OrgCreate::Created)
    }

    async fn org(&self, id: &str) -> Result<Option<OrgRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(org_from).transpose()?)
    }

    async fn membership(&self, user_id: &str) -> Result<Option<(OrgRow, MemberRow)>, StoreError> {
        let row = sqlx::query(
            "SELECT o.id, o.slug, o.name, o.tier, o.seats, o.policies, o.created_by, o.created_at, \
             o.updated_at, m.org_id, m.user_id, m.role, m.joined_at \
             FROM org_members m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = ?",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => Ok(Some((org_from(&r)?, member_from(&r)?))),
            None => Ok(None),
        }
    }

    async fn put_org_policies(
        &self,
        id: &str,
        policies: &str,
        at: UnixMillis,
        audit: &OrgAuditRow,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let changed = sqlx::query("UPDATE orgs SET policies = ?, updated_at = ? WHERE id = ?")
            .bind(policies)
            .bind(millis(at))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn org_members(&self, org_id: &str) -> Result<Vec<MemberRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, user_id, role, joined_at FROM org_members WHERE org_id = ? \
             ORDER BY role = 'owner' DESC, joined_at, user_id",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(member_from).collect::<Result<_, _>>()?)
    }

    async fn invite(
        &self,
        invitation: &InvitationRow,
        now: UnixMillis,
        audit: &OrgAuditRow,
        message: &OutboxRow,
    ) -> Result<InviteOutcome, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let seats: Option<i64> = sqlx::query_scalar("SELECT seats FROM orgs WHERE id = ?")
            .bind(&invitation.org_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(seats) = seats else { return Ok(InviteOutcome::NoOrg) };
        let seats = u32::try_from(seats).unwrap_or(0);
        let (members, pending, same): (i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT (SELECT COUNT(*) FROM org_members WHERE org_id = ?1), \
                    (SELECT COUNT(*) FROM org_invitations WHERE org_id = ?1 AND {pending}), \
                    (SELECT COUNT(*) FROM org_invitations WHERE org_id = ?1 AND email_index = ?3 AND {pending})",
            pending = PENDING.replace('?', "?2")
        ))
        .bind(&invitation.org_id)
        .bind(millis(now))
        .bind(&invitation.email_index)
        .fetch_one(&mut *tx)
        .await?;
        if same > 0 {
            return Ok(InviteOutcome::Pending);
        }
        let count = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
        if domain::org::check_seats(seats, count(members), count(pending)).is_err() {
            return Ok(InviteOutcome::SeatsFull { seats });
        }
        sqlx::query(&format!(
            "INSERT INTO org_invitations ({INVITATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)"
        ))
        .bind(&invitation.id)
        .bind(&invitation.token_hash)
        .bind(&invitation.org_id)
        .bind(&invitation.invited_by)
        .bind(&invitation.email_index)
        .bind(&invitation.email_sealed)
        .bind(&invitation.role)
        .bind(millis(invitation.created_at))
        .bind(millis(invitation.expires_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        super::sqlite_lifecycle::insert_message(&mut tx, message).await?;
        tx.commit().await?;
        Ok(InviteOutcome::Invited)
    }

    async fn pending_invitations(
        &self,
        org_id: &str,
        now: UnixMillis,
    ) -> Result<Vec<InvitationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS} FROM org_invitations WHERE org_id = ? AND {PENDING} ORDER BY created_at"
        ))
        .bind(org_id)
        .bind(millis(now))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(invitation_from).collect::<Result<_, _>>()?)
    }

    async fn invitation(&self, token_hash: &str) -> Result<Option<InvitationRow>, StoreError> {
        let row =
            sqlx::query(&format!("SELECT {INVITATION_COLUMNS} FROM org_invitations WHERE token_hash = ?"))
                .bind(token_hash)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.as_ref().map(invitation_from).transpose()?)
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        user_id: &str,
        email_indexes: &[Vec<u8>],
        now: UnixMillis,
        audit: &OrgAuditRow,
    ) -> Result<AcceptOutcome, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS} FROM org_invitations WHERE token_hash = ? AND {PENDING}"
        ))
        .bind(token_hash)
        .bind(millis(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(invitation) = row.as_ref().map(invitation_from).transpose()? else {
            return Ok(AcceptOutcome::Unusable);
        };
        if !email_indexes.contains(&invitation.email_index) {
            return Ok(AcceptOutcome::WrongAddress);
        }
        if is_member(&mut tx, user_id).await? {
            return Ok(AcceptOutcome::AlreadyMember);
        }
        sqlx::query("UPDATE org_invitations SET accepted_at = ?, accepted_by = ? WHERE token_hash = ?")
            .bind(millis(now))
            .bind(user_id)
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        let member = MemberRow {
            org_id: invitation.org_id.clone(),
            user_id: user_id.to_owned(),
            role: invitation.role.clone(),
            joined_at: now,
        };
        insert_member(&mut tx, &member).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(AcceptOutcome::Joined(member))
    }

    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        expected: &str,
        role: &str,
        audit: &OrgAuditRow,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let changed =
            sqlx::query("UPDATE org_members SET role = ? WHERE org_id = ? AND user_id = ? AND role = ?")
                .bind(role)
                .bind(org_id)
                .bind(user_id)
                .bind(expected)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_member(
        &self,
        org_id: &str,
        user_id: &str,
        expected: &str,
        audit: &OrgAuditRow,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let removed = sqlx::query("DELETE FROM org_members WHERE org_id = ? AND user_id = ? AND role = ?")
            .bind(org_id)
            .bind(user_id)
            .bind(expected)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn transfer_ownership(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
        audit: &OrgAuditRow,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let demoted = sqlx::query(
            "UPDATE org_members SET role = 'admin' WHERE org_id = ? AND user_id = ? AND role = 'owner'",
        )
        .bind(org_id)
        .bind(from)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let promoted = sqlx::query(
            "UPDATE org_members SET role = 'owner' WHERE org_id = ? AND user_id = ? AND role IN ('admin', 'member')",
        )
        .bind(org_id)
        .bind(to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if demoted != 1 || promoted != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn append_org_audit(&self, audit: &OrgAuditRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn org_audit(&self, org_id: &str, limit: u32) -> Result<Vec<OrgAuditRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, actor, action, user_id, detail, at FROM \
             (SELECT * FROM org_audit WHERE org_id = ? ORDER BY id DESC LIMIT ?) ORDER BY id",
        )
        .bind(org_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrgAuditRow {
                    org_id: r.try_get("org_id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    user_id: r.try_get("user_id")?,
                    detail: r.try_get("detail")?,
                    at: unix(r.try_get("at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn org_posture(&self, org_id: &str) -> Result<Vec<PostureRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.user_id, m.role, u.last_login_at, \
               EXISTS (SELECT 1 FROM webauthn_credentials w WHERE w.user_id = m.user_id) AS webauthn, \
               EXISTS (SELECT 1 FROM mfa_totp t WHERE t.user_id = m.user_id AND t.confirmed_at IS NOT NULL) AS totp, \
               EXISTS (SELECT 1 FROM mfa_sms s WHERE s.user_id = m.user_id) AS sms \
             FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = ? \
             ORDER BY m.role = 'owner' DESC, m.joined_at, m.user_id",
        )
        .bind(org_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PostureRow {
                    user_id: r.try_get("user_id")?,
                    role: r.try_get("role")?,
                    last_login_at: r.try_get::<Option<i64>, _>("last_login_at")?.map(unix),
                    webauthn: r.try_get::<i64, _>("webauthn")? != 0,
                    totp: r.try_get::<i64, _>("totp")? != 0,
                    sms: r.try_get::<i64, _>("sms")? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
