//! Organizations (issue 19): the rules of teams on the enterprise tiers. Who in an
//! organization may do what (`owner`, `admin`, `member`), the seat check (pending invitations
//! hold a seat), invitation tokens (single use, only their hash stored, 7 days), slugs and
//! names, the policies every member is held to (a second factor and which ones, allowed email
//! domains, a session cap, allowed integrations) and how they combine with the member's own
//! security floor, and the tier a member has (the organization's while a member, their own
//! after). [`OrgGrant`] is what the edge's gate learns of a member's organization.
//!
//! Pure: times and random bytes are arguments.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::security::{Factor, SecurityFloor};
use crate::tier::Tier;
use crate::time::UnixMillis;

/// How long an invitation can be accepted.
pub const INVITATION_TTL_MS: u64 = 7 * 24 * 3_600_000;
/// The most seats an organization may have.
pub const MAX_SEATS: u32 = 10_000;
/// Slug bounds, in characters.
pub const SLUG_CHARS: std::ops::RangeInclusive<usize> = 3..=40;
pub const NAME_MAX_CHARS: usize = 100;
/// The most entries of a policy list (domains, integrations).
pub const MAX_POLICY_ENTRIES: usize = 50;
/// The integrations a policy may name (the platform's connectors).
pub const INTEGRATIONS: [&str; 6] =
    ["spotify", "apple_music", "youtube_music", "soundcloud", "cloud_sync", "custom_models"];

/// A member's role in their organization.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgRole {
    Member,
    Admin,
    Owner,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }
}

impl std::fmt::Display for OrgRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrgRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(OrgRole::Owner),
            "admin" => Ok(OrgRole::Admin),
            "member" => Ok(OrgRole::Member),
            other => Err(format!("{other:?} is not an organization role (owner, admin, member)")),
        }
    }
}

/// What a member may ask of their organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    Read,
    UpdatePolicies,
    ListMembers,
    Invite,
    ChangeRole,
    RemoveMember,
    TransferOwnership,
    ReadAudit,
    /// Members' security posture (factors enrolled, last login, active sessions).
    ReadPosture,
    EndSessions,
}

/// Whether `role` may do `action`. Members read their organization; admins run it; only the
/// owner hands it over.
pub fn permits(role: OrgRole, action: OrgAction) -> bool {
    match action {
        OrgAction::Read => true,
        OrgAction::TransferOwnership => role == OrgRole::Owner,
        OrgAction::UpdatePolicies
        | OrgAction::ListMembers
        | OrgAction::Invite
        | OrgAction::ChangeRole
        | OrgAction::RemoveMember
        | OrgAction::ReadAudit
        | OrgAction::ReadPosture
        | OrgAction::EndSessions => role >= OrgRole::Admin,
    }
}

/// Why an organization rule refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    #[error("the organization's {seats} seats are taken (members and pending invitations)")]
    SeatsFull { seats: u32 },
    #[error("the owner's role changes only by a transfer of ownership")]
    OwnerRole,
    #[error("only the owner changes or removes an admin")]
    AdminsAreTheOwners,
    #[error("the owner cannot leave or be removed: transfer the ownership first")]
    OwnerStays,
    #[error("the organization's {0} role does not allow this")]
    NotAllowed(OrgRole),
    #[error("the new owner must be a member of the organization")]
    NotAMember,
}

impl OrgError {
    /// The stable rule name a problem carries.
    pub fn rule(&self) -> &'static str {
        match self {
            OrgError::SeatsFull { .. } => "seats",
            OrgError::OwnerRole => "owner-by-transfer",
            OrgError::AdminsAreTheOwners => "admins-by-owner",
            OrgError::OwnerStays => "owner-stays",
            OrgError::NotAllowed(_) => "org-role",
            OrgError::NotAMember => "not-a-member",
        }
    }
}

/// `actor` asks for `action`.
pub fn check(actor: OrgRole, action: OrgAction) -> Result<(), OrgError> {
    if permits(actor, action) {
        Ok(())
    } else {
        Err(OrgError::NotAllowed(actor))
    }
}

