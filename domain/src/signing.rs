//! Signed edge → origin requests. The origin serves nothing unsigned except its health probe.
//!
//! A signature is HMAC-SHA256, under a secret both sides hold, over a canonical string of the
//! method, the path with its query, the actor, the timestamp, a nonce and the SHA-256 of the body. The
//! origin refuses a timestamp further than [`MAX_SKEW_MS`] from its own clock and a nonce it has
//! already seen (it remembers nonces for twice that window, which is the replay check's half that
//! needs storage and so lives at the origin).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::time::UnixMillis;

/// Milliseconds since the Unix epoch at which the edge signed the request.
pub const HEADER_TIMESTAMP: &str = "x-edge-timestamp";
/// 128 random bits in hex, unique per request; the origin refuses a nonce it has seen.
pub const HEADER_NONCE: &str = "x-edge-nonce";
/// On whose behalf the edge calls (`domain::identity::Actor`'s text form); signed.
pub const HEADER_ACTOR: &str = "x-edge-actor";
/// Hex HMAC-SHA256 of the canonical string.
pub const HEADER_SIGNATURE: &str = "x-edge-signature";

/// On an origin answer to a signed request: hex HMAC-SHA256 over the answer's status, the
/// SHA-256 of its body and the request's nonce (see [`SignedResponse`]).
pub const HEADER_RESPONSE_SIGNATURE: &str = "x-origin-signature";

/// How far a request's timestamp may be from the verifier's clock, either way.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// How long a verifier must remember a nonce: any request older than this is refused as stale
/// anyway, so a longer memory would buy nothing.
pub const NONCE_RETENTION_MS: u64 = 2 * MAX_SKEW_MS;

/// The shortest secret accepted: 32 bytes, the HMAC-SHA256 block's security level.
pub const MIN_SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The secret the edge and the origin share, kept as a keyed HMAC ready to clone. Never printed.
#[derive(Clone)]
pub struct SharedSecret(HmacSha256);

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the shared secret must be at least {MIN_SECRET_LEN} bytes, got {0}")]
    TooShort(usize),
}

impl SharedSecret {
    pub fn new(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(bytes.len()));
        }
        // HMAC takes keys of any length; the error arm is there for the type, not for a case.
        HmacSha256::new_from_slice(bytes).map(Self).map_err(|_| SecretError::TooShort(bytes.len()))
    }

    fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }

    /// HMAC-SHA256 of `message` under this secret, in hex.
    pub fn hmac_hex(&self, message: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The three header values a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub timestamp: UnixMillis,
    pub nonce: String,
    pub signature: String,
}

/// What a request is signed over, in the order the canonical string lists it.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path with its query string, exactly as sent (`/internal/users?x=1`).
    pub path_and_query: &'a str,
    /// The actor header's value (`anonymous`, `system`, `user:<id>:<role>`).
    pub actor: &'a str,
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    /// The canonical string: one field a line, the body as its SHA-256 in hex, so the string
    /// stays short and a body cannot smuggle a line break into another field.
    pub fn canonical_string(&self, timestamp: UnixMillis, nonce: &str) -> String {
        let body_hash = hex::encode(Sha256::digest(self.body));
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method.to_ascii_uppercase(),
            self.path_and_query,
            self.actor,
            timestamp.0,
            nonce,
            body_hash
        )
    }

    /// Signs the request at `now` with `nonce` (the caller draws it from a CSPRNG).
    pub fn sign(&self, secret: &SharedSecret, now: UnixMillis, nonce: &str) -> Signature {
        let mut mac = secret.mac();
        mac.update(self.canonical_string(now, nonce).as_bytes());
        Signature {
            timestamp: now,
            nonce: nonce.to_owned(),
            signature: hex::encode(mac.finalize().into_bytes()),
        }
    }

    /// Checks the signature and the timestamp. Replays are the caller's to refuse: it must
    /// remember `nonce` for [`NONCE_RETENTION_MS`] after this returns `Ok`.
    pub fn verify(
        &self,
        secret: &SharedSecret,
        headers: &RawSignatureHeaders<'_>,
        now: UnixMillis,
    ) -> Result<Signature, SignatureError> {
        let timestamp = headers
            .timestamp
            .ok_or(SignatureError::Missing(HEADER_TIMESTAMP))?
            .parse::<u64>()
            .map(UnixMillis)
            .map_err(|_| SignatureError::Malformed(HEADER_TIMESTAMP))?;
        let nonce = headers.nonce.ok_or(SignatureError::Missing(HEADER_NONCE))?;
        if nonce.len() < 16 || nonce.len() > 64 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SignatureError::Malformed(HEADER_NONCE));
        }
        let given = headers
            .signature
            .ok_or(SignatureError::Missing(HEADER_SIGNATURE))
            .and_then(|s| hex::decode(s).map_err(|_| SignatureError::Malformed(HEADER_SIGNATURE)))?;

        let mut mac = secret.mac();
        mac.update(self.canonical_string(timestamp, nonce).as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&given).map_err(|_| SignatureError::Mismatch)?;

        // The skew is checked after the MAC so that an attacker learns nothing about the
        // verifier's clock from unsigned probes.
        let skew = timestamp.distance_ms(now);
        if skew > MAX_SKEW_MS {
            return Err(SignatureError::Stale { skew_ms: skew });
        }
        Ok(Signature { timestamp, nonce: nonce.to_owned(), signature: hex::encode(given) })
    }
}

