//! Every binding, variable and secret name of the Worker, and the typed configuration read
//! from them once per request. Nothing else in the edge names a binding.

use domain::signing::SharedSecret;
use worker::Env;

/// `[vars]`: the origin's base URL, e.g. `https://origin.example.com`. It must be `https://`
/// unless its host is a loopback address (`domain::net::check_origin_url`).
pub const VAR_ORIGIN_URL: &str = "ORIGIN_URL";
/// Secret: the hex-encoded secret the edge signs origin requests with (`.dev.vars` locally,
/// `wrangler secret put ORIGIN_SHARED_SECRET` in production).
pub const SECRET_ORIGIN_SHARED: &str = "ORIGIN_SHARED_SECRET";

/// KV namespace: cached profile JSON with its version (a cache; the origin is the truth).
pub const KV_PROFILES: &str = "PROFILES";
/// Workers Queue: behavioural events on their way to the origin (see `events.rs`).
pub const QUEUE_EVENTS: &str = "EVENTS";
/// Durable Object namespace: one gate per user (see `gate.rs`).
pub const DO_GATE: &str = "GATE";
/// Workers Analytics Engine dataset: one data point per admission decision (see `metrics.rs`).
pub const AE_EDGE_ANALYTICS: &str = "EDGE_ANALYTICS";
/// How often (seconds) an isolate ships its metric aggregate to the origin; default 10.
pub const VAR_EDGE_METRICS_FLUSH_SECS: &str = "EDGE_METRICS_FLUSH_SECS";
pub const DEFAULT_EDGE_METRICS_FLUSH_SECS: u64 = 10;

/// The metric aggregate's flush interval in milliseconds (an unreadable value: the default).
pub fn metrics_flush_ms(env: &Env) -> u64 {
    text(env, VAR_EDGE_METRICS_FLUSH_SECS)
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_EDGE_METRICS_FLUSH_SECS)
        .saturating_mul(1000)
}

/// Secret: the Ed25519 seed (32 bytes, standard base64) that signs access tokens.
pub const SECRET_JWT_SIGNING_KEY: &str = "JWT_SIGNING_KEY";
/// The signing key's id, published in the JWKS and in every token's header.
pub const VAR_JWT_SIGNING_KID: &str = "JWT_SIGNING_KID";
/// Optional: public keys of previous signing keys (a JWKS or an array of JWKs), still trusted
/// during a rotation. Each JWK must carry `exp` (Unix seconds): from then on its tokens are
/// refused, so a retired key is trusted for the lifetime of the tokens it signed, not for ever.
pub const VAR_JWT_PREVIOUS_KEYS: &str = "JWT_PREVIOUS_KEYS";
/// The `iss` and `aud` of access tokens.
pub const VAR_JWT_ISSUER: &str = "JWT_ISSUER";
pub const VAR_JWT_AUDIENCE: &str = "JWT_AUDIENCE";
/// Access-token lifetime in seconds (at most 900).
pub const VAR_ACCESS_TOKEN_TTL_SECS: &str = "ACCESS_TOKEN_TTL_SECS";

pub const DEFAULT_JWT_ISSUER: &str = "user-management-edge";
pub const DEFAULT_JWT_AUDIENCE: &str = "user-management-api";
/// Clock skew tolerated on `exp` and `nbf`.
pub const TOKEN_LEEWAY_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the Worker variable or secret {0} is not set")]
    Missing(&'static str),
    #[error("the Worker variable or secret {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// What the edge needs to reach the origin.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub base_url: String,
    pub secret: SharedSecret,
}

impl OriginConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let base_url = env
            .var(VAR_ORIGIN_URL)
            .map(|v| v.to_string())
            .map_err(|_| ConfigError::Missing(VAR_ORIGIN_URL))?;
        domain::net::check_origin_url(&base_url)
            .map_err(|e| ConfigError::Invalid { var: VAR_ORIGIN_URL, reason: e.to_string() })?;
        let secret_hex = env
            .secret(SECRET_ORIGIN_SHARED)
            .map(|v| v.to_string())
            .map_err(|_| ConfigError::Missing(SECRET_ORIGIN_SHARED))?;
        let bytes = hex::decode(secret_hex.trim()).map_err(|e| ConfigError::Invalid {
            var: SECRET_ORIGIN_SHARED,
            reason: format!("not hex ({e})"),
        })?;
        let secret = SharedSecret::new(&bytes)
            .map_err(|e| ConfigError::Invalid { var: SECRET_ORIGIN_SHARED, reason: e.to_string() })?;
        Ok(Self { base_url: base_url.trim_end_matches('/').to_owned(), secret })
    }
}