/// Another invitation fits if members and pending invitations leave a seat free.
pub fn check_seats(seats: u32, members: u32, pending: u32) -> Result<(), OrgError> {
    if members.saturating_add(pending) < seats {
        Ok(())
    } else {
        Err(OrgError::SeatsFull { seats })
    }
}

/// An `actor` changes `target`'s role to `new`: never to or from owner (that is a transfer),
/// and admins are the owner's to make and unmake.
pub fn check_role_change(actor: OrgRole, target: OrgRole, new: OrgRole) -> Result<(), OrgError> {
    check(actor, OrgAction::ChangeRole)?;
    if target == OrgRole::Owner || new == OrgRole::Owner {
        return Err(OrgError::OwnerRole);
    }
    if (target == OrgRole::Admin || new == OrgRole::Admin) && actor != OrgRole::Owner {
        return Err(OrgError::AdminsAreTheOwners);
    }
    Ok(())
}

/// An `actor` removes `target` (`itself`: a member leaving): anyone but the owner may leave;
/// admins remove members, the owner removes admins too.
pub fn check_removal(actor: OrgRole, target: OrgRole, itself: bool) -> Result<(), OrgError> {
    if target == OrgRole::Owner {
        return Err(OrgError::OwnerStays);
    }
    if itself {
        return Ok(());
    }
    check(actor, OrgAction::RemoveMember)?;
    if target == OrgRole::Admin && actor != OrgRole::Owner {
        return Err(OrgError::AdminsAreTheOwners);
    }
    Ok(())
}

/// An `actor` ends `target`'s sessions (`itself`: their own): admins end members', the owner
/// admins' too; anyone allowed may end their own.
pub fn check_end_sessions(actor: OrgRole, target: OrgRole, itself: bool) -> Result<(), OrgError> {
    check(actor, OrgAction::EndSessions)?;
    if target >= OrgRole::Admin && actor != OrgRole::Owner && !itself {
        return Err(OrgError::AdminsAreTheOwners);
    }
    Ok(())
}

/// What an invitation's acceptance must find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvitationState {
    pub expires_at: UnixMillis,
    pub accepted: bool,
    pub revoked: bool,
}

impl InvitationState {
    /// Whether the invitation can still be accepted at `now`: once, within its 7 days.
    pub fn usable(&self, now: UnixMillis) -> bool {
        !self.accepted && !self.revoked && now < self.expires_at
    }
}

/// When an invitation made at `now` expires.
pub fn invitation_expiry(now: UnixMillis) -> UnixMillis {
    now.saturating_add_ms(INVITATION_TTL_MS)
}

/// An invitation token from 32 random bytes: `inv_` and 64 hex digits. Only its hash is
/// stored ([`token_hash`]); the token travels in the invitation's email alone.
pub fn invitation_token(random: &[u8; 32]) -> String {
    format!("inv_{}", hex::encode(random))
}

/// The stored form of a token: SHA-256, hex. A token has 256 random bits, so a fast hash is
/// enough (nothing to guess from it), and a leaked table accepts no invitation.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `raw` is shaped like a token [`invitation_token`] makes.
pub fn is_token(raw: &str) -> bool {
    raw.strip_prefix("inv_").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A field of an organization that failed its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct FieldError {
    pub field: &'static str,
    pub rule: &'static str,
    pub detail: String,
}

fn field_error(field: &'static str, rule: &'static str, detail: impl Into<String>) -> FieldError {
    FieldError { field, rule, detail: detail.into() }
}

/// A slug: 3 to 40 of `a-z`, `0-9` and single inner hyphens (it names the organization in
/// URLs and is unique).
pub fn check_slug(slug: &str) -> Result<(), FieldError> {
    let chars = slug.chars().count();
    if !SLUG_CHARS.contains(&chars) {
        return Err(field_error("slug", "length", "must be 3 to 40 characters"));
    }
    if !slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(field_error("slug", "charset", "only a-z, 0-9 and hyphens"));
    }
    if slug.starts_with('-') || slug.ends_with('-') || slug.contains("--") {
        return Err(field_error("slug", "hyphens", "no hyphen at either end, nor two in a row"));
    }
    Ok(())
}

