//! The integration hub's rules (issue 15): the catalogue of the 17 services a user may connect,
//! which tier may connect which (read from the templates' `limits.integrations`, see
//! `domain::tier`), what a downgrade disables, the authorisation `state` (single use, 10
//! minutes, bound to its user, its service and the browser that asked), when a token is
//! refreshed, and how a sync moves its cursor and waits out a provider's `Retry-After`.
//!
//! The templates name services by id (`spotify`, `slack`, …); `<id>_basic` allows the service
//! with its basic scopes only; `all` allows every service. Other entries (`cloud_sync`,
//! `team_collaboration`, `custom_models`, `custom`) are features, not services, and allow none.

use serde::{Deserialize, Serialize};

use crate::tier::Tier;
use crate::time::UnixMillis;

/// What a service is for, as the catalogue groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Category {
    Music,
    Social,
    Productivity,
    Enterprise,
    Creative,
}

/// How a service is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuthKind {
    /// OAuth 2.0 authorization code with PKCE (S256).
    Oauth2Pkce,
    /// OAuth 2.0 authorization code with a client secret, no PKCE (the provider has none).
    Oauth2,
    /// Last.fm's web authentication: a token, then an MD5-signed `auth.getSession`.
    Lastfm,
    /// Apple Music: a developer token (ES256, the team's key) plus a user token from MusicKit.
    AppleMusic,
    /// A desktop tool with no public API: a per-user API key its plug-in presents.
    Local,
}

/// One service of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Service {
    pub id: &'static str,
    pub name: &'static str,
    pub category: Category,
    pub auth: AuthKind,
    /// The scopes asked for by default (a tier allowed the full service).
    pub scopes: &'static [&'static str],
    /// The scopes of a `<id>_basic` grant (the free tier's Spotify).
    pub basic_scopes: &'static [&'static str],
    /// Whether the sync job reads listening history from it.
    pub syncs_listening: bool,
}

const fn service(
    id: &'static str,
    name: &'static str,
    category: Category,
    auth: AuthKind,
    scopes: &'static [&'static str],
) -> Service {
    Service { id, name, category, auth, scopes, basic_scopes: scopes, syncs_listening: false }
}

/// The 17 services of the seed's integration hub.
pub const CATALOGUE: [Service; 17] = [
    Service {
        id: "spotify",
        name: "Spotify",
        category: Category::Music,
        auth: AuthKind::Oauth2Pkce,
        scopes: &[
            "user-read-email",
            "user-read-recently-played",
            "user-library-read",
            "user-top-read",
            "playlist-read-private",
            "playlist-modify-private",
        ],
        basic_scopes: &["user-read-email", "user-read-recently-played", "user-library-read"],
        syncs_listening: true,
    },
    service("apple_music", "Apple Music", Category::Music, AuthKind::AppleMusic, &["library-read"]),
    service(
        "youtube_music",
        "YouTube Music",
        Category::Music,
        AuthKind::Oauth2Pkce,
        &["https://www.googleapis.com/auth/youtube.readonly"],
    ),
    service(
        "amazon_music",
        "Amazon Music",
        Category::Music,
        AuthKind::Oauth2,
        &["profile", "amazon_music:access"],
    ),
    service("lastfm", "Last.fm", Category::Social, AuthKind::Lastfm, &[]),
    service("discord", "Discord", Category::Social, AuthKind::Oauth2Pkce, &["identify", "email"]),
    service(
        "twitter",
        "Twitter/X",
        Category::Social,
        AuthKind::Oauth2Pkce,
        &["tweet.read", "users.read", "offline.access"],
    ),
    service("instagram", "Instagram", Category::Social, AuthKind::Oauth2, &["instagram_business_basic"]),
    service("slack", "Slack", Category::Productivity, AuthKind::Oauth2, &["chat:write", "users:read"]),
    service("notion", "Notion", Category::Productivity, AuthKind::Oauth2, &[]),
    service(
        "google_calendar",
        "Google Calendar",
        Category::Productivity,
        AuthKind::Oauth2Pkce,
        &["openid", "email", "https://www.googleapis.com/auth/calendar.events"],
    ),
    service(
        "salesforce",
        "Salesforce",
        Category::Enterprise,
        AuthKind::Oauth2Pkce,
        &["api", "refresh_token"],
    ),
    service(
        "microsoft_365",
        "Microsoft 365",
        Category::Enterprise,
        AuthKind::Oauth2Pkce,
        &["openid", "offline_access", "User.Read", "Calendars.ReadWrite"],
    ),
    service("jira", "Jira", Category::Enterprise, AuthKind::Oauth2, &["read:jira-work", "offline_access"]),
    service("ableton_live", "Ableton Live", Category::Creative, AuthKind::Local, LOCAL_SCOPES),
    service("logic_pro", "Logic Pro", Category::Creative, AuthKind::Local, LOCAL_SCOPES),
    service("fl_studio", "FL Studio", Category::Creative, AuthKind::Local, LOCAL_SCOPES),
];

