//! Service clients: platform services (playlists, storage, the AI composer) authenticate with
//! OAuth 2.0 client credentials (RFC 6749 §4.4) and call the API with a short-lived service
//! access token whose `scope` says what they may do. This module holds the rules both sides
//! share: client ids and secrets, scopes, and the token request with its RFC 6749 §5.2 errors.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The only grant a service client may use.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

/// A service client's id: `svc_` followed by 32 lowercase hex digits (128 random bits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

pub const CLIENT_ID_PREFIX: &str = "svc_";

impl ClientId {
    pub fn from_random(bytes: [u8; 16]) -> Self {
        Self(format!("{CLIENT_ID_PREFIX}{}", hex::encode(bytes)))
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.strip_prefix(CLIENT_ID_PREFIX).is_some_and(|h| {
            h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClientId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or_else(|| format!("{s:?} is not a service client id"))
    }
}

impl From<ClientId> for String {
    fn from(id: ClientId) -> Self {
        id.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client secret from 32 random bytes the caller drew: `svs_` and 64 hex digits (256 bits,
/// so a fast keyed hash is enough to store it: there is nothing to guess).
pub fn client_secret(bytes: [u8; 32]) -> String {
    format!("svs_{}", hex::encode(bytes))
}

/// What a service token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// `POST /api/v1/users/{id}/usage`.
    #[serde(rename = "usage:write")]
    UsageWrite,
    /// `GET /api/v1/users/{id}/entitlements`.
    #[serde(rename = "entitlements:read")]
    EntitlementsRead,
}

pub const SCOPES: [Scope; 2] = [Scope::UsageWrite, Scope::EntitlementsRead];

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UsageWrite => "usage:write",
            Self::EntitlementsRead => "entitlements:read",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        SCOPES.into_iter().find(|s| s.as_str() == raw)
    }
}

/// Parses a space-delimited scope list (RFC 6749 §3.3), sorted and without duplicates; the
/// first unknown scope is the error.
pub fn parse_scopes(raw: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for word in raw.split(' ').filter(|w| !w.is_empty()) {
        scopes.push(Scope::parse(word).ok_or_else(|| word.to_owned())?);
    }
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// A scope list as a token's `scope` claim says it: space-delimited.
pub fn scope_string(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

/// An RFC 6749 §5.2 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    UnsupportedGrantType,
    InvalidScope,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
        }
    }

    /// 401 for a client that failed to authenticate, 400 for the rest (§5.2).
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidClient => 401,
            _ => 400,
        }
    }
}

/// A refused token request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct TokenError {
    pub code: ErrorCode,
    pub description: String,
}

fn refuse(code: ErrorCode, description: impl Into<String>) -> TokenError {
    TokenError { code, description: description.into() }
}

impl From<TokenError> for crate::problem::Problem {
    /// An RFC 9457 problem that is also an RFC 6749 §5.2 error body: `error` and
    /// `error_description` beside `type`, `title` and `status`.
    fn from(e: TokenError) -> Self {
        use crate::problem::{Problem, ProblemKind};
        let kind = if e.code == ErrorCode::InvalidClient {
            ProblemKind::Unauthenticated
        } else {
            ProblemKind::BadRequest
        };
        Problem::new(kind, e.description.clone())
            .with("error", e.code.as_str())
            .with("error_description", e.description)
    }
}

/// A well-formed client credentials request; the secret is still to be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub client_id: ClientId,
    pub client_secret: String,
    /// The scopes asked for; `None`: every scope the client has.
    pub scopes: Option<Vec<Scope>>,
}

/// Reads a token request: the form body (`application/x-www-form-urlencoded`) and the
/// `Authorization` header, if any. The client authenticates with HTTP Basic
/// (`client_secret_basic`, RFC 6749 §2.3.1) or with `client_id` and `client_secret` in the
/// body (`client_secret_post`), never both; no parameter may appear twice (§3.2).
pub fn parse_token_request(form: &[u8], authorization: Option<&str>) -> Result<TokenRequest, TokenError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(form) {
        if params.iter().any(|(n, _)| *n == name) {
            return Err(refuse(ErrorCode::InvalidRequest, format!("the parameter {name} appears twice")));
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    match param("grant_type") {
        Some(CLIENT_CREDENTIALS) => {}
        Some(other) => {
            return Err(refuse(
                ErrorCode::UnsupportedGrantType,
                format!("grant_type {other:?} is not supported; use client_credentials"),
            ))
        }
        None => return Err(refuse(ErrorCode::InvalidRequest, "grant_type is required (client_credentials)")),
    }
    let (id, secret) =
        match (basic_credentials(authorization)?, param("client_id"), param("client_secret")) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => return Err(refuse(
                ErrorCode::InvalidRequest,
                "authenticate the client once: HTTP Basic or client_id/client_secret in the body, not both",
            )),
            (Some(pair), None, None) => pair,
            (None, Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            (None, _, _) => {
                return Err(refuse(
                    ErrorCode::InvalidClient,
                    "client authentication is required (HTTP Basic, or client_id and client_secret)",
                ))
            }
        };
    let client_id = ClientId::parse(&id).ok_or_else(|| refuse(ErrorCode::InvalidClient, "unknown client"))?;
    let scopes = match param("scope") {
        None => None,
        Some(raw) => Some(
            parse_scopes(raw)
                .map_err(|unknown| refuse(ErrorCode::InvalidScope, format!("unknown scope {unknown:?}")))?,
        ),
    };
    Ok(TokenRequest { client_id, client_secret: secret, scopes })
}

/// The id and secret of an `Authorization: Basic` header (each form-urlencoded, §2.3.1);
/// `None` without an Authorization header.
fn basic_credentials(authorization: Option<&str>) -> Result<Option<(String, String)>, TokenError> {
    use base64::Engine;
    let Some(header) = authorization else { return Ok(None) };
    let bad = || refuse(ErrorCode::InvalidClient, "the Authorization header must be Basic base64(id:secret)");
    let (scheme, encoded) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((unescape(id), unescape(secret))))
}

