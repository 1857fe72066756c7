//! Talking to providers: the [`Connector`] trait (authorize URL, code exchange, refresh,
//! revoke, identity), one generic OAuth 2.0 connector on the `oauth2` crate for every standard
//! provider (PKCE S256 where the catalogue says so), and Last.fm's own scheme (a token, then an
//! MD5-signed `auth.getSession`). Every HTTP client here follows no redirect (a provider, or
//! whoever answers in its place, cannot send the origin's requests elsewhere: SSRF) and gives
//! up after [`TIMEOUT`]. Tokens never reach a log: errors carry the provider's error code only.

use std::time::Duration;

use async_trait::async_trait;
use domain::integrations::AuthKind;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::providers::Provider;

/// How long one call to a provider may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The tokens of a connection, as sealed in the store (never answered, never logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(…)")
    }
}

/// What an exchange or a refresh gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub tokens: Tokens,
    pub expires_in_secs: Option<u64>,
    /// The scopes the provider granted, when it says (else the ones asked for hold).
    pub scopes: Option<Vec<String>>,
    /// The account, when the exchange itself names it (Last.fm's session).
    pub account: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The provider refused the grant (`invalid_grant`): the user must connect again.
    #[error("the provider refused the grant (invalid_grant)")]
    InvalidGrant,
    /// The provider answered 429; retry after this (the header's raw value).
    #[error("the provider is rate limiting")]
    RateLimited { retry_after: Option<String> },
    /// Any other refusal, by its OAuth error code or HTTP status (no token, no body text).
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
}

/// One provider's side of a connection.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The URL the user's browser is sent to. `verifier` is the PKCE verifier (`None` for a
    /// provider without PKCE).
    fn authorize_url(
        &self,
        state: &str,
        scopes: &[&str],
        verifier: Option<&str>,
    ) -> Result<String, ConnectorError>;
    /// Exchanges the callback's code (Last.fm: its token) for tokens.
    async fn exchange(&self, code: &str, verifier: Option<&str>) -> Result<Granted, ConnectorError>;
    async fn refresh(&self, refresh_token: &str) -> Result<Granted, ConnectorError>;
    /// Revokes at the provider; false when it has no revocation (Spotify, Last.fm).
    async fn revoke(&self, tokens: &Tokens) -> Result<bool, ConnectorError>;
    /// The connected account's name or id, as the provider reports it.
    async fn identity(&self, tokens: &Tokens) -> Result<Option<String>, ConnectorError>;
}

/// The HTTP client of every provider call: no redirects (SSRF), a timeout.
pub fn http_client() -> Result<reqwest::Client, ConnectorError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| ConnectorError::Unreachable(e.to_string()))
}

/// The connector of a configured provider.
pub fn for_provider(provider: &Provider, redirect_uri: String) -> Result<Box<dyn Connector>, ConnectorError> {
    let http = http_client()?;
    Ok(match provider.auth {
        AuthKind::Lastfm => Box::new(Lastfm { provider: provider.clone(), callback: redirect_uri, http }),
        _ => Box::new(OAuth2 { provider: provider.clone(), redirect_uri, http }),
    })
}

/// Reads a provider's API answer: JSON on 2xx, the 429's `Retry-After`, else the status.
pub async fn api_json(response: reqwest::Response) -> Result<Value, ConnectorError> {
    let status = response.status();
    if status.as_u16() == 429 {
        let retry_after =
            response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        return Err(ConnectorError::RateLimited { retry_after });
    }
    if status.as_u16() == 401 {
        return Err(ConnectorError::Refused("unauthorized".into()));
    }
    if !status.is_success() {
        return Err(ConnectorError::Refused(format!("HTTP {}", status.as_u16())));
    }
    let bytes = response.bytes().await.map_err(|e| unreachable(&e))?;
    serde_json::from_slice(&bytes).map_err(|_| ConnectorError::Refused("unreadable answer".into()))
}

fn unreachable(e: &reqwest::Error) -> ConnectorError {
    // Without the URL: a Last.fm URL carries the api key and token as parameters.
    ConnectorError::Unreachable(e.without_url_ref().to_string())
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        if self.is_timeout() {
            "timed out".into()
        } else if self.is_connect() {
            "connection failed".into()
        } else {
            "request failed".into()
        }
    }
}