/// A display name: 1 to 100 characters once trimmed, no control characters.
pub fn check_name(name: &str) -> Result<String, FieldError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > NAME_MAX_CHARS {
        return Err(field_error("name", "length", "must be 1 to 100 characters"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(field_error("name", "charset", "no control characters"));
    }
    Ok(trimmed.to_owned())
}

/// Only the enterprise tiers have organizations.
pub fn check_tier(tier: Tier) -> Result<(), FieldError> {
    if matches!(tier, Tier::Enterprise | Tier::Vip) {
        Ok(())
    } else {
        Err(field_error("tier", "org-tier", format!("organizations are enterprise or vip, not {tier}")))
    }
}

pub fn check_seat_count(seats: u32) -> Result<(), FieldError> {
    if (1..=MAX_SEATS).contains(&seats) {
        Ok(())
    } else {
        Err(field_error("seats", "range", format!("must be 1 to {MAX_SEATS}")))
    }
}

/// The seats a plan gives an organization created by self-service.
pub fn plan_seats(tier: Tier) -> u32 {
    match tier {
        Tier::Vip => 10,
        _ => 25,
    }
}

/// Who may create an organization: a platform admin, or (self-service) a user whose own tier
/// is an enterprise tier, for that tier.
pub fn may_create(platform_admin: bool, own_tier: Tier) -> bool {
    platform_admin || check_tier(own_tier).is_ok()
}

/// The policies every member of an organization is held to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgPolicies {
    /// Every member signs in with a second factor (true for a new organization); a session opened without one is refused on its next request
    #[serde(default)]
    pub mfa_required: bool,
    /// The factors a member's sign-in may use (empty: any); a member with none of them enrolled is offered what they have
    #[serde(default)]
    pub mfa_methods: Vec<Factor>,
    /// Invitations go to these domains only (empty: any)
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 50))]
    pub allowed_email_domains: Vec<String>,
    /// The most sessions a member keeps open (at most the tier's cap; null: the tier's)
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_sessions: Option<u32>,
    /// The integrations members may connect (null: the tier's): spotify, apple_music, youtube_music, soundcloud, cloud_sync, custom_models
    #[serde(default)]
    pub allowed_integrations: Option<Vec<String>>,
    /// White label: the organization's logo, colours and sender name, used by the account page of its members and by the organization's mails (invitations). Safe values only; null removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branding: Option<Branding>,
}

/// White label (issue 19): what the account page shows and the organization's mails say,
/// limited to values that cannot carry markup or script. Colours are `#rrggbb` only (the page
/// sets them as CSS custom properties, never as CSS text); the logo is an inline PNG, JPEG or
/// WebP image (`data:` URL: the page's CSP allows no other origin for images, and an SVG could
/// hold script); the sender name is plain text with nothing an address header would read as
/// syntax.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = OrgBranding))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// An inline PNG, JPEG or WebP image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 61440, pattern = "^data:image/(png|jpeg|webp);base64,[A-Za-z0-9+/]+=*$")
    )]
    pub logo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^#[0-9A-Fa-f]{6}$"))]
    pub primary_color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^#[0-9A-Fa-f]{6}$"))]
    pub accent_color: Option<String>,
    /// The display name of the organization's mails (the address stays the platform's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub sender_name: Option<String>,
}

/// The longest logo accepted, as a `data:` URL (about 45 KiB of image). With the rest of a
/// policies body it must fit the edge's 64 KiB body limit, or the largest logo allowed could
/// never be sent (the schema fuzzer found that it was 64 KiB itself).
pub const MAX_LOGO_CHARS: usize = 60 * 1024;
/// The longest sender name, in characters.
pub const MAX_SENDER_NAME_CHARS: usize = 64;

