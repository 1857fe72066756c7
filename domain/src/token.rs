//! Access tokens: JWTs signed with Ed25519 (`EdDSA`), issued by the edge after the origin has
//! verified a password, and validated by the edge on every protected request with no I/O.
//!
//! Validation pins the algorithm (the header must say `EdDSA`, so `none`, `HS256` and any
//! other swap are refused before a key is touched), finds the key by `kid` in the key set
//! (several keys are active during a rotation), checks the signature, then `typ`, `iss`, `aud`,
//! `exp` and `nbf` against a `now` the caller passes, with a small leeway, and refuses any
//! token whose lifetime exceeds the 15-minute maximum.
//!
//! Keys: the operator makes a signing seed with `head -c 32 /dev/urandom | base64` and stores it
//! as a Worker secret.
//!
//! The Ed25519 arithmetic is not here: this module builds what is signed and checks everything
//! around the signature, and the caller signs and verifies with the runtime's own Ed25519 (the
//! edge uses WebCrypto, which also derives the public key from the seed; the unit tests use
//! ed25519-compact). So the edge's wasm carries no curve code and no JWT library, and a token
//! is checked in two halves around the one call that needs the key: [`prepare_access`] (the
//! header, the key) and [`accept_access`] (the claims).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::time::UnixMillis;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "EdDSA";
/// The longest an access token may live.
pub const MAX_TTL_SECS: u64 = 15 * 60;
/// The header `typ` of access tokens (RFC 9068).
pub const ACCESS_HEADER_TYP: &str = "at+jwt";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the signing key must be 32 bytes of seed in standard base64")]
    BadSeed,
    #[error("a key id must be 1 to 64 characters of [A-Za-z0-9._-]")]
    BadKid,
    #[error("a public key must be an OKP Ed25519 JWK with a kid: {0}")]
    BadJwk(String),
    #[error("the previous key {0} has no expiry: give it an `exp` member (Unix seconds) after which its tokens are refused")]
    NoExpiry(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm {0:?} is not allowed (only EdDSA)")]
    AlgorithmNotAllowed(String),
    #[error("the token names no key or an unknown key")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token is not an access token")]
    WrongType,
    #[error("the token's header type is not at+jwt")]
    WrongHeaderType,
    #[error("the token was signed by a retired key that is no longer trusted")]
    RetiredKey,
    #[error("the token lives longer than the 15 minutes allowed")]
    LifetimeTooLong,
    #[error("the token could not be signed: {0}")]
    Signing(String),
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The edge's private key (its RFC 8032 seed) and its id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    seed: [u8; 32],
}

/// The DER prefix of an Ed25519 private key in PKCS #8 (RFC 8410 §7): the seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey {{ kid: {:?}, .. }}", self.kid)
    }
}

impl SigningKey {
    pub fn from_seed_b64(kid: &str, seed_b64: &str) -> Result<Self, KeyError> {
        if !valid_kid(kid) {
            return Err(KeyError::BadKid);
        }
        let seed: [u8; 32] =
            STANDARD.decode(seed_b64.trim()).ok().and_then(|v| v.try_into().ok()).ok_or(KeyError::BadSeed)?;
        // All zeros is what an unset or wiped secret decodes to, never a key.
        if seed == [0; 32] {
            return Err(KeyError::BadSeed);
        }
        Ok(Self { kid: kid.to_owned(), seed })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key in PKCS #8 (DER), the form a runtime's Ed25519 imports a private key in
    /// (WebCrypto's `importKey("pkcs8", …)`).
    pub fn pkcs8_der(&self) -> Vec<u8> {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.seed);
        der
    }

    /// The 32 bytes of seed, for an Ed25519 implementation that takes it raw.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public key, given as derived from the seed by the caller's Ed25519.
    pub fn verifying_key(&self, public: [u8; 32]) -> VerifyingKey {
        VerifyingKey { kid: self.kid.clone(), key: public, expires: None }
    }
}

/// A public key that verifies tokens, with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kid: String,
    key: [u8; 32],
    /// For a retired key: the Unix second from which its tokens are refused. The current key
    /// has none.
    expires: Option<u64>,
}

