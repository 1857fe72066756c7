//! Authentication at the edge: access tokens are validated here on every protected request,
//! with no I/O (see `domain::token`), and issued here after the origin has verified a password.

use domain::identity::{Actor, Role, UserId};
use domain::problem::ProblemKind;
use domain::tier::Tier;
use domain::token::{self, Keyset, Subject, TokenPolicy};
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
    /// The token's claims as validated (answered by `GET /api/v1/auth/token`).
    pub claims: token::AccessClaims,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::User { id: self.id.clone(), role: self.role }
    }
}

/// Keys and policy, read from the Worker's bindings once per isolate, with the signing key
/// imported into WebCrypto (which also derived its public key).
struct Auth {
    kid: String,
    /// The `CryptoKey` that signs.
    private: wasm_bindgen::JsValue,
    keyset: Keyset,
    policy: TokenPolicy,
}

thread_local! {
    /// A Worker isolate runs one thread.
    static AUTH: std::cell::RefCell<Option<std::rc::Rc<Auth>>> = const { std::cell::RefCell::new(None) };
}

async fn auth(env: &Env) -> Result<std::rc::Rc<Auth>, EdgeError> {
    if let Some(a) = AUTH.with(|a| a.borrow().clone()) {
        return Ok(a);
    }
    let config =
        AuthConfig::from_env(env).map_err(|e| EdgeError::Runtime(worker::Error::RustError(e.to_string())))?;
    let (private, public) = webcrypto::import_signing(&config.signing).await?;
    let built = std::rc::Rc::new(Auth {
        kid: config.signing.kid().to_owned(),
        private,
        keyset: Keyset::new(config.signing.verifying_key(public), config.previous),
        policy: config.policy,
    });
    AUTH.with(|a| *a.borrow_mut() = Some(built.clone()));
    Ok(built)
}

fn runtime(e: impl std::fmt::Display) -> EdgeError {
    EdgeError::Runtime(worker::Error::RustError(e.to_string()))
}

/// A fresh token id.
fn jti() -> Result<String, EdgeError> {
    let mut jti = [0u8; 16];
    getrandom::getrandom(&mut jti).map_err(runtime)?;
    Ok(hex::encode(jti))
}

pub fn unauthenticated(detail: impl Into<String>) -> EdgeError {
    EdgeError::Problem(
        domain::problem::Problem::new(ProblemKind::Unauthenticated, detail)
            .with("www_authenticate", "Bearer"),
    )
}

/// The bearer token of a request: `None` when there is no Authorization header.
pub(crate) fn bearer(req: &Request) -> Result<Option<String>, EdgeError> {
    let Some(header) = req.headers().get("authorization")? else { return Ok(None) };
    match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ => {
            crate::metrics::token_failure("malformed");
            Err(unauthenticated("the Authorization header must be `Bearer <access token>`"))
        }
    }
}

/// Validates an access token: its header and key in `domain::token`, its Ed25519 signature by
/// the runtime's WebCrypto (several times faster than Ed25519 compiled to wasm), then its
/// claims in `domain::token` again. No I/O.
async fn claims(env: &Env, token: &str) -> Result<token::AccessClaims, EdgeError> {
    let auth = auth(env).await?;
    let at = now();
    let refuse = |e: token::TokenError| {
        crate::metrics::token_failure(domain::observe::token_failure_reason(&e));
        unauthenticated(e.to_string())
    };
    let unverified = token::prepare_access(token, &auth.keyset, at).map_err(refuse)?;
    if !webcrypto::verify(unverified.key(), unverified.signed_part().as_bytes(), unverified.signature())
        .await?
    {
        return Err(refuse(token::TokenError::BadSignature));
    }
    token::accept_access(&unverified, &auth.policy, at).map_err(refuse)
}

/// Ed25519 verification by WebCrypto (`crypto.subtle`), with each public key imported once per
/// isolate.
mod webcrypto {
    use std::cell::RefCell;

    use domain::token::VerifyingKey;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use worker::js_sys::{Array, Promise, Reflect, Uint8Array};
    use worker::wasm_bindgen_futures::JsFuture;