/// The generic OAuth 2.0 (+ PKCE) connector: the preset's endpoints and extra parameters.
struct OAuth2 {
    provider: Provider,
    redirect_uri: String,
    http: reqwest::Client,
}

type Configured = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> ConnectorError {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            BasicErrorResponseType::InvalidGrant => ConnectorError::InvalidGrant,
            other => ConnectorError::Refused(other.to_string()),
        },
        RequestTokenError::Request(_) => ConnectorError::Unreachable("token request failed".into()),
        RequestTokenError::Parse(_, _) => ConnectorError::Refused("unreadable token answer".into()),
        RequestTokenError::Other(what) => ConnectorError::Refused(what),
    }
}

fn granted(r: &oauth2::basic::BasicTokenResponse) -> Granted {
    Granted {
        tokens: Tokens {
            access_token: r.access_token().secret().clone(),
            refresh_token: r.refresh_token().map(|t| t.secret().clone()),
        },
        expires_in_secs: r.expires_in().map(|d| d.as_secs()),
        scopes: r.scopes().map(|s| s.iter().map(|x| x.to_string()).collect()),
        account: None,
    }
}

impl OAuth2 {
    fn client(&self) -> Result<Configured, ConnectorError> {
        let bad = |what: &str| ConnectorError::Refused(format!("misconfigured {what} URL"));
        let mut client = BasicClient::new(ClientId::new(self.provider.client_id.clone()))
            .set_auth_uri(AuthUrl::new(self.provider.authorize_url()).map_err(|_| bad("authorize"))?)
            .set_token_uri(TokenUrl::new(self.provider.token_url()).map_err(|_| bad("token"))?)
            .set_redirect_uri(RedirectUrl::new(self.redirect_uri.clone()).map_err(|_| bad("redirect"))?);
        if let Some(secret) = &self.provider.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        }
        Ok(client)
    }
}

#[async_trait]
impl Connector for OAuth2 {
    fn authorize_url(
        &self,
        state: &str,
        scopes: &[&str],
        verifier: Option<&str>,
    ) -> Result<String, ConnectorError> {
        let client = self.client()?;
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(scopes.iter().map(|s| Scope::new((*s).to_owned())));
        if let Some(v) = verifier {
            request = request.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(
                &PkceCodeVerifier::new(v.to_owned()),
            ));
        }
        for (k, v) in self.provider.preset.extra_params {
            request = request.add_extra_param(*k, *v);
        }
        Ok(request.url().0.to_string())
    }

    async fn exchange(&self, code: &str, verifier: Option<&str>) -> Result<Granted, ConnectorError> {
        let client = self.client()?;
        let mut request = client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(v) = verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(v.to_owned()));
        }
        let answer = request.request_async(&self.http).await.map_err(token_error)?;
        Ok(granted(&answer))
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Granted, ConnectorError> {
        let client = self.client()?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let answer =
            client.exchange_refresh_token(&token).request_async(&self.http).await.map_err(token_error)?;
        let mut g = granted(&answer);
        // A provider that does not rotate refresh tokens answers none: the old one still holds.
        if g.tokens.refresh_token.is_none() {
            g.tokens.refresh_token = Some(refresh_token.to_owned());
        }
        Ok(g)
    }

    async fn revoke(&self, tokens: &Tokens) -> Result<bool, ConnectorError> {
        let Some(url) = self.provider.revoke_url() else { return Ok(false) };
        // RFC 7009 by hand: the oauth2 crate refuses a revocation endpoint that is not https,
        // and the base URLs are already checked (https, or http to loopback only) by the
        // configuration. Revoking the refresh token ends the whole grant where there is one.
        let (token, hint) = match &tokens.refresh_token {
            Some(r) => (r.as_str(), "refresh_token"),
            None => (tokens.access_token.as_str(), "access_token"),
        };
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let request = match &self.provider.client_secret {
            Some(secret) => self.http.post(url).basic_auth(&self.provider.client_id, Some(secret)),
            None => {
                form.push(("client_id", &self.provider.client_id));
                self.http.post(url)
            }
        };
        let request = request.form(&form);
        let response = request.send().await.map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(ConnectorError::Refused(format!("revocation answered HTTP {status}")));
        }
        Ok(true)
    }

    async fn identity(&self, tokens: &Tokens) -> Result<Option<String>, ConnectorError> {
        let response = self
            .http
            .get(self.provider.api_url(self.provider.preset.identity_path))
            .bearer_auth(&tokens.access_token)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        let body = api_json(response).await?;
        Ok(body.pointer(self.provider.preset.identity_field).and_then(Value::as_str).map(str::to_owned))
    }
}