/// What a desktop plug-in's key may do: read the user's projects' metadata and report plays.
pub const LOCAL_SCOPES: &[&str] = &["projects:read", "listening:write"];

/// The service with this id.
pub fn find(id: &str) -> Option<&'static Service> {
    CATALOGUE.iter().find(|s| s.id == id)
}

/// How much of a service a tier may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Grant {
    /// The service's basic scopes only (`<id>_basic` in the template).
    Basic,
    /// Its default scopes.
    Full,
}

impl Grant {
    /// The scopes this grant asks for.
    pub fn scopes(self, service: &Service) -> &'static [&'static str] {
        match self {
            Grant::Basic => service.basic_scopes,
            Grant::Full => service.scopes,
        }
    }
}

/// What the entries of a template's `limits.integrations` grant for one service.
pub fn grant_in(entries: &[String], service: &Service) -> Option<Grant> {
    let basic = format!("{}_basic", service.id);
    if entries.iter().any(|e| e == "all" || e == service.id) {
        Some(Grant::Full)
    } else if entries.contains(&basic) {
        Some(Grant::Basic)
    } else {
        None
    }
}

/// What `tier` may connect of `service`.
pub fn grant(tier: Tier, service: &Service) -> Option<Grant> {
    grant_in(&tier.limits().integrations, service)
}

/// Why a connection is refused: the rule, named for the problem's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Always `tier_integrations`: the templates' `limits.integrations`.
    pub rule: &'static str,
    pub tier: Tier,
    pub service: &'static str,
    /// What the tier may connect, as the template lists it.
    pub allowed: Vec<String>,
    pub detail: String,
}

/// The rule a refusal names.
pub const TIER_RULE: &str = "tier_integrations";

/// Whether `tier` may connect `service`, and with what grant; a refusal names the rule.
pub fn may_connect(tier: Tier, service: &'static Service) -> Result<Grant, Refusal> {
    let entries = &tier.limits().integrations;
    grant_in(entries, service).ok_or_else(|| Refusal {
        rule: TIER_RULE,
        tier,
        service: service.id,
        allowed: entries.clone(),
        detail: format!(
            "the {tier} tier may not connect {} (rule {TIER_RULE}: the {tier} tier allows {})",
            service.name,
            entries.join(", ")
        ),
    })
}

/// Which tiers may connect a service, and how (the catalogue's tier rules).
pub fn tiers_for(service: &Service) -> Vec<(Tier, Grant)> {
    crate::tier::ALL_TIERS.into_iter().filter_map(|t| grant(t, service).map(|g| (t, g))).collect()
}

/// Which of a user's connected services a move to `tier` disables: those the tier does not
/// allow, and those connected with more scopes than the tier's grant asks for. `connected` is
/// (service id, granted scopes); unknown ids are disabled too.
pub fn disabled_by(tier: Tier, connected: &[(String, Vec<String>)]) -> Vec<String> {
    connected
        .iter()
        .filter(|(id, scopes)| match find(id) {
            None => true,
            Some(service) => match grant(tier, service) {
                None => true,
                Some(g) => {
                    let allowed = g.scopes(service);
                    scopes.iter().any(|s| !allowed.contains(&s.as_str()))
                }
            },
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// The status of a connected integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    Active,
    /// The tier no longer allows it; the tokens are kept until it is removed or reconnected.
    Disabled,
    /// The provider refused the refresh token (`invalid_grant`): the user must connect again.
    NeedsReconnect,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Disabled => "disabled",
            Status::NeedsReconnect => "needs_reconnect",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Status::Active, Status::Disabled, Status::NeedsReconnect].into_iter().find(|x| x.as_str() == s)
    }
}