    use crate::problem::EdgeError;

    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey, catch)]
        fn import_key(
            format: &str,
            key: &Uint8Array,
            algorithm: &JsValue,
            extractable: bool,
            usages: &Array,
        ) -> Result<Promise, JsValue>;

        #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = sign, catch)]
        fn subtle_sign(algorithm: &JsValue, key: &JsValue, data: &Uint8Array) -> Result<Promise, JsValue>;

        #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = exportKey, catch)]
        fn export_key(format: &str, key: &JsValue) -> Result<Promise, JsValue>;

        #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = verify, catch)]
        fn subtle_verify(
            algorithm: &JsValue,
            key: &JsValue,
            signature: &Uint8Array,
            data: &Uint8Array,
        ) -> Result<Promise, JsValue>;
    }

    thread_local! {
        /// Imported keys by kid (a Worker isolate runs one thread).
        static KEYS: RefCell<Vec<(String, JsValue)>> = const { RefCell::new(Vec::new()) };
    }

    fn failed(what: &str, e: &JsValue) -> EdgeError {
        EdgeError::Runtime(worker::Error::RustError(format!("WebCrypto {what}: {e:?}")))
    }

    thread_local! {
        /// The algorithm's name, which WebCrypto takes in place of `{name: "Ed25519"}`: made
        /// once per isolate, so that a verification builds no object and passes no string.
        static ED25519: JsValue = JsValue::from_str("Ed25519");
    }

    fn ed25519() -> JsValue {
        ED25519.with(JsValue::clone)
    }

    async fn key(key: &VerifyingKey) -> Result<JsValue, EdgeError> {
        let known = KEYS.with(|keys| {
            keys.borrow().iter().find(|(kid, _)| kid.as_str() == key.kid()).map(|(_, k)| k.clone())
        });
        if let Some(k) = known {
            return Ok(k);
        }
        let usages = Array::of1(&"verify".into());
        let raw = Uint8Array::from(key.public_bytes());
        let promise =
            import_key("raw", &raw, &ed25519(), false, &usages).map_err(|e| failed("importKey", &e))?;
        let imported = JsFuture::from(promise).await.map_err(|e| failed("importKey", &e))?;
        KEYS.with(|keys| keys.borrow_mut().push((key.kid().to_owned(), imported.clone())));
        Ok(imported)
    }

    /// Imports the signing key (PKCS #8) and reads its public key back from WebCrypto's JWK of
    /// it: the wasm carries no Ed25519 arithmetic.
    pub async fn import_signing(key: &domain::token::SigningKey) -> Result<(JsValue, [u8; 32]), EdgeError> {
        let usages = Array::of1(&"sign".into());
        let der = Uint8Array::from(key.pkcs8_der().as_slice());
        let promise =
            import_key("pkcs8", &der, &ed25519(), true, &usages).map_err(|e| failed("importKey", &e))?;
        let private = JsFuture::from(promise).await.map_err(|e| failed("importKey", &e))?;
        let jwk = JsFuture::from(export_key("jwk", &private).map_err(|e| failed("exportKey", &e))?)
            .await
            .map_err(|e| failed("exportKey", &e))?;
        let x = Reflect::get(&jwk, &"x".into()).ok().and_then(|x| x.as_string()).unwrap_or_default();
        let public = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, x)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| failed("exportKey", &"no 32-byte public key in the JWK".into()))?;
        Ok((private, public))
    }

    /// `key`'s Ed25519 signature of `data`.
    pub async fn sign(key: &JsValue, data: &[u8]) -> Result<Vec<u8>, EdgeError> {
        let promise =
            subtle_sign(&ed25519(), key, &Uint8Array::from(data)).map_err(|e| failed("sign", &e))?;
        let signature = JsFuture::from(promise).await.map_err(|e| failed("sign", &e))?;
        Ok(Uint8Array::new(&signature).to_vec())
    }

    /// Whether `signature` is `key`'s Ed25519 signature of `data`.
    pub async fn verify(key: &VerifyingKey, data: &[u8], signature: &[u8]) -> Result<bool, EdgeError> {
        let imported = self::key(key).await?;
        let promise =
            subtle_verify(&ed25519(), &imported, &Uint8Array::from(signature), &Uint8Array::from(data))
                .map_err(|e| failed("verify", &e))?;
        let answer = JsFuture::from(promise).await.map_err(|e| failed("verify", &e))?;
        Ok(answer.as_bool().unwrap_or(false) && answer.dyn_ref::<worker::js_sys::Boolean>().is_some())
    }
}

/// A platform service authenticated by a service access token (`domain::oauth`).
#[derive(Debug, Clone)]
pub struct ServiceCaller {
    pub client_id: domain::oauth::ClientId,
    pub scopes: Vec<domain::oauth::Scope>,
}