/// Last.fm's web authentication: the user approves at `/api/auth/?api_key=…&cb=…`, Last.fm
/// calls back with a `token`, and `auth.getSession` (signed: MD5 of the sorted parameters and
/// the shared secret) turns it into a session key that does not expire and cannot be revoked
/// by the application.
struct Lastfm {
    provider: Provider,
    callback: String,
    http: reqwest::Client,
}

/// Last.fm's `api_sig`: MD5 (hex) of every parameter but `format`, sorted by name, each name
/// followed by its value, then the shared secret.
pub fn lastfm_signature(params: &[(&str, &str)], secret: &str) -> String {
    use md5::{Digest, Md5};
    let mut sorted: Vec<&(&str, &str)> = params.iter().filter(|(k, _)| *k != "format").collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Md5::new();
    for (k, v) in sorted {
        h.update(k.as_bytes());
        h.update(v.as_bytes());
    }
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

#[async_trait]
impl Connector for Lastfm {
    fn authorize_url(
        &self,
        state: &str,
        _scopes: &[&str],
        _verifier: Option<&str>,
    ) -> Result<String, ConnectorError> {
        // Last.fm keeps the `cb` URL's query: the state comes back beside the token.
        let mut cb = url::Url::parse(&self.callback)
            .map_err(|_| ConnectorError::Refused("misconfigured callback".into()))?;
        cb.query_pairs_mut().append_pair("state", state);
        let mut url = url::Url::parse(&self.provider.authorize_url())
            .map_err(|_| ConnectorError::Refused("misconfigured authorize URL".into()))?;
        url.query_pairs_mut().append_pair("api_key", &self.provider.client_id).append_pair("cb", cb.as_str());
        Ok(url.to_string())
    }

    async fn exchange(&self, token: &str, _verifier: Option<&str>) -> Result<Granted, ConnectorError> {
        let secret = self.provider.client_secret.as_deref().unwrap_or_default();
        let mut params = vec![
            ("method", "auth.getSession"),
            ("api_key", self.provider.client_id.as_str()),
            ("token", token),
        ];
        let sig = lastfm_signature(&params, secret);
        params.push(("api_sig", &sig));
        params.push(("format", "json"));
        let response = self
            .http
            .post(self.provider.token_url())
            .form(&params)
            .send()
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| unreachable(&e))?;
        let body: Value =
            serde_json::from_slice(&bytes).map_err(|_| ConnectorError::Refused(format!("HTTP {status}")))?;
        if let Some(code) = body.get("error").and_then(Value::as_u64) {
            // 4: invalid token, 14: token not authorised, 15: token expired.
            return Err(if matches!(code, 4 | 14 | 15) {
                ConnectorError::InvalidGrant
            } else {
                ConnectorError::Refused(format!("lastfm error {code}"))
            });
        }
        let key = body
            .pointer("/session/key")
            .and_then(Value::as_str)
            .ok_or_else(|| ConnectorError::Refused("no session key".into()))?;
        let name = body.pointer("/session/name").and_then(Value::as_str).map(str::to_owned);
        Ok(Granted {
            tokens: Tokens { access_token: key.to_owned(), refresh_token: None },
            expires_in_secs: None,
            scopes: None,
            account: name,
        })
    }

    async fn refresh(&self, _refresh_token: &str) -> Result<Granted, ConnectorError> {
        Err(ConnectorError::Refused("Last.fm sessions do not expire".into()))
    }

    async fn revoke(&self, _tokens: &Tokens) -> Result<bool, ConnectorError> {
        Ok(false)
    }

    async fn identity(&self, _tokens: &Tokens) -> Result<Option<String>, ConnectorError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lastfm_signs_the_sorted_parameters_without_format() {
        // md5("api_keyKmethodauth.getSessiontokenTsecret")
        let expected = {
            use md5::{Digest, Md5};
            hex::encode(Md5::digest(b"api_keyKmethodauth.getSessiontokenTsecret"))
        };
        let sig = lastfm_signature(
            &[("token", "T"), ("method", "auth.getSession"), ("format", "json"), ("api_key", "K")],
            "secret",
        );
        assert_eq!(sig, expected);
        assert_eq!(sig.len(), 32);
    }
}