/// How long an authorisation `state` is valid.
pub const STATE_TTL_MS: u64 = 10 * 60 * 1000;

/// An authorisation in progress, kept under its `state` until the callback takes it (once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub user_id: String,
    pub service: String,
    pub created_at: UnixMillis,
    /// SHA-256 (hex) of the browser binding (the `__Host-` cookie set with the authorize URL).
    pub binding_hash: String,
    /// The grant the tier allowed when it started.
    pub grant: Grant,
}

/// Why a callback's `state` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRefusal {
    /// Unknown, used already, or expired.
    Unknown,
    /// Issued for another service's callback.
    WrongService,
    /// Presented by another browser than the one that asked (the binding cookie differs).
    WrongBrowser,
    Expired,
}

impl StateRefusal {
    pub fn detail(self) -> &'static str {
        match self {
            StateRefusal::Unknown => "the state is unknown or was used already",
            StateRefusal::WrongService => "the state was issued for another service",
            StateRefusal::WrongBrowser => "the state was issued to another browser",
            StateRefusal::Expired => "the state expired (10 minutes)",
        }
    }
}

/// Checks a taken state (the store's take makes it single use): the service it was issued
/// for, the browser binding, and its age.
pub fn check_state(
    pending: Option<&PendingAuthorization>,
    service: &str,
    binding_hash: &str,
    now: UnixMillis,
) -> Result<(), StateRefusal> {
    let p = pending.ok_or(StateRefusal::Unknown)?;
    if p.service != service {
        return Err(StateRefusal::WrongService);
    }
    // Both are SHA-256 digests of a secret: comparing them in variable time reveals nothing
    // about the cookie itself.
    if p.binding_hash != binding_hash {
        return Err(StateRefusal::WrongBrowser);
    }
    if now.0 >= p.created_at.0.saturating_add(STATE_TTL_MS) || now.0 < p.created_at.0 {
        return Err(StateRefusal::Expired);
    }
    Ok(())
}

/// Tokens are renewed this long before they expire.
pub const REFRESH_AHEAD_MS: u64 = 5 * 60 * 1000;

/// Whether a token expiring at `expires_at` should be refreshed at `now` (never for a token
/// without an expiry, which providers like Slack and Notion issue).
pub fn needs_refresh(expires_at: Option<UnixMillis>, now: UnixMillis) -> bool {
    expires_at.is_some_and(|at| now.0.saturating_add(REFRESH_AHEAD_MS) >= at.0)
}

/// When a token issued at `now` with `expires_in_secs` expires.
pub fn expiry(now: UnixMillis, expires_in_secs: Option<u64>) -> Option<UnixMillis> {
    expires_in_secs.map(|s| now.saturating_add_ms(s.saturating_mul(1000)))
}

/// The wait when a provider's 429 names none, and the longest wait honoured.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 60;
pub const MAX_RETRY_AFTER_SECS: u64 = 24 * 3600;

/// When to try a provider again after a 429: its `Retry-After` in seconds (RFC 9110 also
/// allows a date, which providers of this catalogue do not send: read as the default),
/// capped at a day.
pub fn retry_at(retry_after: Option<&str>, now: UnixMillis) -> UnixMillis {
    let secs = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
        .min(MAX_RETRY_AFTER_SECS);
    now.saturating_add_ms(secs.saturating_mul(1000))
}

/// Whether a sync may call the provider at `now` (its last 429's wait is over).
pub fn may_sync(retry_at: Option<UnixMillis>, now: UnixMillis) -> bool {
    retry_at.is_none_or(|at| now.0 >= at.0)
}