/// A variable or secret as a string, if set.
fn text(env: &Env, name: &str) -> Option<String> {
    env.secret(name).map(|v| v.to_string()).or_else(|_| env.var(name).map(|v| v.to_string())).ok()
}

/// Token keys and policy.
pub struct AuthConfig {
    pub signing: domain::token::SigningKey,
    pub previous: Vec<domain::token::VerifyingKey>,
    pub policy: domain::token::TokenPolicy,
}

impl AuthConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let seed = text(env, SECRET_JWT_SIGNING_KEY).ok_or(ConfigError::Missing(SECRET_JWT_SIGNING_KEY))?;
        let kid = text(env, VAR_JWT_SIGNING_KID).ok_or(ConfigError::Missing(VAR_JWT_SIGNING_KID))?;
        let signing = domain::token::SigningKey::from_seed_b64(&kid, &seed)
            .map_err(|e| ConfigError::Invalid { var: SECRET_JWT_SIGNING_KEY, reason: e.to_string() })?;
        let previous = match text(env, VAR_JWT_PREVIOUS_KEYS).filter(|t| !t.trim().is_empty()) {
            Some(json) => domain::token::Keyset::parse_previous(&json)
                .map_err(|e| ConfigError::Invalid { var: VAR_JWT_PREVIOUS_KEYS, reason: e.to_string() })?,
            None => Vec::new(),
        };
        let ttl_secs = match text(env, VAR_ACCESS_TOKEN_TTL_SECS) {
            Some(t) => {
                t.parse::<u64>().ok().filter(|s| (1..=domain::token::MAX_TTL_SECS).contains(s)).ok_or(
                    ConfigError::Invalid {
                        var: VAR_ACCESS_TOKEN_TTL_SECS,
                        reason: "must be 1 to 900".into(),
                    },
                )?
            }
            None => domain::token::MAX_TTL_SECS,
        };
        let policy = domain::token::TokenPolicy {
            issuer: text(env, VAR_JWT_ISSUER).unwrap_or_else(|| DEFAULT_JWT_ISSUER.into()),
            audience: text(env, VAR_JWT_AUDIENCE).unwrap_or_else(|| DEFAULT_JWT_AUDIENCE.into()),
            ttl_secs,
            leeway_secs: TOKEN_LEEWAY_SECS,
        };
        Ok(Self { signing, previous, policy })
    }
}

/// The rolling window of the per-user limit: its length and how many buckets cut it.
pub const VAR_RATE_LIMIT_WINDOW_SECS: &str = "RATE_LIMIT_WINDOW_SECS";
pub const VAR_RATE_LIMIT_BUCKETS: &str = "RATE_LIMIT_BUCKETS";
/// Optional JSON object overriding tier quotas (`{"premium": 300}`), for staging and tests;
/// production leaves it unset and the quotas come from the tier templates.
pub const VAR_RATE_LIMIT_QUOTAS: &str = "RATE_LIMIT_QUOTAS";
/// Per-client-IP limits of the unauthenticated endpoints.
pub const VAR_IP_LOGIN_PER_MINUTE: &str = "IP_LOGIN_PER_MINUTE";
pub const VAR_IP_SIGNUP_PER_HOUR: &str = "IP_SIGNUP_PER_HOUR";
pub const VAR_IP_REFRESH_PER_MINUTE: &str = "IP_REFRESH_PER_MINUTE";
/// Per-client-IP limit of account recovery (forgot/reset password, email verification).
pub const VAR_IP_RECOVERY_PER_HOUR: &str = "IP_RECOVERY_PER_HOUR";
/// Per-client-IP limit of `GET /health` (public, and a cache miss calls the origin).
pub const VAR_IP_HEALTH_PER_MINUTE: &str = "IP_HEALTH_PER_MINUTE";
/// Per-user limit of tier changes (`POST /api/v1/users/{id}/upgrade`), apart from the quota.
pub const VAR_TIER_CHANGES_PER_HOUR: &str = "TIER_CHANGES_PER_HOUR";

