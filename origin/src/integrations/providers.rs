//! The providers as data: each standard OAuth 2.0 service's endpoints, identity call and extra
//! authorisation parameters (its preset), and what the deployment configures per service: the
//! app's client id and secret, and the base URLs (so tests point them at a loopback server).
//!
//! Per service `<ID>` (the catalogue id in upper case: `SPOTIFY`, `GOOGLE_CALENDAR`, …):
//! `ORIGIN_INTEGRATION_<ID>_CLIENT_ID`, `ORIGIN_INTEGRATION_<ID>_CLIENT_SECRET`, and optionally
//! `ORIGIN_INTEGRATION_<ID>_AUTH_URL`, `…_TOKEN_URL`, `…_API_URL` replacing the preset's bases
//! (`https://`, or `http://` to a loopback address only). A service without a client id is not
//! offered (503 when asked for).

use std::collections::BTreeMap;

use domain::integrations::{AuthKind, CATALOGUE};

/// A standard provider's endpoints: paths on its three bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub service: &'static str,
    pub auth_base: &'static str,
    pub authorize_path: &'static str,
    pub token_base: &'static str,
    pub token_path: &'static str,
    /// RFC 7009 revocation on the token base; `None` where the provider has none (Spotify:
    /// the user removes the app in their account settings).
    pub revoke_path: Option<&'static str>,
    pub api_base: &'static str,
    /// The call that names the connected account, and the JSON pointer to its name.
    pub identity_path: &'static str,
    pub identity_field: &'static str,
    pub extra_params: &'static [(&'static str, &'static str)],
}

const GOOGLE_OFFLINE: &[(&str, &str)] = &[("access_type", "offline"), ("prompt", "consent")];

#[allow(clippy::too_many_arguments)]
const fn preset(
    service: &'static str,
    auth: (&'static str, &'static str),
    token: (&'static str, &'static str),
    revoke_path: Option<&'static str>,
    api_base: &'static str,
    identity: (&'static str, &'static str),
    extra_params: &'static [(&'static str, &'static str)],
) -> Preset {
    Preset {
        service,
        auth_base: auth.0,
        authorize_path: auth.1,
        token_base: token.0,
        token_path: token.1,
        revoke_path,
        api_base,
        identity_path: identity.0,
        identity_field: identity.1,
        extra_params,
    }
}

/// Every standard provider of the catalogue (OAuth 2.0, with or without PKCE), and Last.fm
/// (its authorize page, and its API as the "token" base).
pub const PRESETS: [Preset; 13] = [
    preset(
        "spotify",
        ("https://accounts.spotify.com", "/authorize"),
        ("https://accounts.spotify.com", "/api/token"),
        None,
        "https://api.spotify.com",
        ("/v1/me", "/id"),
        &[],
    ),
    preset(
        "youtube_music",
        ("https://accounts.google.com", "/o/oauth2/v2/auth"),
        ("https://oauth2.googleapis.com", "/token"),
        Some("/revoke"),
        "https://www.googleapis.com",
        ("/youtube/v3/channels?part=id&mine=true", "/items/0/id"),
        GOOGLE_OFFLINE,
    ),
    preset(
        "amazon_music",
        ("https://www.amazon.com", "/ap/oa"),
        ("https://api.amazon.com", "/auth/o2/token"),
        None,
        "https://api.amazon.com",
        ("/user/profile", "/user_id"),
        &[],
    ),
    preset(
        "discord",
        ("https://discord.com", "/oauth2/authorize"),
        ("https://discord.com", "/api/oauth2/token"),
        Some("/api/oauth2/token/revoke"),
        "https://discord.com",
        ("/api/users/@me", "/username"),
        &[],
    ),
    preset(
        "twitter",
        ("https://x.com", "/i/oauth2/authorize"),
        ("https://api.x.com", "/2/oauth2/token"),
        Some("/2/oauth2/revoke"),
        "https://api.x.com",
        ("/2/users/me", "/data/username"),
        &[],
    ),
    preset(
        "instagram",
        ("https://www.instagram.com", "/oauth/authorize"),
        ("https://api.instagram.com", "/oauth/access_token"),
        None,
        "https://graph.instagram.com",
        ("/me?fields=username", "/username"),
        &[],
    ),
    preset(
        "slack",
        ("https://slack.com", "/oauth/v2/authorize"),
        ("https://slack.com", "/api/oauth.v2.access"),
        Some("/api/auth.revoke"),
        "https://slack.com",
        ("/api/auth.test", "/user"),
        &[],
    ),
    preset(
        "notion",
        ("https://api.notion.com", "/v1/oauth/authorize"),
        ("https://api.notion.com", "/v1/oauth/token"),
        None,
        "https://api.notion.com",
        ("/v1/users/me", "/name"),
        &[("owner", "user")],
    ),
    preset(
        "google_calendar",
        ("https://accounts.google.com", "/o/oauth2/v2/auth"),
        ("https://oauth2.googleapis.com", "/token"),
        Some("/revoke"),
        "https://openidconnect.googleapis.com",
        ("/v1/userinfo", "/email"),
        GOOGLE_OFFLINE,
    ),
    preset(
        "salesforce",
        ("https://login.salesforce.com", "/services/oauth2/authorize"),
        ("https://login.salesforce.com", "/services/oauth2/token"),
        Some("/services/oauth2/revoke"),
        "https://login.salesforce.com",
        ("/services/oauth2/userinfo", "/preferred_username"),
        &[],
    ),
    preset(
        "microsoft_365",
        ("https://login.microsoftonline.com", "/common/oauth2/v2.0/authorize"),
        ("https://login.microsoftonline.com", "/common/oauth2/v2.0/token"),
        None,
        "https://graph.microsoft.com",
        ("/v1.0/me", "/userPrincipalName"),
        &[],
    ),
    preset(
        "jira",
        ("https://auth.atlassian.com", "/authorize"),
        ("https://auth.atlassian.com", "/oauth/token"),
        None,
        "https://api.atlassian.com",
        ("/me", "/email"),
        &[("audience", "api.atlassian.com"), ("prompt", "consent")],
    ),
    preset(
        "lastfm",
        ("https://www.last.fm", "/api/auth/"),
        ("https://ws.audioscrobbler.com", "/2.0/"),
        None,
        "https://ws.audioscrobbler.com",
        ("/2.0/", "/session/name"),
        &[],
    ),
];