/// Where a music service's sync stopped: the newest play and the newest saved track seen
/// (provider times, ms). The next sync asks only for what is newer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    #[serde(default)]
    pub played_after: u64,
    #[serde(default)]
    pub saved_after: u64,
}

impl SyncCursor {
    /// Moves past the plays and saves just read (times in ms); never backwards.
    pub fn advance(self, played: &[u64], saved: &[u64]) -> Self {
        Self {
            played_after: played.iter().copied().fold(self.played_after, u64::max),
            saved_after: saved.iter().copied().fold(self.saved_after, u64::max),
        }
    }

    /// Whether an item read is new to this cursor (a provider may repeat its boundary item).
    pub fn is_new_play(&self, at: u64) -> bool {
        at > self.played_after
    }

    pub fn is_new_save(&self, at: u64) -> bool {
        at > self.saved_after
    }
}

/// A local integration's key as shown once: `umk_<service>_<32 hex>`; only its keyed hash is kept.
pub fn local_key(service: &str, random: &[u8; 16]) -> String {
    format!("umk_{service}_{}", hex::encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(id: &str) -> &'static Service {
        find(id).unwrap()
    }

    #[test]
    fn the_catalogue_has_the_seventeen_services_once_each() {
        assert_eq!(CATALOGUE.len(), 17);
        let mut ids: Vec<&str> = CATALOGUE.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 17);
        let count = |c| CATALOGUE.iter().filter(|s| s.category == c).count();
        assert_eq!(
            [
                Category::Music,
                Category::Social,
                Category::Productivity,
                Category::Enterprise,
                Category::Creative
            ]
            .map(count),
            [4, 4, 3, 3, 3]
        );
        assert!(CATALOGUE
            .iter()
            .filter(|s| s.auth == AuthKind::Local)
            .all(|s| s.category == Category::Creative));
        for s in &CATALOGUE {
            assert!(s.basic_scopes.iter().all(|b| s.scopes.contains(b)), "{}", s.id);
        }
    }

    #[test]
    fn each_tier_gets_what_its_template_lists() {
        let check = |tier: Tier, id: &str, expected: Option<Grant>| {
            assert_eq!(grant(tier, svc(id)), expected, "{tier} {id}");
        };
        check(Tier::Free, "spotify", Some(Grant::Basic));
        for id in ["slack", "apple_music", "lastfm", "discord", "ableton_live", "salesforce"] {
            check(Tier::Free, id, None);
        }
        for id in ["spotify", "apple_music", "youtube_music", "amazon_music", "lastfm", "discord"] {
            check(Tier::Premium, id, Some(Grant::Full));
        }
        for id in ["slack", "twitter", "salesforce", "jira", "ableton_live"] {
            check(Tier::Premium, id, None);
        }
        for s in &CATALOGUE {
            check(Tier::Enterprise, s.id, Some(Grant::Full));
            check(Tier::Vip, s.id, Some(Grant::Full));
        }
        assert_eq!(Grant::Basic.scopes(svc("spotify")).len(), 3);
    }

    #[test]
    fn a_refusal_names_the_rule_and_what_the_tier_allows() {
        let refusal = may_connect(Tier::Free, svc("slack")).unwrap_err();
        assert_eq!(refusal.rule, "tier_integrations");
        assert_eq!(refusal.allowed, vec!["spotify_basic".to_owned()]);
        assert_eq!(
            refusal.detail,
            "the free tier may not connect Slack (rule tier_integrations: the free tier allows spotify_basic)"
        );
        assert_eq!(may_connect(Tier::Free, svc("spotify")), Ok(Grant::Basic));
    }

    #[test]
    fn a_downgrade_disables_what_the_new_tier_does_not_allow() {
        let full: Vec<String> = svc("spotify").scopes.iter().map(|s| (*s).to_owned()).collect();
        let basic: Vec<String> = svc("spotify").basic_scopes.iter().map(|s| (*s).to_owned()).collect();
        let connected = vec![
            ("spotify".to_owned(), full.clone()),
            ("discord".to_owned(), vec!["identify".into()]),
            ("slack".to_owned(), vec![]),
        ];
        assert_eq!(disabled_by(Tier::Free, &connected), vec!["spotify", "discord", "slack"]);
        assert_eq!(disabled_by(Tier::Premium, &connected), vec!["slack"]);
        assert!(disabled_by(Tier::Enterprise, &connected).is_empty());
        // Spotify with its basic scopes stays on the free tier.
        assert!(disabled_by(Tier::Free, &[("spotify".to_owned(), basic)]).is_empty());
        assert_eq!(disabled_by(Tier::Vip, &[("gone".to_owned(), vec![])]), vec!["gone"]);
    }

    #[test]
    fn a_state_works_for_its_service_browser_and_ten_minutes_only() {
        let p = PendingAuthorization {
            user_id: "usr_1".into(),
            service: "spotify".into(),
            created_at: UnixMillis(1_000),
            binding_hash: "ab".into(),
            grant: Grant::Full,
        };
        let check = |pending: Option<&PendingAuthorization>, service: &str, binding: &str, now: u64| {
            check_state(pending, service, binding, UnixMillis(now))
        };
        assert_eq!(check(Some(&p), "spotify", "ab", 1_000), Ok(()));
        assert_eq!(check(Some(&p), "spotify", "ab", 1_000 + STATE_TTL_MS - 1), Ok(()));
        assert_eq!(check(Some(&p), "spotify", "ab", 1_000 + STATE_TTL_MS), Err(StateRefusal::Expired));
        assert_eq!(check(Some(&p), "discord", "ab", 1_000), Err(StateRefusal::WrongService));
        assert_eq!(check(Some(&p), "spotify", "ac", 1_000), Err(StateRefusal::WrongBrowser));
        assert_eq!(check(None, "spotify", "ab", 1_000), Err(StateRefusal::Unknown));
    }

    #[test]
    fn tokens_are_refreshed_five_minutes_before_expiry() {
        let at = UnixMillis(10 * 60_000);
        assert!(!needs_refresh(Some(at), UnixMillis(at.0 - REFRESH_AHEAD_MS - 1)));
        assert!(needs_refresh(Some(at), UnixMillis(at.0 - REFRESH_AHEAD_MS)));
        assert!(needs_refresh(Some(at), UnixMillis(at.0 + 1)));
        assert!(!needs_refresh(None, UnixMillis(u64::MAX)));
        assert_eq!(expiry(UnixMillis(5), Some(3600)), Some(UnixMillis(3_600_005)));
    }

    #[test]
    fn retry_after_is_honoured_with_a_default_and_a_cap() {
        let now = UnixMillis(1_000);
        assert_eq!(retry_at(Some("7"), now), UnixMillis(8_000));
        assert_eq!(retry_at(Some(" 7 "), now), UnixMillis(8_000));
        assert_eq!(retry_at(None, now), UnixMillis(61_000));
        assert_eq!(retry_at(Some("Wed, 21 Oct 2015 07:28:00 GMT"), now), UnixMillis(61_000));
        assert_eq!(retry_at(Some("999999999"), now), UnixMillis(1_000 + MAX_RETRY_AFTER_SECS * 1000));
        assert!(!may_sync(Some(UnixMillis(8_000)), UnixMillis(7_999)));
        assert!(may_sync(Some(UnixMillis(8_000)), UnixMillis(8_000)));
        assert!(may_sync(None, now));
    }

    #[test]
    fn the_cursor_only_moves_forward() {
        let c = SyncCursor::default().advance(&[5, 9, 7], &[3]);
        assert_eq!(c, SyncCursor { played_after: 9, saved_after: 3 });
        assert_eq!(c.advance(&[2], &[]), c);
        assert!(!c.is_new_play(9));
        assert!(c.is_new_play(10));
        assert!(c.is_new_save(4));
        assert_eq!(serde_json::from_str::<SyncCursor>("{}").unwrap(), SyncCursor::default());
    }

    #[test]
    fn local_keys_name_their_service() {
        assert_eq!(local_key("fl_studio", &[0xab; 16]), format!("umk_fl_studio_{}", "ab".repeat(16)));
    }
}
