//! Password hashing: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1), stored
//! as PHC strings. Hashing is CPU-heavy by design, so callers run it on the blocking pool.
//!
//! An unknown email is verified against a dummy hash made at start-up, so that it costs the
//! same time as a wrong password and the two cannot be told apart by timing.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes an already NFKC-normalised password into a PHC string.
pub fn hash(normalised: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(normalised.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `normalised` matches the PHC string `phc`. A malformed stored hash never matches.
pub fn verify(normalised: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let Ok(hasher) = argon2() else { return false };
    hasher.verify_password(normalised.as_bytes(), &parsed).is_ok()
}

/// A hash of a random password nobody knows, with the same parameters as real ones.
pub fn dummy_hash() -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    hash(salt.as_str())
}

/// Normalises (NFKC) and hashes `raw` on the blocking pool.
pub async fn hash_blocking(raw: &str) -> Result<String, HashError> {
    let normalised = domain::password::normalize_password(raw);
    tokio::task::spawn_blocking(move || hash(&normalised)).await.map_err(|e| HashError(e.to_string()))?
}

/// Normalises (NFKC) `raw` and checks it against `phc` on the blocking pool.
pub async fn verify_blocking(raw: &str, phc: String) -> bool {
    let normalised = domain::password::normalize_password(raw);
    tokio::task::spawn_blocking(move || verify(&normalised, &phc)).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_owasp_parameters() {
        let phc = hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery staple", &phc));
        assert!(!verify("correct horse battery stapl", &phc));
        assert!(!verify("anything", "not a phc string"));
        assert!(!verify("anything", &dummy_hash().unwrap()));
    }
}