/// An origin answer as it is signed: the origin signs every answer to a signed request, so the
/// edge can tell an answer of the origin from one forged on the way (a network attacker could
/// otherwise answer a login with `role: admin`).
///
/// The canonical string starts with a label no request's canonical string can start with (a
/// request's first line is its method), so an answer's signature is never a valid request
/// signature, nor the reverse. It binds the answer to its request through the request's nonce,
/// which the edge drew at random and which the origin accepts once only: an answer recorded
/// from another request cannot be replayed.
#[derive(Debug, Clone, Copy)]
pub struct SignedResponse<'a> {
    pub status: u16,
    /// The nonce of the request this answers (its `x-edge-nonce`).
    pub request_nonce: &'a str,
    pub body: &'a [u8],
}

/// The first line of every answer's canonical string.
pub const RESPONSE_LABEL: &str = "origin-response-v1";

impl SignedResponse<'_> {
    pub fn canonical_string(&self) -> String {
        let body_hash = hex::encode(Sha256::digest(self.body));
        format!("{RESPONSE_LABEL}\n{}\n{}\n{}", self.status, self.request_nonce, body_hash)
    }

    /// The signature the origin sends in [`HEADER_RESPONSE_SIGNATURE`], in hex.
    pub fn sign(&self, secret: &SharedSecret) -> String {
        secret.hmac_hex(self.canonical_string().as_bytes())
    }

    /// Checks an answer's signature header (absent: `None`), in constant time.
    pub fn verify(&self, secret: &SharedSecret, signature: Option<&str>) -> Result<(), SignatureError> {
        let given = signature.ok_or(SignatureError::Missing(HEADER_RESPONSE_SIGNATURE)).and_then(|s| {
            hex::decode(s.trim()).map_err(|_| SignatureError::Malformed(HEADER_RESPONSE_SIGNATURE))
        })?;
        let mut mac = secret.mac();
        mac.update(self.canonical_string().as_bytes());
        mac.verify_slice(&given).map_err(|_| SignatureError::Mismatch)
    }
}