impl VerifyingKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The same key, trusted only until `unix_secs` (a retired key during a rotation).
    pub fn expiring_at(self, unix_secs: u64) -> Self {
        Self { expires: Some(unix_secs), ..self }
    }

    pub fn expires(&self) -> Option<u64> {
        self.expires
    }

    /// The 32 bytes of the public key (for a runtime's own Ed25519, WebCrypto's `raw` format).
    pub fn public_bytes(&self) -> &[u8] {
        &self.key
    }

    /// Whether the key still verifies tokens at `now`.
    pub fn trusted_at(&self, now: UnixMillis) -> bool {
        self.expires.is_none_or(|secs| now.0 < secs.saturating_mul(1000))
    }

    /// The key as a JWK (RFC 8037 OKP).
    pub fn to_jwk(&self) -> Value {
        let mut jwk = json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.key),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        });
        if let (Some(exp), Some(object)) = (self.expires, jwk.as_object_mut()) {
            object.insert("exp".into(), json!(exp));
        }
        jwk
    }

    pub fn from_jwk(jwk: &Value) -> Result<Self, KeyError> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
            return Err(KeyError::BadJwk("kty must be OKP and crv Ed25519".into()));
        }
        let kid = field("kid").filter(|k| valid_kid(k)).ok_or(KeyError::BadKid)?;
        let x = field("x")
            .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
            .ok_or_else(|| KeyError::BadJwk("x must be base64url".into()))?;
        let key: [u8; 32] = x.try_into().map_err(|_| KeyError::BadJwk("x must be 32 bytes".into()))?;
        let expires = match jwk.get("exp") {
            None => None,
            Some(exp) => {
                Some(exp.as_u64().ok_or_else(|| KeyError::BadJwk("exp must be Unix seconds".into()))?)
            }
        };
        Ok(Self { kid: kid.to_owned(), key, expires })
    }
}

/// The keys an edge trusts: its own, and the previous ones still inside their tokens' lifetime
/// during a rotation.
#[derive(Debug, Clone)]
pub struct Keyset {
    keys: Vec<VerifyingKey>,
}

impl Keyset {
    pub fn new(current: VerifyingKey, previous: Vec<VerifyingKey>) -> Self {
        let mut keys = vec![current.clone()];
        keys.extend(previous.into_iter().filter(|k| k.kid != current.kid));
        Self { keys }
    }

    /// Parses previous keys from JSON: a JWKS (`{"keys": [...]}`) or a bare array of JWKs.
    /// Each must carry `exp`, the Unix second from which its tokens are refused: a retired key
    /// is trusted for its tokens' remaining lifetime, not for ever (were it leaked later, it
    /// could otherwise mint tokens the edge still accepts).
    pub fn parse_previous(json_text: &str) -> Result<Vec<VerifyingKey>, KeyError> {
        let value: Value = serde_json::from_str(json_text).map_err(|e| KeyError::BadJwk(e.to_string()))?;
        let list = value.get("keys").unwrap_or(&value);
        list.as_array()
            .ok_or_else(|| KeyError::BadJwk("expected a JWKS or an array of JWKs".into()))?
            .iter()
            .map(|jwk| {
                let key = VerifyingKey::from_jwk(jwk)?;
                match key.expires {
                    Some(_) => Ok(key),
                    None => Err(KeyError::NoExpiry(key.kid)),
                }
            })
            .collect()
    }

    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The JWKS document for `GET /.well-known/jwks.json`.
    pub fn jwks(&self) -> crate::wire::auth::Jwks {
        crate::wire::auth::Jwks {
            keys: self
                .keys
                .iter()
                .map(|k| crate::wire::auth::Jwk {
                    kty: "OKP".into(),
                    crv: "Ed25519".into(),
                    x: URL_SAFE_NO_PAD.encode(k.key),
                    kid: k.kid.clone(),
                    alg: ALGORITHM.into(),
                    use_: "sig".into(),
                    exp: k.expires,
                })
                .collect(),
        }
    }
}