impl Branding {
    /// Every rule the branding breaks, each with its field.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (field, value) in
            [("branding.primary_color", &self.primary_color), ("branding.accent_color", &self.accent_color)]
        {
            if let Some(colour) = value {
                if !is_hex_colour(colour) {
                    errors.push(field_error(field, "colour", "must be #rrggbb (six hexadecimal digits)"));
                }
            }
        }
        if let Some(logo) = &self.logo {
            if !is_inline_image(logo) {
                errors.push(field_error(
                    "branding.logo",
                    "image",
                    format!(
                        "must be a data:image/png, image/jpeg or image/webp base64 URL of at most {MAX_LOGO_CHARS} characters"
                    ),
                ));
            }
        }
        if let Some(name) = &self.sender_name {
            let count = name.chars().count();
            let trimmed = name.trim();
            if count == 0
                || count > MAX_SENDER_NAME_CHARS
                || trimmed.len() != name.len()
                || name
                    .chars()
                    .any(|c| c.is_control() || matches!(c, '<' | '>' | '"' | '@' | '\\' | ',' | ';' | ':'))
            {
                errors.push(field_error(
                    "branding.sender_name",
                    "text",
                    format!("1 to {MAX_SENDER_NAME_CHARS} characters, no surrounding spaces, no control characters or < > \" @ \\ , ; :"),
                ));
            }
        }
        errors
    }
}

fn is_hex_colour(value: &str) -> bool {
    value.len() == 7 && value.starts_with('#') && value.bytes().skip(1).all(|b| b.is_ascii_hexdigit())
}