/// The scopes a token gets: those asked for, each of which the client must have; without a
/// `scope` parameter, every scope the client has (RFC 6749 §3.3 lets the server default).
pub fn grant_scopes(asked: Option<&[Scope]>, client_has: &[Scope]) -> Result<Vec<Scope>, TokenError> {
    match asked {
        None => Ok(client_has.to_vec()),
        Some(asked) => match asked.iter().find(|s| !client_has.contains(s)) {
            Some(missing) => Err(refuse(
                ErrorCode::InvalidScope,
                format!("this client may not ask for {}", missing.as_str()),
            )),
            None if asked.is_empty() => Err(refuse(ErrorCode::InvalidScope, "the scope list is empty")),
            None => Ok(asked.to_vec()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const ID: &str = "svc_0123456789abcdef0123456789abcdef";

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn client_ids_and_secrets_have_their_shapes() {
        let id = ClientId::from_random([0xab; 16]);
        assert_eq!(id.as_str(), "svc_abababababababababababababababab");
        assert_eq!(ClientId::parse(id.as_str()), Some(id));
        assert_eq!(ClientId::parse("usr_abababababababababababababababab"), None);
        assert_eq!(ClientId::parse("svc_AB"), None);
        assert_eq!(client_secret([1; 32]).len(), 4 + 64);
    }

    #[test]
    fn scopes_parse_sorted_and_unknown_ones_are_named() {
        assert_eq!(
            parse_scopes("usage:write  entitlements:read usage:write"),
            Ok(vec![Scope::UsageWrite, Scope::EntitlementsRead])
        );
        assert_eq!(parse_scopes("usage:write admin"), Err("admin".into()));
        assert_eq!(
            scope_string(&[Scope::UsageWrite, Scope::EntitlementsRead]),
            "usage:write entitlements:read"
        );
    }

    #[test]
    fn basic_and_post_authentication_are_both_read() {
        let form = b"grant_type=client_credentials&scope=usage%3Awrite";
        let by_basic = parse_token_request(form, Some(&basic(ID, "s3cret"))).unwrap();
        assert_eq!(by_basic.client_id.as_str(), ID);
        assert_eq!(by_basic.client_secret, "s3cret");
        assert_eq!(by_basic.scopes, Some(vec![Scope::UsageWrite]));
        let posted = format!("grant_type=client_credentials&client_id={ID}&client_secret=s3cret");
        let by_post = parse_token_request(posted.as_bytes(), None).unwrap();
        assert_eq!((by_post.client_secret.as_str(), by_post.scopes), ("s3cret", None));
    }

    #[test]
    fn refusals_carry_the_rfc_6749_codes() {
        let code =
            |form: &str, auth: Option<&str>| parse_token_request(form.as_bytes(), auth).unwrap_err().code;
        assert_eq!(code("grant_type=password", None), ErrorCode::UnsupportedGrantType);
        assert_eq!(code("scope=usage:write", None), ErrorCode::InvalidRequest);
        assert_eq!(code("grant_type=client_credentials", None), ErrorCode::InvalidClient);
        assert_eq!(
            code("grant_type=client_credentials&grant_type=client_credentials", Some(&basic(ID, "x"))),
            ErrorCode::InvalidRequest
        );
        let both = format!("grant_type=client_credentials&client_id={ID}");
        assert_eq!(code(&both, Some(&basic(ID, "x"))), ErrorCode::InvalidRequest);
        assert_eq!(code("grant_type=client_credentials", Some("Bearer abc")), ErrorCode::InvalidClient);
        assert_eq!(
            code("grant_type=client_credentials", Some(&basic("svc_1", "x"))),
            ErrorCode::InvalidClient
        );
        assert_eq!(
            code("grant_type=client_credentials&scope=root", Some(&basic(ID, "x"))),
            ErrorCode::InvalidScope
        );
        assert_eq!(ErrorCode::InvalidClient.status(), 401);
        let problem = crate::problem::Problem::from(refuse(ErrorCode::InvalidClient, "unknown client"));
        assert_eq!((problem.status, problem.extensions["error"].as_str()), (401, Some("invalid_client")));
        assert_eq!(ErrorCode::InvalidScope.status(), 400);
    }

    #[test]
    fn a_token_gets_only_scopes_the_client_has() {
        let has = [Scope::EntitlementsRead];
        assert_eq!(grant_scopes(None, &has), Ok(vec![Scope::EntitlementsRead]));
        assert_eq!(grant_scopes(Some(&[Scope::EntitlementsRead]), &has), Ok(vec![Scope::EntitlementsRead]));
        assert_eq!(grant_scopes(Some(&[Scope::UsageWrite]), &has).unwrap_err().code, ErrorCode::InvalidScope);
        assert_eq!(grant_scopes(Some(&[]), &has).unwrap_err().code, ErrorCode::InvalidScope);
    }
}