/// What tokens must say and how long they live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub ttl_secs: u64,
    pub leeway_secs: u64,
}

/// The claims of an access token beyond `exp`, `nbf` and `iat`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub jti: String,
    pub typ: String,
    pub tier: String,
    pub role: String,
    /// The session the token belongs to (sessions arrive with refresh tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The organization the user belongs to when the token was issued (a hint like `tier`:
    /// the gate holds the current membership).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

/// The `typ` claim of access tokens.
pub const ACCESS_TYP: &str = "access";

/// What the caller knows about the subject when issuing.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub tier: &'a str,
    pub role: &'a str,
    pub session_id: Option<&'a str>,
    pub org: Option<&'a str>,
}

/// The JOSE header of every token issued here.
#[derive(Serialize, Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// The registered time claims (RFC 7519 §4.1), in Unix seconds.
#[derive(Deserialize)]
struct Times {
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
}

/// `header.payload` of a token with `claims`, issued at `now` for the policy's lifetime by
/// the key `kid`: what the caller signs, then gives to [`signed`].
fn signing_input<C: Serialize>(
    kid: &str,
    policy: &TokenPolicy,
    claims: &C,
    now: UnixMillis,
) -> Result<String, TokenError> {
    if policy.ttl_secs > MAX_TTL_SECS {
        return Err(TokenError::LifetimeTooLong);
    }
    let header =
        JoseHeader { alg: ALGORITHM.into(), kid: Some(kid.to_owned()), typ: Some(ACCESS_HEADER_TYP.into()) };
    let at = now.0 / 1000;
    let mut body = serde_json::to_value(claims).map_err(|e| TokenError::Signing(e.to_string()))?;
    let object =
        body.as_object_mut().ok_or_else(|| TokenError::Signing("claims are not an object".into()))?;
    object.insert("exp".into(), json!(at.saturating_add(policy.ttl_secs)));
    object.insert("nbf".into(), json!(at));
    object.insert("iat".into(), json!(at));
    let header = serde_json::to_string(&header).map_err(|e| TokenError::Signing(e.to_string()))?;
    let body = serde_json::to_string(&body).map_err(|e| TokenError::Signing(e.to_string()))?;
    Ok(format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(body)))
}

/// The token: `signing_input` and its Ed25519 `signature`.
pub fn signed(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// What to sign for an access token for `subject`, valid from `now` for the policy's lifetime.
pub fn access_signing_input(
    kid: &str,
    policy: &TokenPolicy,
    subject: &Subject<'_>,
    jti: &str,
    now: UnixMillis,
) -> Result<String, TokenError> {
    let claims = AccessClaims {
        iss: policy.issuer.clone(),
        aud: policy.audience.clone(),
        sub: subject.user_id.to_owned(),
        jti: jti.to_owned(),
        typ: ACCESS_TYP.to_owned(),
        tier: subject.tier.to_owned(),
        role: subject.role.to_owned(),
        sid: subject.session_id.map(str::to_owned),
        org: subject.org.map(str::to_owned),
    };
    signing_input(kid, policy, &claims, now)
}

/// An access token whose header passed every check and whose key is known and trusted, but
/// whose signature is not verified yet. Only [`accept_access`] gives claims, and only after the
/// caller has verified `signature()` over `signed_part()` with `key()`.
pub struct UnverifiedAccess<'a> {
    payload: Vec<u8>,
    signature: Vec<u8>,
    key: &'a VerifyingKey,
    signed_part: &'a str,
}

impl<'a> UnverifiedAccess<'a> {
    /// The key that must have signed the token.
    pub fn key(&self) -> &'a VerifyingKey {
        self.key
    }

    /// `header.payload`, the bytes the signature covers.
    pub fn signed_part(&self) -> &'a str {
        self.signed_part
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// A compact JWS cut in its three parts, each decoded: `None` unless well-formed.
fn parts(token: &str) -> Option<(JoseHeader, Vec<u8>, Vec<u8>, &str)> {
    let (signed_part, signature) = token.rsplit_once('.')?;
    let (header, payload) = signed_part.split_once('.')?;
    let header: JoseHeader = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    Some((header, payload, signature, signed_part))
}