/// A provider as this deployment configured it: its preset with the bases in force and the
/// app's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Provider {
    pub preset: Preset,
    pub auth: AuthKind,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub auth_base: String,
    pub token_base: String,
    pub api_base: String,
}

impl std::fmt::Debug for Provider {
    // The client secret stays out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("service", &self.preset.service)
            .field("client_id", &self.client_id)
            .field("auth_base", &self.auth_base)
            .field("token_base", &self.token_base)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl Provider {
    pub fn authorize_url(&self) -> String {
        format!("{}{}", self.auth_base, self.preset.authorize_path)
    }

    pub fn token_url(&self) -> String {
        format!("{}{}", self.token_base, self.preset.token_path)
    }

    pub fn revoke_url(&self) -> Option<String> {
        self.preset.revoke_path.map(|p| format!("{}{p}", self.token_base))
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }
}

/// The configured providers, by service id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Providers(pub BTreeMap<&'static str, Provider>);

/// The name of one service's variable: `ORIGIN_INTEGRATION_<ID>_<WHAT>`.
pub fn var_name(service: &str, what: &str) -> String {
    format!("ORIGIN_INTEGRATION_{}_{what}", service.to_ascii_uppercase())
}

fn base_url(name: &str, value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("{name}: {value:?} is not a URL ({e})"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(format!("{name}: expected https:// (http:// only to a loopback address)"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

impl Providers {
    /// Reads every service's variables through `lookup`; an error names the variable.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for preset in PRESETS {
            let Some(client_id) = lookup(&var_name(preset.service, "CLIENT_ID")).filter(|v| !v.is_empty())
            else {
                continue;
            };
            let Some(service) = CATALOGUE.iter().find(|s| s.id == preset.service) else {
                continue;
            };
            let base = |what: &str, default: &str| -> Result<String, String> {
                let name = var_name(preset.service, what);
                match lookup(&name) {
                    Some(v) if !v.is_empty() => base_url(&name, &v),
                    _ => Ok(default.to_owned()),
                }
            };
            map.insert(
                preset.service,
                Provider {
                    preset,
                    auth: service.auth,
                    client_id,
                    client_secret: lookup(&var_name(preset.service, "CLIENT_SECRET"))
                        .filter(|v| !v.is_empty()),
                    auth_base: base("AUTH_URL", preset.auth_base)?,
                    token_base: base("TOKEN_URL", preset.token_base)?,
                    api_base: base("API_URL", preset.api_base)?,
                },
            );
        }
        Ok(Self(map))
    }

    pub fn get(&self, service: &str) -> Option<&Provider> {
        self.0.get(service)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_oauth_service_of_the_catalogue_has_a_preset() {
        for s in &CATALOGUE {
            let has = PRESETS.iter().any(|p| p.service == s.id);
            let expected = matches!(s.auth, AuthKind::Oauth2 | AuthKind::Oauth2Pkce | AuthKind::Lastfm);
            assert_eq!(has, expected, "{}", s.id);
        }
    }

    #[test]
    fn a_service_is_configured_by_its_client_id_and_bases_must_be_safe() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        let p = Providers::from_lookup(&vars(&[
            ("ORIGIN_INTEGRATION_SPOTIFY_CLIENT_ID", "abc"),
            ("ORIGIN_INTEGRATION_SPOTIFY_AUTH_URL", "http://127.0.0.1:9/"),
        ]))
        .unwrap();
        let spotify = p.get("spotify").unwrap();
        assert_eq!(spotify.authorize_url(), "http://127.0.0.1:9/authorize");
        assert_eq!(spotify.token_url(), "https://accounts.spotify.com/api/token");
        assert_eq!(spotify.revoke_url(), None);
        assert!(p.get("discord").is_none());
        let err = Providers::from_lookup(&vars(&[
            ("ORIGIN_INTEGRATION_SLACK_CLIENT_ID", "abc"),
            ("ORIGIN_INTEGRATION_SLACK_TOKEN_URL", "http://example.com"),
        ]))
        .unwrap_err();
        assert_eq!(
            err,
            "ORIGIN_INTEGRATION_SLACK_TOKEN_URL: expected https:// (http:// only to a loopback address)"
        );
    }
}