impl ServiceCaller {
    pub fn actor(&self) -> Actor {
        Actor::Service { client_id: self.client_id.clone() }
    }
}

/// Validates a service access token like [`claims`] does a user's: header and key, the
/// signature by WebCrypto, then the claims (`typ` must be `service`). No I/O.
pub async fn service(env: &Env, token: &str) -> Result<ServiceCaller, EdgeError> {
    let auth = auth(env).await?;
    let at = now();
    let refuse = |e: token::TokenError| {
        crate::metrics::token_failure(domain::observe::token_failure_reason(&e));
        unauthenticated(e.to_string())
    };
    let unverified = token::prepare_access(token, &auth.keyset, at).map_err(refuse)?;
    if !webcrypto::verify(unverified.key(), unverified.signed_part().as_bytes(), unverified.signature())
        .await?
    {
        return Err(refuse(token::TokenError::BadSignature));
    }
    let claims = token::accept_service(&unverified, &auth.policy, at).map_err(refuse)?;
    let bad_claims = |detail: &str| {
        crate::metrics::token_failure("bad_claims");
        unauthenticated(detail)
    };
    let client_id = domain::oauth::ClientId::parse(&claims.client_id)
        .ok_or_else(|| bad_claims("the token's client is not a service client id"))?;
    let scopes =
        domain::oauth::parse_scopes(&claims.scope).map_err(|_| bad_claims("the token's scope is unknown"))?;
    Ok(ServiceCaller { client_id, scopes })
}

/// Issues a service access token for a client the origin has just checked.
pub async fn issue_service_token(env: &Env, client_id: &str, scope: &str) -> Result<IssuedToken, EdgeError> {
    let auth = auth(env).await?;
    let input = token::service_signing_input(&auth.kid, &auth.policy, client_id, scope, &jti()?, now())
        .map_err(runtime)?;
    let signature = webcrypto::sign(&auth.private, input.as_bytes()).await?;
    Ok(IssuedToken { token: token::signed(&input, &signature), expires_in: auth.policy.ttl_secs })
}

async fn validate(env: &Env, token: &str) -> Result<Caller, EdgeError> {
    let claims = claims(env, token).await?;
    let bad_claims = |detail: &str| {
        crate::metrics::token_failure("bad_claims");
        unauthenticated(detail)
    };
    let id: UserId = claims.sub.parse().map_err(|_| bad_claims("the token's subject is not a user id"))?;
    let role: Role = claims.role.parse().map_err(|_| bad_claims("the token's role is unknown"))?;
    let token_tier: Tier = claims.tier.parse().map_err(|_| bad_claims("the token's tier is unknown"))?;
    Ok(Caller { id, role, token_tier, sid: claims.sid.clone(), claims })
}

/// The caller, who must present a valid access token.
pub async fn authenticate(req: &Request, env: &Env) -> Result<Caller, EdgeError> {
    let token = bearer(req)?.ok_or_else(|| {
        crate::metrics::token_failure("missing");
        unauthenticated("an access token is required")
    })?;
    validate(env, &token).await
}

/// The caller if a token is presented (it must then be valid), else `None`.
pub async fn authenticate_optional(req: &Request, env: &Env) -> Result<Option<Caller>, EdgeError> {
    match bearer(req)? {
        Some(t) => Ok(Some(validate(env, &t).await?)),
        None => Ok(None),
    }
}

pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

/// Issues an access token, signed by WebCrypto with the key imported once per isolate.
pub async fn issue_access_token(
    env: &Env,
    user_id: &str,
    tier: &str,
    role: &str,
    session_id: Option<&str>,
    org: Option<&str>,
) -> Result<IssuedToken, EdgeError> {
    let auth = auth(env).await?;
    let subject = Subject { user_id, tier, role, session_id, org };
    let input =
        token::access_signing_input(&auth.kid, &auth.policy, &subject, &jti()?, now()).map_err(runtime)?;
    let signature = webcrypto::sign(&auth.private, input.as_bytes()).await?;
    Ok(IssuedToken { token: token::signed(&input, &signature), expires_in: auth.policy.ttl_secs })
}

pub async fn jwks(env: &Env) -> Result<domain::wire::auth::Jwks, EdgeError> {
    Ok(auth(env).await?.keyset.jwks())
}