fn is_inline_image(value: &str) -> bool {
    let Some(data) = ["data:image/png;base64,", "data:image/jpeg;base64,", "data:image/webp;base64,"]
        .iter()
        .find_map(|prefix| value.strip_prefix(prefix))
    else {
        return false;
    };
    value.len() <= MAX_LOGO_CHARS
        && !data.is_empty()
        && data.len() % 4 == 0
        && data.trim_end_matches('=').bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

impl Default for OrgPolicies {
    fn default() -> Self {
        Self {
            mfa_required: true,
            mfa_methods: Vec::new(),
            allowed_email_domains: Vec::new(),
            max_sessions: None,
            allowed_integrations: None,
            branding: None,
        }
    }
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl OrgPolicies {
    /// Applies a JSON merge patch (RFC 7396) to the policies and checks the result; every
    /// field in error is named.
    pub fn patched(&self, patch: &serde_json::Value, tier: Tier) -> Result<OrgPolicies, Vec<FieldError>> {
        let mut current = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let Some(changes) = patch.as_object() else {
            return Err(vec![field_error("policies", "object", "must be a JSON object")]);
        };
        if let Some(object) = current.as_object_mut() {
            for (key, value) in changes {
                if value.is_null() {
                    object.remove(key);
                } else {
                    object.insert(key.clone(), value.clone());
                }
            }
        }
        let parsed: OrgPolicies = serde_json::from_value(current)
            .map_err(|e| vec![field_error("policies", "schema", e.to_string())])?;
        parsed.normalised(tier)
    }

    /// The policies with domains lower-cased and lists deduplicated, or every rule broken.
    pub fn normalised(mut self, tier: Tier) -> Result<OrgPolicies, Vec<FieldError>> {
        let mut errors = Vec::new();
        self.allowed_email_domains = self
            .allowed_email_domains
            .iter()
            .map(|d| d.trim().trim_start_matches('@').to_lowercase())
            .collect();
        self.allowed_email_domains.sort();
        self.allowed_email_domains.dedup();
        if self.allowed_email_domains.len() > MAX_POLICY_ENTRIES {
            errors.push(field_error("allowed_email_domains", "length", "at most 50 domains"));
        }
        if let Some(bad) = self.allowed_email_domains.iter().find(|d| !valid_domain(d)) {
            errors.push(field_error("allowed_email_domains", "domain", format!("{bad:?} is not a domain")));
        }
        self.mfa_methods.sort_by_key(|f| f.as_str());
        self.mfa_methods.dedup();
        if self.mfa_methods.contains(&Factor::RecoveryCode) {
            errors.push(field_error(
                "mfa_methods",
                "factor",
                "recovery codes back up a factor and cannot be required",
            ));
        }
        let cap = tier.limits().max_open_sessions;
        if let Some(max) = self.max_sessions {
            if max == 0 || u64::from(max) > u64::from(cap) {
                errors.push(field_error(
                    "max_sessions",
                    "range",
                    format!("must be 1 to {cap}, the tier's cap"),
                ));
            }
        }
        if let Some(list) = &mut self.allowed_integrations {
            list.sort();
            list.dedup();
            if let Some(bad) = list.iter().find(|i| !INTEGRATIONS.contains(&i.as_str())) {
                errors.push(field_error(
                    "allowed_integrations",
                    "integration",
                    format!("{bad:?} is not one of {}", INTEGRATIONS.join(", ")),
                ));
            }
        }
        if let Some(branding) = &self.branding {
            errors.extend(branding.check());
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(errors)
        }
    }

    /// Whether an invitation may go to `normalised_email` (already normalised by
    /// `domain::email`).
    pub fn email_allowed(&self, normalised_email: &str) -> bool {
        let domain = normalised_email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        self.allowed_email_domains.is_empty() || self.allowed_email_domains.iter().any(|d| d == domain)
    }

    /// The member's security floor: their own (tier and role), with the organization's
    /// second factor on top. A policy only ever adds to a floor.
    pub fn floor(&self, own: SecurityFloor) -> SecurityFloor {
        SecurityFloor { mfa_required: own.mfa_required || self.mfa_required, ..own }
    }

    /// The factors a member's challenge offers: those of `offered` the policy allows. When
    /// none of them is allowed (a member yet to enrol an allowed factor) the challenge keeps
    /// what it offered, so the member can sign in and enrol; the posture view shows them.
    pub fn restrict(&self, offered: Vec<Factor>) -> Vec<Factor> {
        if self.mfa_methods.is_empty() {
            return offered;
        }
        let allowed: Vec<Factor> = offered.iter().copied().filter(|f| self.mfa_methods.contains(f)).collect();
        if allowed.is_empty() {
            offered
        } else {
            allowed
        }
    }

    /// The most sessions a member keeps open: the tier's cap, or the policy's if lower.
    pub fn session_cap(&self, tier_cap: u32) -> u32 {
        self.max_sessions.map_or(tier_cap, |m| m.min(tier_cap))
    }
}

/// The tier a user has: their organization's while a member, their own otherwise.
pub fn effective_tier(own: Tier, org: Option<Tier>) -> Tier {
    org.unwrap_or(own)
}

/// What the edge's gate knows of a member's organization, to apply it on their next request:
/// the tier (which sets the quota), the second factor and the session cap. `at` orders the
/// grants a gate receives (a membership's later change wins over an earlier one arriving
/// late).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgGrant {
    pub org: String,
    pub role: OrgRole,
    pub tier: Tier,
    pub mfa_required: bool,
    #[serde(default)]
    pub max_sessions: Option<u32>,
}

impl OrgGrant {
    pub fn new(org: &str, role: OrgRole, tier: Tier, policies: &OrgPolicies) -> Self {
        Self {
            org: org.to_owned(),
            role,
            tier,
            mfa_required: policies.mfa_required,
            max_sessions: policies.max_sessions,
        }
    }

    /// Whether a session opened with (`mfa`) or without a second factor may be used under
    /// this grant.
    pub fn admits_session(&self, mfa: bool) -> bool {
        mfa || !self.mfa_required
    }
}

/// A change of a user's organization the edge records in their gate: the grant (`None`: no
/// organization any more) and when the origin decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateUpdate {
    pub user_id: String,
    pub grant: Option<OrgGrant>,
    pub at: u64,
    /// The member's sessions end at once (a removal, or an admin ending them).
    #[serde(default)]
    pub end_sessions: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    use serde_json::json;
    use OrgRole::{Admin, Member, Owner};

    #[test]
    fn members_read_admins_run_and_only_the_owner_transfers() {
        let all = [
            OrgAction::UpdatePolicies,
            OrgAction::ListMembers,
            OrgAction::Invite,
            OrgAction::ChangeRole,
            OrgAction::RemoveMember,
            OrgAction::ReadAudit,
            OrgAction::ReadPosture,
            OrgAction::EndSessions,
        ];
        for action in all {
            assert!(!permits(Member, action), "{action:?}");
            assert!(permits(Admin, action), "{action:?}");
            assert!(permits(Owner, action), "{action:?}");
        }
        assert!(permits(Member, OrgAction::Read));
        assert!(!permits(Admin, OrgAction::TransferOwnership));
        assert!(permits(Owner, OrgAction::TransferOwnership));
        assert_eq!(check(Member, OrgAction::Invite), Err(OrgError::NotAllowed(Member)));
    }

    #[test]
    fn pending_invitations_hold_seats_and_the_refusal_names_the_limit() {
        assert_eq!(check_seats(3, 1, 1), Ok(()));
        assert_eq!(check_seats(3, 1, 2), Err(OrgError::SeatsFull { seats: 3 }));
        assert_eq!(check_seats(3, 3, 0), Err(OrgError::SeatsFull { seats: 3 }));
        assert_eq!(check_seats(1, 1, 0), Err(OrgError::SeatsFull { seats: 1 }));
        assert!(OrgError::SeatsFull { seats: 3 }.to_string().contains("3 seats"));
        assert_eq!(check_seats(u32::MAX, u32::MAX, 5), Err(OrgError::SeatsFull { seats: u32::MAX }));
    }

    #[test]
    fn roles_change_within_the_rules() {
        assert_eq!(check_role_change(Admin, Member, Member), Ok(()));
        assert_eq!(check_role_change(Owner, Member, Admin), Ok(()));
        assert_eq!(check_role_change(Owner, Admin, Member), Ok(()));
        assert_eq!(check_role_change(Admin, Member, Admin), Err(OrgError::AdminsAreTheOwners));
        assert_eq!(check_role_change(Admin, Admin, Member), Err(OrgError::AdminsAreTheOwners));
        assert_eq!(check_role_change(Owner, Member, Owner), Err(OrgError::OwnerRole));
        assert_eq!(check_role_change(Owner, Owner, Admin), Err(OrgError::OwnerRole));
        assert_eq!(check_role_change(Member, Member, Member), Err(OrgError::NotAllowed(Member)));
    }

    #[test]
    fn ending_sessions_is_for_admins_and_the_owner_ends_admins() {
        assert_eq!(check_end_sessions(Admin, Member, false), Ok(()));
        assert_eq!(check_end_sessions(Owner, Admin, false), Ok(()));
        assert_eq!(check_end_sessions(Owner, Owner, true), Ok(()));
        assert_eq!(check_end_sessions(Admin, Admin, true), Ok(()));
        assert_eq!(check_end_sessions(Admin, Admin, false), Err(OrgError::AdminsAreTheOwners));
        assert_eq!(check_end_sessions(Admin, Owner, false), Err(OrgError::AdminsAreTheOwners));
        assert_eq!(check_end_sessions(Member, Member, false), Err(OrgError::NotAllowed(Member)));
    }

    #[test]
    fn removal_keeps_the_owner_and_lets_members_leave() {
        assert_eq!(check_removal(Admin, Member, false), Ok(()));
        assert_eq!(check_removal(Member, Member, true), Ok(()));
        assert_eq!(check_removal(Admin, Admin, true), Ok(()));
        assert_eq!(check_removal(Member, Member, false), Err(OrgError::NotAllowed(Member)));
        assert_eq!(check_removal(Admin, Admin, false), Err(OrgError::AdminsAreTheOwners));
        assert_eq!(check_removal(Owner, Admin, false), Ok(()));
        assert_eq!(check_removal(Owner, Owner, true), Err(OrgError::OwnerStays));
        assert_eq!(check_removal(Admin, Owner, false), Err(OrgError::OwnerStays));
    }

    #[test]
    fn an_invitation_works_once_within_seven_days() {
        let now = UnixMillis(1_700_000_000_000);
        let expires_at = invitation_expiry(now);
        assert_eq!(expires_at.0 - now.0, 7 * 24 * 3_600_000);
        let fresh = InvitationState { expires_at, accepted: false, revoked: false };
        assert!(fresh.usable(now));
        assert!(fresh.usable(UnixMillis(expires_at.0 - 1)));
        assert!(!fresh.usable(expires_at));
        assert!(!InvitationState { accepted: true, ..fresh }.usable(now));
        assert!(!InvitationState { revoked: true, ..fresh }.usable(now));
    }

    #[test]
    fn tokens_are_random_and_stored_as_their_hash() {
        let token = invitation_token(&[7; 32]);
        assert_eq!(token.len(), 4 + 64);
        assert!(is_token(&token));
        assert!(!is_token("inv_xyz"));
        assert!(!is_token(&token.replace("inv_", "tok_")));
        let hash = token_hash(&token);
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, token_hash(&invitation_token(&[8; 32])));
        assert!(!hash.contains(&token[4..]));
    }

    #[test]
    fn slugs_and_names() {
        for good in ["abc", "acme-music", "a1-b2-c3", "x".repeat(40).as_str()] {
            assert_eq!(check_slug(good), Ok(()), "{good}");
        }
        let rule = |s: &str| check_slug(s).err().map(|e| e.rule);
        assert_eq!(rule("ab"), Some("length"));
        assert_eq!(rule(&"x".repeat(41)), Some("length"));
        assert_eq!(rule("Acme"), Some("charset"));
        assert_eq!(rule("acme_music"), Some("charset"));
        assert_eq!(rule("-acme"), Some("hyphens"));
        assert_eq!(rule("acme-"), Some("hyphens"));
        assert_eq!(rule("ac--me"), Some("hyphens"));
        assert_eq!(check_name("  Acme Music  "), Ok("Acme Music".to_owned()));
        assert_eq!(check_name(" ").err().map(|e| e.rule), Some("length"));
        assert_eq!(check_name("a\u{7}b").err().map(|e| e.rule), Some("charset"));
    }

    #[test]
    fn only_enterprise_tiers_have_organizations() {
        assert!(check_tier(Tier::Enterprise).is_ok());
        assert!(check_tier(Tier::Vip).is_ok());
        assert_eq!(check_tier(Tier::Premium).err().map(|e| e.rule), Some("org-tier"));
        assert!(may_create(true, Tier::Free));
        assert!(may_create(false, Tier::Enterprise));
        assert!(!may_create(false, Tier::Premium));
        assert_eq!(check_seat_count(0).err().map(|e| e.rule), Some("range"));
        assert!(check_seat_count(3).is_ok());
    }

    #[test]
    fn policies_patch_validate_and_normalise() {
        let base = OrgPolicies::default();
        assert!(base.mfa_required, "organizations start with a second factor required");
        let patched = base
            .patched(
                &json!({ "allowed_email_domains": ["Example.COM", "@example.com", "acme.io"],
                         "mfa_methods": ["webauthn", "totp"], "max_sessions": 2 }),
                Tier::Enterprise,
            )
            .unwrap();
        assert_eq!(patched.allowed_email_domains, vec!["acme.io", "example.com"]);
        assert_eq!(patched.mfa_methods, vec![Factor::Totp, Factor::Webauthn]);
        assert_eq!(patched.max_sessions, Some(2));
        let back = patched.patched(&json!({ "max_sessions": null }), Tier::Enterprise).unwrap();
        assert_eq!(back.max_sessions, None);

        let errors = base
            .patched(
                &json!({ "allowed_email_domains": ["not a domain"], "mfa_methods": ["recovery_code"],
                         "max_sessions": 0, "allowed_integrations": ["napster"] }),
                Tier::Enterprise,
            )
            .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec!["allowed_email_domains", "mfa_methods", "max_sessions", "allowed_integrations"]
        );
        let unknown = base.patched(&json!({ "owner": "me" }), Tier::Enterprise).unwrap_err();
        assert_eq!(unknown[0].rule, "schema");
        assert!(base.patched(&json!([1]), Tier::Enterprise).is_err());
    }

    #[test]
    fn email_domains_limit_invitations() {
        let open = OrgPolicies::default();
        assert!(open.email_allowed("anyone@anywhere.org"));
        let closed = OrgPolicies { allowed_email_domains: vec!["acme.io".into()], ..open };
        assert!(closed.email_allowed("jo@acme.io"));
        assert!(!closed.email_allowed("jo@evil-acme.io"));
        assert!(!closed.email_allowed("jo@acme.io.evil.org"));
    }

    #[test]
    fn the_policy_adds_to_the_members_floor_and_never_lowers_it() {
        let premium = SecurityFloor::of(Tier::Premium, Role::User);
        assert!(!premium.mfa_required);
        let required = OrgPolicies::default();
        assert!(required.floor(premium).mfa_required);
        let relaxed = OrgPolicies { mfa_required: false, ..OrgPolicies::default() };
        let admin = SecurityFloor::of(Tier::Free, Role::Admin);
        assert_eq!(relaxed.floor(admin), admin, "a relaxed policy keeps the role's floor");
        assert!(!relaxed.floor(premium).mfa_required);
    }

    #[test]
    fn allowed_methods_narrow_the_challenge_unless_nothing_is_left() {
        let policy =
            OrgPolicies { mfa_methods: vec![Factor::Webauthn, Factor::Totp], ..OrgPolicies::default() };
        assert_eq!(
            policy.restrict(vec![Factor::Webauthn, Factor::Totp, Factor::Email, Factor::RecoveryCode]),
            vec![Factor::Webauthn, Factor::Totp]
        );
        assert_eq!(policy.restrict(vec![Factor::Email]), vec![Factor::Email]);
        assert_eq!(OrgPolicies::default().restrict(vec![Factor::Sms]), vec![Factor::Sms]);
    }

    #[test]
    fn members_have_the_organizations_tier_and_their_own_after() {
        assert_eq!(effective_tier(Tier::Free, Some(Tier::Enterprise)), Tier::Enterprise);
        assert_eq!(effective_tier(Tier::Vip, Some(Tier::Enterprise)), Tier::Enterprise);
        assert_eq!(effective_tier(Tier::Free, None), Tier::Free);
        let policies = OrgPolicies { max_sessions: Some(2), ..OrgPolicies::default() };
        assert_eq!(policies.session_cap(10), 2);
        assert_eq!(policies.session_cap(1), 1);
        assert_eq!(OrgPolicies::default().session_cap(10), 10);
        let grant = OrgGrant::new("org_1", Member, Tier::Enterprise, &policies);
        assert!(!grant.admits_session(false));
        assert!(grant.admits_session(true));
        let relaxed = OrgGrant { mfa_required: false, ..grant };
        assert!(relaxed.admits_session(false));
    }

    #[test]
    fn branding_takes_safe_values_only() {
        let tier = Tier::Enterprise;
        let ok = OrgPolicies::default()
            .patched(
                &serde_json::json!({ "branding": {
                    "primary_color": "#1A2b3c", "accent_color": "#ffffff",
                    "logo": "data:image/png;base64,iVBORw0KGgo=", "sender_name": "Acme Music"
                }}),
                tier,
            )
            .unwrap();
        assert_eq!(ok.branding.as_ref().and_then(|b| b.sender_name.as_deref()), Some("Acme Music"));
        for (bad, field) in [
            (serde_json::json!({ "primary_color": "red; background: url(x)" }), "branding.primary_color"),
            (serde_json::json!({ "accent_color": "#fff" }), "branding.accent_color"),
            (serde_json::json!({ "logo": "https://example.com/logo.png" }), "branding.logo"),
            (serde_json::json!({ "logo": "data:image/svg+xml;base64,PHN2Zz4=" }), "branding.logo"),
            (serde_json::json!({ "logo": "data:image/png;base64,<script>" }), "branding.logo"),
            (serde_json::json!({ "sender_name": "Acme <evil@example.com>" }), "branding.sender_name"),
            (serde_json::json!({ "sender_name": "Acme\r\nBcc: x" }), "branding.sender_name"),
            (serde_json::json!({ "sender_name": "" }), "branding.sender_name"),
        ] {
            let errors =
                OrgPolicies::default().patched(&serde_json::json!({ "branding": bad }), tier).unwrap_err();
            assert!(errors.iter().any(|e| e.field == field), "{bad}: {errors:?}");
        }
        // Unknown keys (a `css` escape hatch) are refused; null removes the branding.
        assert!(OrgPolicies::default()
            .patched(&serde_json::json!({ "branding": { "css": "x" } }), tier)
            .is_err());
        assert_eq!(ok.patched(&serde_json::json!({ "branding": null }), tier).unwrap().branding, None);
    }
}