/// The header half of validation: well-formed, `EdDSA`, `typ` `at+jwt`, a known key still
/// trusted at `now`. The signature is not checked.
pub fn prepare_access<'a>(
    token: &'a str,
    keys: &'a Keyset,
    now: UnixMillis,
) -> Result<UnverifiedAccess<'a>, TokenError> {
    let (header, payload, signature, signed_part) = parts(token).ok_or(TokenError::Malformed)?;
    if header.alg != ALGORITHM {
        return Err(TokenError::AlgorithmNotAllowed(header.alg));
    }
    // RFC 9068: an access token says so in its header, so a JWT of another kind signed by the
    // same key (an ID token, say) is never taken for one.
    if header.typ.as_deref() != Some(ACCESS_HEADER_TYP) {
        return Err(TokenError::WrongHeaderType);
    }
    let key = header.kid.as_deref().and_then(|kid| keys.find(kid)).ok_or(TokenError::UnknownKey)?;
    if !key.trusted_at(now) {
        return Err(TokenError::RetiredKey);
    }
    // An Ed25519 signature of another length is malformed, not merely invalid.
    if signature.len() != 64 {
        return Err(TokenError::Malformed);
    }
    Ok(UnverifiedAccess { payload, signature, key, signed_part })
}

/// The claims half of validation, for a token whose signature the caller has verified:
/// `exp`, `nbf`, lifetime, `typ`, `iss`, `aud` at `now`.
pub fn accept_access(
    verified: &UnverifiedAccess<'_>,
    policy: &TokenPolicy,
    now: UnixMillis,
) -> Result<AccessClaims, TokenError> {
    let custom: AccessClaims = accept_times(verified, policy, now)?;
    if custom.typ != ACCESS_TYP {
        return Err(TokenError::WrongType);
    }
    if custom.iss != policy.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if custom.aud != policy.audience {
        return Err(TokenError::WrongAudience);
    }
    Ok(custom)
}