pub const DEFAULT_IP_LOGIN_PER_MINUTE: u32 = 60;
pub const DEFAULT_IP_SIGNUP_PER_HOUR: u32 = 20;
pub const DEFAULT_IP_REFRESH_PER_MINUTE: u32 = 120;
pub const DEFAULT_IP_RECOVERY_PER_HOUR: u32 = 30;
pub const DEFAULT_IP_HEALTH_PER_MINUTE: u32 = 60;
pub const DEFAULT_TIER_CHANGES_PER_HOUR: u32 = 10;

/// How requests are limited.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub window_secs: u64,
    pub buckets: u32,
    pub quota_overrides: std::collections::BTreeMap<String, Option<u32>>,
    pub ip_login_per_minute: u32,
    pub ip_signup_per_hour: u32,
    pub ip_refresh_per_minute: u32,
    pub ip_recovery_per_hour: u32,
    pub ip_health_per_minute: u32,
    pub tier_changes_per_hour: u32,
}

impl RateLimitConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        fn number<T: std::str::FromStr>(env: &Env, var: &'static str, default: T) -> Result<T, ConfigError> {
            match text(env, var) {
                Some(t) => {
                    t.trim().parse().map_err(|_| ConfigError::Invalid { var, reason: "not a number".into() })
                }
                None => Ok(default),
            }
        }
        let window_secs: u64 = number(env, VAR_RATE_LIMIT_WINDOW_SECS, 3600)?;
        let buckets: u32 = number(env, VAR_RATE_LIMIT_BUCKETS, 60)?;
        if window_secs == 0 || buckets == 0 || buckets > 3600 {
            return Err(ConfigError::Invalid {
                var: VAR_RATE_LIMIT_BUCKETS,
                reason: "the window and the bucket count must be positive (at most 3600 buckets)".into(),
            });
        }
        let quota_overrides = match text(env, VAR_RATE_LIMIT_QUOTAS).filter(|t| !t.trim().is_empty()) {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| ConfigError::Invalid { var: VAR_RATE_LIMIT_QUOTAS, reason: e.to_string() })?,
            None => Default::default(),
        };
        Ok(Self {
            window_secs,
            buckets,
            quota_overrides,
            ip_login_per_minute: number(env, VAR_IP_LOGIN_PER_MINUTE, DEFAULT_IP_LOGIN_PER_MINUTE)?,
            ip_signup_per_hour: number(env, VAR_IP_SIGNUP_PER_HOUR, DEFAULT_IP_SIGNUP_PER_HOUR)?,
            ip_refresh_per_minute: number(env, VAR_IP_REFRESH_PER_MINUTE, DEFAULT_IP_REFRESH_PER_MINUTE)?,
            ip_recovery_per_hour: number(env, VAR_IP_RECOVERY_PER_HOUR, DEFAULT_IP_RECOVERY_PER_HOUR)?,
            ip_health_per_minute: number(env, VAR_IP_HEALTH_PER_MINUTE, DEFAULT_IP_HEALTH_PER_MINUTE)?,
            tier_changes_per_hour: number(env, VAR_TIER_CHANGES_PER_HOUR, DEFAULT_TIER_CHANGES_PER_HOUR)?,
        })
    }

    /// The per-user policy of `tier`: its quota from the templates unless overridden.
    pub fn user_policy(&self, tier: domain::tier::Tier) -> domain::rate_limit::Policy {
        let quota = self.quota_overrides.get(tier.as_str()).copied().unwrap_or_else(|| tier.hourly_quota());
        domain::rate_limit::Policy::rolling(self.window_secs, self.buckets, quota)
    }

    /// The per-address quotas, for `IpClass::window`.
    pub fn ip_quotas(&self) -> domain::rate_limit::IpQuotas {
        domain::rate_limit::IpQuotas {
            login_per_minute: self.ip_login_per_minute,
            signup_per_hour: self.ip_signup_per_hour,
            refresh_per_minute: self.ip_refresh_per_minute,
            recovery_per_hour: self.ip_recovery_per_hour,
            health_per_minute: self.ip_health_per_minute,
        }
    }
}

/// How long a rotated refresh token still answers with the pair that replaced it (seconds).
pub const VAR_REFRESH_REUSE_GRACE_SECS: &str = "REFRESH_REUSE_GRACE_SECS";

pub fn refresh_grace_ms(env: &Env) -> u64 {
    text(env, VAR_REFRESH_REUSE_GRACE_SECS)
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map_or(domain::session::DEFAULT_REUSE_GRACE_MS, |s| s.saturating_mul(1000))
}
