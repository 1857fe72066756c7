//! Every binding, variable and secret name of the Worker, and the typed configuration read
//! from them once per request. Nothing else in the edge names a binding.

use domain::signing::SharedSecret;
use worker::Env;

/// `[vars]`: the origin's base URL, e.g. `https://origin.example.com`.
pub const VAR_ORIGIN_URL: &str = "ORIGIN_URL";
/// Secret: the hex-encoded secret the edge signs origin requests with (`.dev.vars` locally,
/// `wrangler secret put ORIGIN_SHARED_SECRET` in production).
pub const SECRET_ORIGIN_SHARED: &str = "ORIGIN_SHARED_SECRET";

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
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                var: VAR_ORIGIN_URL,
                reason: "must be an http(s) URL".into(),
            });
        }
        let secret_hex = env
            .secret(SECRET_ORIGIN_SHARED)
            .map(|v| v.to_string())
            .map_err(|_| ConfigError::Missing(SECRET_ORIGIN_SHARED))?;
        let bytes = hex::decode(secret_hex.trim()).map_err(|e| ConfigError::Invalid {
            var: SECRET_ORIGIN_SHARED,
            reason: format!("not hex ({e})"),
        })?;
        let secret = SharedSecret::new(&bytes).map_err(|e| ConfigError::Invalid {
            var: SECRET_ORIGIN_SHARED,
            reason: e.to_string(),
        })?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret,
        })
    }
}
