//! Authentication at the edge: access tokens are validated here on every protected request,
//! with no I/O (see `domain::token`), and issued here after the origin has verified a password.

use std::sync::OnceLock;

use domain::identity::{Actor, Role, UserId};
use domain::problem::ProblemKind;
use domain::tier::Tier;
use domain::token::{self, Keyset, SigningKey, Subject, TokenPolicy};
use serde_json::Value;
use worker::{Env, Request};

use crate::bindings::AuthConfig;
use crate::origin_client::now;
use crate::problem::EdgeError;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: UserId,
    pub role: Role,
    /// The tier in the token: only a hint for the gate, which enforces the tier it learnt
    /// from the origin (a token issued before an upgrade still names the old tier).
    pub token_tier: Tier,
    /// The session the token belongs to, checked by the gate on every request.
    pub sid: Option<String>,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::User { id: self.id.clone(), role: self.role }
    }
}

/// Keys and policy, read from the Worker's bindings once per isolate.
struct Auth {
    signing: SigningKey,
    keyset: Keyset,
    policy: TokenPolicy,
}

fn auth(env: &Env) -> Result<&'static Auth, EdgeError> {
    static AUTH: OnceLock<Auth> = OnceLock::new();
    if let Some(a) = AUTH.get() {
        return Ok(a);
    }
    let config =
        AuthConfig::from_env(env).map_err(|e| EdgeError::Runtime(worker::Error::RustError(e.to_string())))?;
    let built = Auth {
        keyset: Keyset::new(&config.signing, config.previous),
        signing: config.signing,
        policy: config.policy,
    };
    Ok(AUTH.get_or_init(|| built))
}

pub fn unauthenticated(detail: impl Into<String>) -> EdgeError {
    EdgeError::Problem(
        domain::problem::Problem::new(ProblemKind::Unauthenticated, detail)
            .with("www_authenticate", "Bearer"),
    )
}

/// The bearer token of a request: `None` when there is no Authorization header.
fn bearer(req: &Request) -> Result<Option<String>, EdgeError> {
    let Some(header) = req.headers().get("authorization")? else { return Ok(None) };
    match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(unauthenticated("the Authorization header must be `Bearer <access token>`")),
    }
}

fn claims(env: &Env, token: &str) -> Result<token::AccessClaims, EdgeError> {
    let auth = auth(env)?;
    token::validate_access(token, &auth.keyset, &auth.policy, now())
        .map_err(|e| unauthenticated(e.to_string()))
}

/// The claims of the caller's valid token, for `GET /api/v1/auth/token`.
pub fn introspect(req: &Request, env: &Env) -> Result<Value, EdgeError> {
    let token = bearer(req)?.ok_or_else(|| unauthenticated("an access token is required"))?;
    Ok(serde_json::to_value(claims(env, &token)?)?)
}

fn validate(env: &Env, token: &str) -> Result<Caller, EdgeError> {
    let claims = claims(env, token)?;
    let id: UserId =
        claims.sub.parse().map_err(|_| unauthenticated("the token's subject is not a user id"))?;
    let role: Role = claims.role.parse().map_err(|_| unauthenticated("the token's role is unknown"))?;
    let token_tier: Tier = claims.tier.parse().map_err(|_| unauthenticated("the token's tier is unknown"))?;
    Ok(Caller { id, role, token_tier, sid: claims.sid })
}

/// The caller, who must present a valid access token.
pub fn authenticate(req: &Request, env: &Env) -> Result<Caller, EdgeError> {
    let token = bearer(req)?.ok_or_else(|| unauthenticated("an access token is required"))?;
    validate(env, &token)
}

/// The caller if a token is presented (it must then be valid), else `None`.
pub fn authenticate_optional(req: &Request, env: &Env) -> Result<Option<Caller>, EdgeError> {
    bearer(req)?.map(|t| validate(env, &t)).transpose()
}

pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

pub fn issue_access_token(
    env: &Env,
    user_id: &str,
    tier: &str,
    role: &str,
    session_id: Option<&str>,
) -> Result<IssuedToken, EdgeError> {
    let auth = auth(env)?;
    let mut jti = [0u8; 16];
    getrandom::getrandom(&mut jti)
        .map_err(|e| EdgeError::Runtime(worker::Error::RustError(e.to_string())))?;
    let subject = Subject { user_id, tier, role, session_id };
    let token = token::issue_access(&auth.signing, &auth.policy, &subject, &hex::encode(jti), now())
        .map_err(|e| EdgeError::Runtime(worker::Error::RustError(e.to_string())))?;
    Ok(IssuedToken { token, expires_in: auth.policy.ttl_secs })
}

pub fn jwks(env: &Env) -> Result<Value, EdgeError> {
    Ok(auth(env)?.keyset.jwks())
}
