//! The KV cache of profiles: `profile:<keyed hash of the user id>` → `{"version": n,
//! "profile": {...}}`. The key is an HMAC of the id under the edge's secret, so KV's key list
//! (and whatever copies of it a store keeps after a delete) names no user: an erased user's
//! entry is deleted, and what may linger of its key cannot be tied to the id without the secret.
//!
//! KV is eventually consistent and a cache only: a cached entry is served only when its version
//! is at least the one the user's gate has recorded (see `gate.rs`); otherwise the origin
//! answers and the cache is refreshed. Nothing secret is ever written here (the origin's user
//! view carries no password hash, no MFA secret).

use serde::{Deserialize, Serialize};
use worker::{Env, Result};

use crate::bindings::{OriginConfig, KV_PROFILES};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedProfile {
    pub version: u64,
    /// The origin's user view, as it wrote it.
    pub profile: serde_json::Value,
}

/// How long a cached profile lives in KV.
const CACHE_TTL_SECS: u64 = 7 * 24 * 60 * 60;

fn key(env: &Env, user_id: &str) -> Result<String> {
    // The keyed HMAC is built once per isolate (the secret does not change while it lives).
    static SECRET: std::sync::OnceLock<domain::signing::SharedSecret> = std::sync::OnceLock::new();
    let secret = match SECRET.get() {
        Some(secret) => secret,
        None => {
            let config = OriginConfig::from_env(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
            SECRET.get_or_init(|| config.secret)
        }
    };
    // A label keeps this use of the secret apart from request signing.
    Ok(format!("profile:{}", secret.hmac_hex(format!("kv-profile-key\0{user_id}").as_bytes())))
}

/// A cached entry as it is read: the profile's JSON text is served as stored, never parsed
/// into a tree and written out again.
#[derive(Debug, Deserialize)]
pub struct CachedText {
    pub version: u64,
    pub profile: Box<serde_json::value::RawValue>,
}

pub async fn get(env: &Env, user_id: &str) -> Result<Option<CachedText>> {
    let text = env.kv(KV_PROFILES)?.get(&key(env, user_id)?).text().await?;
    // An entry that does not parse (an older format, say) is a miss, not an error.
    Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
}

pub async fn put(env: &Env, user_id: &str, entry: &CachedProfile) -> Result<()> {
    // Stored as a string: KV's JSON path would store a serde_json::Value as "{}".
    let text = serde_json::to_string(entry)?;
    // Entries expire after a week (one origin read to refill): an entry orphaned by a rotation
    // of the secret its key is derived from cannot outlive it for long.
    env.kv(KV_PROFILES)?
        .put_bytes(&key(env, user_id)?, text.as_bytes())?
        .expiration_ttl(CACHE_TTL_SECS)
        .execute()
        .await?;
    Ok(())
}

/// Deletes a user's entry (their erasure).
pub async fn delete(env: &Env, user_id: &str) -> Result<()> {
    env.kv(KV_PROFILES)?.delete(&key(env, user_id)?).await?;
    Ok(())
}