/// `exp`, `nbf` and the lifetime of a token whose signature the caller verified, with the
/// policy's leeway either side; its other claims for the caller to check.
fn accept_times<C: serde::de::DeserializeOwned>(
    verified: &UnverifiedAccess<'_>,
    policy: &TokenPolicy,
    now: UnixMillis,
) -> Result<C, TokenError> {
    let times: Times = serde_json::from_slice(&verified.payload).map_err(|_| TokenError::Malformed)?;
    let custom: C = serde_json::from_slice(&verified.payload).map_err(|_| TokenError::Malformed)?;
    let ms = |secs: u64| secs.saturating_mul(1000);
    let leeway = ms(policy.leeway_secs);
    let exp = times.exp.ok_or(TokenError::Malformed)?;
    if now.0 > ms(exp).saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if times.nbf.is_some_and(|nbf| ms(nbf) > now.0.saturating_add(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    let iat = times.iat.ok_or(TokenError::Malformed)?;
    if exp.saturating_sub(iat) > MAX_TTL_SECS + policy.leeway_secs {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(custom)
}

/// The `typ` claim of service access tokens (OAuth 2.0 client credentials).
pub const SERVICE_TYP: &str = "service";

/// The claims of a service access token beyond `exp`, `nbf` and `iat`: its subject is the
/// service client (RFC 9068 §2.2: `sub` and `client_id` both name it), `scope` what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub client_id: String,
    pub jti: String,
    pub typ: String,
    /// Space-delimited scopes (`domain::oauth::Scope`).
    pub scope: String,
}

/// What to sign for a service access token for `client_id` with `scope`, valid from `now` for
/// the policy's lifetime. The same header and key as a user's token; `typ` tells them apart,
/// so neither is ever accepted where the other is expected.
pub fn service_signing_input(
    kid: &str,
    policy: &TokenPolicy,
    client_id: &str,
    scope: &str,
    jti: &str,
    now: UnixMillis,
) -> Result<String, TokenError> {
    let claims = ServiceClaims {
        iss: policy.issuer.clone(),
        aud: policy.audience.clone(),
        sub: client_id.to_owned(),
        client_id: client_id.to_owned(),
        jti: jti.to_owned(),
        typ: SERVICE_TYP.to_owned(),
        scope: scope.to_owned(),
    };
    signing_input(kid, policy, &claims, now)
}

/// The claims half of validation for a service token (see [`accept_access`]).
pub fn accept_service(
    verified: &UnverifiedAccess<'_>,
    policy: &TokenPolicy,
    now: UnixMillis,
) -> Result<ServiceClaims, TokenError> {
    let custom: ServiceClaims = accept_times(verified, policy, now)?;
    if custom.typ != SERVICE_TYP || custom.sub != custom.client_id {
        return Err(TokenError::WrongType);
    }
    if custom.iss != policy.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if custom.aud != policy.audience {
        return Err(TokenError::WrongAudience);
    }
    Ok(custom)
}

/// The `typ` claim a token says it has, unverified: only to choose which validation runs
/// (each checks `typ` again after the signature).
pub fn claimed_type(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Typ {
        typ: String,
    }
    let (_, payload, _, _) = parts(token)?;
    serde_json::from_slice::<Typ>(&payload).ok().map(|c| c.typ)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    const NOW: UnixMillis = UnixMillis(1_700_000_000_000);

    fn key(kid: &str, byte: u8) -> SigningKey {
        SigningKey::from_seed_b64(kid, &STANDARD.encode([byte; 32])).unwrap()
    }

    // The Ed25519 the runtime provides at the edge (WebCrypto), here ed25519-compact's.
    fn pair(k: &SigningKey) -> ed25519_compact::KeyPair {
        ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*k.seed()))
    }

    fn vk(k: &SigningKey) -> VerifyingKey {
        let public: [u8; 32] = pair(k).pk.as_ref().try_into().unwrap();
        k.verifying_key(public)
    }

    fn sign(k: &SigningKey, input: &str) -> Vec<u8> {
        pair(k).sk.sign(input.as_bytes(), None).as_ref().to_vec()
    }

    fn issue_access(
        k: &SigningKey,
        p: &TokenPolicy,
        s: &Subject<'_>,
        jti: &str,
        now: UnixMillis,
    ) -> Result<String, TokenError> {
        let input = access_signing_input(k.kid(), p, s, jti, now)?;
        Ok(signed(&input, &sign(k, &input)))
    }

    fn issue_service(
        k: &SigningKey,
        p: &TokenPolicy,
        client: &str,
        scope: &str,
        jti: &str,
        now: UnixMillis,
    ) -> Result<String, TokenError> {
        let input = service_signing_input(k.kid(), p, client, scope, jti, now)?;
        Ok(signed(&input, &sign(k, &input)))
    }

    fn verified<'a>(
        token: &'a str,
        keys: &'a Keyset,
        now: UnixMillis,
    ) -> Result<UnverifiedAccess<'a>, TokenError> {
        let unverified = prepare_access(token, keys, now)?;
        let public = ed25519_compact::PublicKey::from_slice(unverified.key().public_bytes()).unwrap();
        let signature = ed25519_compact::Signature::from_slice(unverified.signature()).unwrap();
        public
            .verify(unverified.signed_part().as_bytes(), &signature)
            .map_err(|_| TokenError::BadSignature)?;
        Ok(unverified)
    }

    fn validate_access(
        t: &str,
        keys: &Keyset,
        p: &TokenPolicy,
        now: UnixMillis,
    ) -> Result<AccessClaims, TokenError> {
        accept_access(&verified(t, keys, now)?, p, now)
    }

    fn validate_service(
        t: &str,
        keys: &Keyset,
        p: &TokenPolicy,
        now: UnixMillis,
    ) -> Result<ServiceClaims, TokenError> {
        accept_service(&verified(t, keys, now)?, p, now)
    }

    fn policy() -> TokenPolicy {
        TokenPolicy { issuer: "edge".into(), audience: "api".into(), ttl_secs: 900, leeway_secs: 30 }
    }

    fn subject() -> Subject<'static> {
        Subject { user_id: "usr_1", tier: "premium", role: "user", session_id: None, org: None }
    }

    fn issue(k: &SigningKey, p: &TokenPolicy, now: UnixMillis) -> String {
        issue_access(k, p, &subject(), "jti-1", now).unwrap()
    }

    fn keyset(k: &SigningKey) -> Keyset {
        Keyset::new(vk(k), vec![])
    }

    #[test]
    fn a_token_round_trips() {
        let k = key("k1", 1);
        let claims = validate_access(&issue(&k, &policy(), NOW), &keyset(&k), &policy(), NOW).unwrap();
        assert_eq!(
            claims,
            AccessClaims {
                iss: "edge".into(),
                aud: "api".into(),
                sub: "usr_1".into(),
                jti: "jti-1".into(),
                typ: "access".into(),
                tier: "premium".into(),
                role: "user".into(),
                sid: None,
                org: None,
            }
        );
    }

    #[test]
    fn a_members_token_names_the_organization() {
        let k = key("k1", 1);
        let subject = Subject { org: Some("org_1"), ..subject() };
        let token = issue_access(&k, &policy(), &subject, "jti-1", NOW).unwrap();
        let claims = validate_access(&token, &keyset(&k), &policy(), NOW).unwrap();
        assert_eq!(claims.org.as_deref(), Some("org_1"));
        // Without an organization the claim is absent, not null.
        let plain = issue(&k, &policy(), NOW);
        let payload = plain.split('.').nth(1).unwrap();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(!json.contains("\"org\""), "{json}");
    }

    #[test]
    fn expiry_and_maturity_use_the_leeway() {
        let k = key("k1", 1);
        let token = issue(&k, &policy(), NOW);
        let at = |secs: u64| UnixMillis(NOW.0 + secs * 1000);
        assert!(validate_access(&token, &keyset(&k), &policy(), at(900 + 30)).is_ok());
        assert_eq!(validate_access(&token, &keyset(&k), &policy(), at(900 + 31)), Err(TokenError::Expired));
        let early = UnixMillis(NOW.0 - 31_000);
        assert_eq!(validate_access(&token, &keyset(&k), &policy(), early), Err(TokenError::NotYetValid));
        assert!(validate_access(&token, &keyset(&k), &policy(), UnixMillis(NOW.0 - 30_000)).is_ok());
    }

    #[test]
    fn issuer_audience_and_lifetime_are_enforced() {
        let k = key("k1", 1);
        let token = issue(&k, &policy(), NOW);
        let other_iss = TokenPolicy { issuer: "other".into(), ..policy() };
        assert_eq!(validate_access(&token, &keyset(&k), &other_iss, NOW), Err(TokenError::WrongIssuer));
        let other_aud = TokenPolicy { audience: "other".into(), ..policy() };
        assert_eq!(validate_access(&token, &keyset(&k), &other_aud, NOW), Err(TokenError::WrongAudience));
        let long = TokenPolicy { ttl_secs: 901, ..policy() };
        assert_eq!(issue_access(&k, &long, &subject(), "j", NOW), Err(TokenError::LifetimeTooLong));
    }

    #[test]
    fn tampering_and_foreign_keys_are_refused() {
        let k = key("k1", 1);
        let token = issue(&k, &policy(), NOW);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let text = String::from_utf8(payload.clone()).unwrap().replace("\"user\"", "\"admin\"");
        payload = text.into_bytes();
        parts[1] = URL_SAFE_NO_PAD.encode(payload);
        let tampered = parts.join(".");
        assert_eq!(validate_access(&tampered, &keyset(&k), &policy(), NOW), Err(TokenError::BadSignature));

        // Same kid, another key: the signature does not verify.
        let impostor = issue(&key("k1", 2), &policy(), NOW);
        assert_eq!(validate_access(&impostor, &keyset(&k), &policy(), NOW), Err(TokenError::BadSignature));
        // A kid the edge does not know.
        let unknown = issue(&key("k9", 2), &policy(), NOW);
        assert_eq!(validate_access(&unknown, &keyset(&k), &policy(), NOW), Err(TokenError::UnknownKey));
        assert_eq!(validate_access("not.a.jwt", &keyset(&k), &policy(), NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn algorithm_swaps_are_refused() {
        let k = key("k1", 1);
        let token = issue(&k, &policy(), NOW);
        let payload = token.split('.').nth(1).unwrap().to_owned();

        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1","typ":"at+jwt"}"#);
        let none = format!("{none_header}.{payload}.");
        assert_eq!(
            validate_access(&none, &keyset(&k), &policy(), NOW),
            Err(TokenError::AlgorithmNotAllowed("none".into()))
        );

        // HS256 keyed with the public key's bytes: the classic confusion attack.
        let hs_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"k1","typ":"at+jwt"}"#);
        let signing_input = format!("{hs_header}.{payload}");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(vk(&k).key.as_ref()).unwrap();
        mac.update(signing_input.as_bytes());
        let hs = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
        assert_eq!(
            validate_access(&hs, &keyset(&k), &policy(), NOW),
            Err(TokenError::AlgorithmNotAllowed("HS256".into()))
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_while_their_key_is_listed() {
        let old = key("k1", 1);
        let new = key("k2", 2);
        let token = issue(&old, &policy(), NOW);
        let retired = vk(&old).expiring_at(NOW.0 / 1000 + 900);
        let during = Keyset::new(vk(&new), vec![retired.clone()]);
        assert!(validate_access(&token, &during, &policy(), NOW).is_ok());
        let after = Keyset::new(vk(&new), vec![]);
        assert_eq!(validate_access(&token, &after, &policy(), NOW), Err(TokenError::UnknownKey));
        let jwks = serde_json::to_value(during.jwks()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][1]["exp"], NOW.0 / 1000 + 900);
        let previous = json!({ "keys": [jwks["keys"][1].clone()] });
        assert_eq!(Keyset::parse_previous(&previous.to_string()).unwrap(), vec![retired]);
    }

    #[test]
    fn a_retired_key_is_refused_from_its_expiry() {
        let old = key("k1", 1);
        let new = key("k2", 2);
        let token = issue(&old, &policy(), NOW);
        let expiry = NOW.0 / 1000 + 60;
        let keys = Keyset::new(vk(&new), vec![vk(&old).expiring_at(expiry)]);
        let just_before = UnixMillis(expiry * 1000 - 1);
        assert!(validate_access(&token, &keys, &policy(), just_before).is_ok());
        assert_eq!(
            validate_access(&token, &keys, &policy(), UnixMillis(expiry * 1000)),
            Err(TokenError::RetiredKey)
        );
        // The current key never expires this way.
        let current = issue(&new, &policy(), UnixMillis(expiry * 1000));
        assert!(validate_access(&current, &keys, &policy(), UnixMillis(expiry * 1000)).is_ok());
    }

    #[test]
    fn previous_keys_must_carry_an_expiry() {
        let jwk = vk(&key("k1", 1)).to_jwk();
        assert_eq!(Keyset::parse_previous(&json!([jwk]).to_string()), Err(KeyError::NoExpiry("k1".into())));
        let mut with_text_exp = jwk.clone();
        with_text_exp["exp"] = json!("tomorrow");
        assert!(matches!(
            Keyset::parse_previous(&json!([with_text_exp]).to_string()),
            Err(KeyError::BadJwk(_))
        ));
        let mut with_exp = jwk;
        with_exp["exp"] = json!(1_700_000_900u64);
        let parsed = Keyset::parse_previous(&json!({ "keys": [with_exp] }).to_string()).unwrap();
        assert_eq!(parsed[0].expires(), Some(1_700_000_900));
    }

    #[test]
    fn only_at_jwt_header_types_are_accepted() {
        let k = key("k1", 1);
        let token = issue(&k, &policy(), NOW);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Re-sign the same claims under headers of another type, or of none.
        let claims_b64 = parts[1].clone();
        for header in
            [json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}), json!({"alg": "EdDSA", "kid": "k1"})]
        {
            let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
            let input = format!("{header_b64}.{claims_b64}");
            let sig = sign(&k, &input);
            parts = vec![header_b64, claims_b64.clone(), URL_SAFE_NO_PAD.encode(sig)];
            assert_eq!(
                validate_access(&parts.join("."), &keyset(&k), &policy(), NOW),
                Err(TokenError::WrongHeaderType),
                "{header}"
            );
        }
    }

    #[test]
    fn service_and_user_tokens_are_never_taken_for_each_other() {
        let k = key("k1", 1);
        let client = "svc_0123456789abcdef0123456789abcdef";
        let service = issue_service(&k, &policy(), client, "usage:write", "j", NOW).unwrap();
        let claims = validate_service(&service, &keyset(&k), &policy(), NOW).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.scope.as_str(), claims.typ.as_str()),
            (client, "usage:write", "service")
        );
        assert_eq!(claimed_type(&service).as_deref(), Some("service"));
        // Its claims are not an access token's: refused before any of them is read.
        assert_eq!(validate_access(&service, &keyset(&k), &policy(), NOW), Err(TokenError::Malformed));
        let user = issue(&k, &policy(), NOW);
        assert_eq!(claimed_type(&user).as_deref(), Some("access"));
        assert!(validate_service(&user, &keyset(&k), &policy(), NOW).is_err());
        let late = UnixMillis(NOW.0 + 931_000);
        assert_eq!(validate_service(&service, &keyset(&k), &policy(), late), Err(TokenError::Expired));
        let impostor = issue_service(&key("k1", 2), &policy(), client, "usage:write", "j", NOW).unwrap();
        assert_eq!(validate_service(&impostor, &keyset(&k), &policy(), NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn the_jwk_of_the_rfc8032_test_key_is_exact() {
        // RFC 8032 §7.1, test 1: this seed's public key is d75a9801…07511a.
        let k = SigningKey::from_seed_b64("k1", "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=").unwrap();
        let jwk = vk(&k).to_jwk();
        assert_eq!(
            jwk,
            json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA","use":"sig"})
        );
        assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap(), vk(&k));
        assert_eq!(
            SigningKey::from_seed_b64("k1", &STANDARD.encode([0u8; 32])).err(),
            Some(KeyError::BadSeed)
        );
        assert_eq!(
            SigningKey::from_seed_b64("bad kid!", "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=").err(),
            Some(KeyError::BadKid)
        );
    }

    #[test]
    fn the_pkcs8_form_of_the_rfc8410_example_key_is_exact() {
        // RFC 8410 §10.3: the private key whose seed is d4ee72db…44755842.
        let seed = "1O5y2/kTWErVttjx92n4rTr+fCjL8dT74Jeoj0R1WEI=";
        let k = SigningKey::from_seed_b64("k1", seed).unwrap();
        assert_eq!(
            STANDARD.encode(k.pkcs8_der()),
            "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC"
        );
    }

    #[test]
    fn a_token_without_expiry_or_issue_time_is_malformed() {
        let k = key("k1", 1);
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}"#);
        let claims = |extra: &str| {
            URL_SAFE_NO_PAD.encode(format!(
                r#"{{"iss":"edge","aud":"api","sub":"usr_1","jti":"j","typ":"access","tier":"free","role":"user"{extra}}}"#
            ))
        };
        let at = NOW.0 / 1000;
        for extra in [
            format!(r#","iat":{at}"#),
            format!(r#","exp":{}"#, at + 60),
            format!(r#","iat":{at},"exp":{}.5"#, at + 60),
        ] {
            let input = format!("{header}.{}", claims(&extra));
            let token = signed(&input, &sign(&k, &input));
            assert_eq!(
                validate_access(&token, &keyset(&k), &policy(), NOW),
                Err(TokenError::Malformed),
                "{extra}"
            );
        }
        let input = format!("{header}.{}", claims(&format!(r#","iat":{at},"exp":{}"#, at + 60)));
        let token = signed(&input, &sign(&k, &input));
        assert!(validate_access(&token, &keyset(&k), &policy(), NOW).is_ok());
    }
}