/// The signature headers as they arrived, each possibly absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawSignatureHeaders<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request carries no {0} header")]
    Missing(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("the signature does not match the request")]
    Mismatch,
    #[error("the request was signed {skew_ms} ms away from now, more than the {MAX_SKEW_MS} ms allowed")]
    Stale { skew_ms: u64 },
    #[error("the request's nonce was already used")]
    Replayed,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "00112233445566778899aabbccddeeff";

    fn secret() -> SharedSecret {
        SharedSecret::new(&[7u8; 32]).unwrap()
    }

    fn request(body: &[u8]) -> SignedRequest<'_> {
        SignedRequest { method: "POST", path_and_query: "/internal/ping?x=1", actor: "anonymous", body }
    }

    fn check(req: SignedRequest<'_>, sig: &Signature, now: UnixMillis) -> Result<Signature, SignatureError> {
        let ts = sig.timestamp.0.to_string();
        let headers = RawSignatureHeaders {
            timestamp: Some(&ts),
            nonce: Some(&sig.nonce),
            signature: Some(&sig.signature),
        };
        req.verify(&secret(), &headers, now)
    }

    #[test]
    fn a_signed_request_verifies() {
        let now = UnixMillis(1_700_000_000_000);
        let sig = request(b"{}").sign(&secret(), now, NONCE);
        assert_eq!(check(request(b"{}"), &sig, now).unwrap(), sig);
    }

    #[test]
    fn the_canonical_string_is_stable() {
        let s = request(b"").canonical_string(UnixMillis(5), NONCE);
        assert_eq!(
            s,
            "POST\n/internal/ping?x=1\nanonymous\n5\n00112233445566778899aabbccddeeff\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn any_change_breaks_the_signature() {
        let now = UnixMillis(1_700_000_000_000);
        let sig = request(b"{\"a\":1}").sign(&secret(), now, NONCE);
        assert_eq!(check(request(b"{\"a\":2}"), &sig, now), Err(SignatureError::Mismatch));
        let other_path = SignedRequest { path_and_query: "/internal/ping", ..request(b"{\"a\":1}") };
        assert_eq!(check(other_path, &sig, now), Err(SignatureError::Mismatch));
        let other_method = SignedRequest { method: "PUT", ..request(b"{\"a\":1}") };
        assert_eq!(check(other_method, &sig, now), Err(SignatureError::Mismatch));
        let other_actor = SignedRequest { actor: "system", ..request(b"{\"a\":1}") };
        assert_eq!(check(other_actor, &sig, now), Err(SignatureError::Mismatch));
        let mut later = sig.clone();
        later.timestamp = UnixMillis(now.0 + 1);
        assert_eq!(check(request(b"{\"a\":1}"), &later, now), Err(SignatureError::Mismatch));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let signed_at = UnixMillis(1_700_000_000_000);
        let sig = request(b"").sign(&secret(), signed_at, NONCE);
        let late = signed_at.saturating_add_ms(MAX_SKEW_MS + 1);
        assert_eq!(check(request(b""), &sig, late), Err(SignatureError::Stale { skew_ms: MAX_SKEW_MS + 1 }));
        let early = signed_at.saturating_sub_ms(MAX_SKEW_MS + 1);
        assert_eq!(check(request(b""), &sig, early), Err(SignatureError::Stale { skew_ms: MAX_SKEW_MS + 1 }));
        assert!(check(request(b""), &sig, signed_at.saturating_add_ms(MAX_SKEW_MS)).is_ok());
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let req = request(b"");
        let none = RawSignatureHeaders::default();
        assert_eq!(
            req.verify(&secret(), &none, UnixMillis(0)),
            Err(SignatureError::Missing(HEADER_TIMESTAMP))
        );
        let bad_ts = RawSignatureHeaders { timestamp: Some("soon"), ..none };
        assert_eq!(
            req.verify(&secret(), &bad_ts, UnixMillis(0)),
            Err(SignatureError::Malformed(HEADER_TIMESTAMP))
        );
        let bad_nonce =
            RawSignatureHeaders { timestamp: Some("1"), nonce: Some("xyz"), signature: Some("00") };
        assert_eq!(
            req.verify(&secret(), &bad_nonce, UnixMillis(0)),
            Err(SignatureError::Malformed(HEADER_NONCE))
        );
    }

    #[test]
    fn a_signed_answer_verifies_for_its_request_only() {
        let answer = SignedResponse { status: 200, request_nonce: NONCE, body: br#"{"role":"user"}"# };
        let signature = answer.sign(&secret());
        assert_eq!(answer.verify(&secret(), Some(&signature)), Ok(()));

        let other_nonce = SignedResponse { request_nonce: "ffeeddccbbaa99887766554433221100", ..answer };
        assert_eq!(other_nonce.verify(&secret(), Some(&signature)), Err(SignatureError::Mismatch));
        let other_status = SignedResponse { status: 201, ..answer };
        assert_eq!(other_status.verify(&secret(), Some(&signature)), Err(SignatureError::Mismatch));
        let altered = SignedResponse { body: br#"{"role":"admin"}"#, ..answer };
        assert_eq!(altered.verify(&secret(), Some(&signature)), Err(SignatureError::Mismatch));
        let other_secret = SharedSecret::new(&[8u8; 32]).unwrap();
        assert_eq!(answer.verify(&other_secret, Some(&signature)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn unsigned_and_garbled_answers_are_refused() {
        let answer = SignedResponse { status: 200, request_nonce: NONCE, body: b"{}" };
        assert_eq!(answer.verify(&secret(), None), Err(SignatureError::Missing(HEADER_RESPONSE_SIGNATURE)));
        assert_eq!(
            answer.verify(&secret(), Some("not hex")),
            Err(SignatureError::Malformed(HEADER_RESPONSE_SIGNATURE))
        );
        assert_eq!(answer.verify(&secret(), Some("00ff")), Err(SignatureError::Mismatch));
    }

    #[test]
    fn an_answer_signature_is_never_a_request_signature() {
        // Same nonce, same body: the label keeps the two kinds apart.
        let now = UnixMillis(1_700_000_000_000);
        let request = request(b"{}").sign(&secret(), now, NONCE);
        let answer = SignedResponse { status: 200, request_nonce: NONCE, body: b"{}" };
        assert_ne!(answer.sign(&secret()), request.signature);
        assert!(answer.canonical_string().starts_with(RESPONSE_LABEL));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(SharedSecret::new(&[1u8; 31]).err(), Some(SecretError::TooShort(31)));
    }
}
