//! The origin's configuration, read once from the environment at start. Nothing else in the
//! service reads an environment variable. Every error names the variable at fault.

use std::net::SocketAddr;

use base64::Engine;
use domain::signing::SharedSecret;

/// Where the origin listens.
pub const VAR_BIND: &str = "ORIGIN_BIND";
/// The database, as a URL: `sqlite://path/to/origin.db` (created when missing), or
/// `postgres://user@host:port/db` (an existing database; migrations are applied at start).
pub const VAR_DATABASE_URL: &str = "ORIGIN_DATABASE_URL";
/// The secret the edge signs its requests with, in hex (at least 32 bytes).
pub const VAR_SHARED_SECRET: &str = "ORIGIN_SHARED_SECRET";
/// The master key that wraps each user's data key: 32 bytes in standard base64.
pub const VAR_MASTER_KEY: &str = "ORIGIN_MASTER_KEY";
/// The master key's id, stored beside everything it wraps so that the key can rotate.
pub const VAR_MASTER_KEY_ID: &str = "ORIGIN_MASTER_KEY_ID";
/// Master keys retired by a rotation, still needed to read what they wrapped until
/// `origin rewrap-keys` has re-wrapped it: `id:base64[,id:base64...]`.
pub const VAR_PREVIOUS_MASTER_KEYS: &str = "ORIGIN_PREVIOUS_MASTER_KEYS";
/// Where the local sender appends the messages (one-time codes) it sends, as JSON lines.
pub const VAR_OUTBOX: &str = "ORIGIN_OUTBOX";
/// Email over SMTP instead of the local file: `smtp://[user:pass@]host:port` (plain, loopback
/// only), `smtp://…?tls=starttls`, or `smtps://…` (implicit TLS).
pub const VAR_SMTP_URL: &str = "ORIGIN_SMTP_URL";
/// The sender of emails (`Name <address>` or an address).
pub const VAR_SMTP_FROM: &str = "ORIGIN_SMTP_FROM";
/// SMS through a Twilio-compatible Messages API instead of the local file: the API's base URL
/// (`https://api.twilio.com`; plain http only to loopback), with the three below.
pub const VAR_SMS_URL: &str = "ORIGIN_SMS_URL";
pub const VAR_SMS_ACCOUNT_SID: &str = "ORIGIN_SMS_ACCOUNT_SID";
pub const VAR_SMS_AUTH_TOKEN: &str = "ORIGIN_SMS_AUTH_TOKEN";
/// The number (or sender id) texts come from.
pub const VAR_SMS_FROM: &str = "ORIGIN_SMS_FROM";
/// The public address of the service, for the links in emails (password reset, verification).
pub const VAR_PUBLIC_URL: &str = "ORIGIN_PUBLIC_URL";
/// Where the analytics and tier jobs write their reports.
pub const VAR_REPORTS_DIR: &str = "ORIGIN_REPORTS_DIR";
/// Where the scheduled provisioning picks up CSV/JSON files.
pub const VAR_INBOX_DIR: &str = "ORIGIN_INBOX_DIR";
/// How many days events are kept before the cleanup job removes them.
pub const VAR_EVENT_RETENTION_DAYS: &str = "ORIGIN_EVENT_RETENTION_DAYS";
/// Days between an owner's erasure request and the erasure (0: at the next cleanup run).
pub const VAR_ERASURE_GRACE_DAYS: &str = "ORIGIN_ERASURE_GRACE_DAYS";
/// The age under which an account is a minor's (personalisation and marketing start off).
pub const VAR_MINOR_AGE: &str = "ORIGIN_MINOR_AGE";
/// How long a request may take, in seconds, before the origin answers 503 instead.
pub const VAR_REQUEST_TIMEOUT_SECS: &str = "ORIGIN_REQUEST_TIMEOUT_SECS";
/// How many requests the origin handles at once; beyond it, it answers 503 at once (no queue).
pub const VAR_MAX_CONCURRENT_REQUESTS: &str = "ORIGIN_MAX_CONCURRENT_REQUESTS";
/// The WebAuthn relying party's id: the registrable domain the account page is served from
/// (`localhost` locally). Passkeys are bound to it.
pub const VAR_WEBAUTHN_RP_ID: &str = "ORIGIN_WEBAUTHN_RP_ID";
/// The web origin the account page runs at (`http://localhost:8787` locally; `https://…` in
/// production): WebAuthn answers made on another origin are refused.
pub const VAR_WEBAUTHN_ORIGIN: &str = "ORIGIN_WEBAUTHN_ORIGIN";

/// How many threads compute argon2 hashes (default: one per core).
pub const VAR_HASH_THREADS: &str = "ORIGIN_HASH_THREADS";
/// How many password checks may wait for a hashing thread before the next is refused with 503
/// (default: eight per thread).
pub const VAR_HASH_QUEUE: &str = "ORIGIN_HASH_QUEUE";

/// The bearer token `GET /metrics` requires (at least 16 characters). Unset: `/metrics` is off
/// (404), so a deployment never exposes its numbers by accident.
pub const VAR_METRICS_TOKEN: &str = "ORIGIN_METRICS_TOKEN";

pub const DEFAULT_BIND: &str = "127.0.0.1:8788";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/origin.db";
pub const DEFAULT_MASTER_KEY_ID: &str = "k1";
pub const DEFAULT_OUTBOX: &str = "data/outbox.jsonl";
pub const DEFAULT_SMTP_FROM: &str = "Music AI accounts <no-reply@localhost>";
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8787";
pub const DEFAULT_REPORTS_DIR: &str = "data/reports";
pub const DEFAULT_INBOX_DIR: &str = "data/inbox";
pub const DEFAULT_WEBAUTHN_RP_ID: &str = "localhost";
pub const DEFAULT_WEBAUTHN_ORIGIN: &str = "http://localhost:8787";
pub const DEFAULT_EVENT_RETENTION_DAYS: u64 = 365;
/// Far above any request's normal time (an argon2 verification is tens of milliseconds) and
/// above the edge's own wait for the origin (10 s, `src/origin_client.rs`), so no request the
/// edge still waits for is cut, while one it gave up on frees its slot within 30 s.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Above SQLite's useful write concurrency by far, yet a bound on the memory and blocking-pool
/// threads (argon2) a burst can take.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;

#[derive(Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: String,
    pub shared_secret: SharedSecret,
    pub master_key: MasterKey,
    /// Retired master keys, readable only (see [`VAR_PREVIOUS_MASTER_KEYS`]).
    pub previous_master_keys: Vec<MasterKey>,
    pub outbox_path: std::path::PathBuf,
    pub email_delivery: EmailDelivery,
    pub sms_delivery: SmsDelivery,
    pub public_url: String,
    pub reports_dir: std::path::PathBuf,
    pub inbox_dir: std::path::PathBuf,
    pub event_retention_days: u64,
    pub erasure_grace_days: u64,
    pub minor_under: u32,
    pub hash_threads: usize,
    pub hash_queue: usize,
    /// The longest a request may take (see [`VAR_REQUEST_TIMEOUT_SECS`]).
    pub request_timeout: std::time::Duration,
    /// The most requests handled at once (see [`VAR_MAX_CONCURRENT_REQUESTS`]).
    pub max_concurrent_requests: usize,
    /// The WebAuthn relying party id (see [`VAR_WEBAUTHN_RP_ID`]).
    pub webauthn_rp_id: String,
    /// The WebAuthn origin (see [`VAR_WEBAUTHN_ORIGIN`]).
    pub webauthn_origin: String,
    /// The token `/metrics` requires, if it is served (see [`VAR_METRICS_TOKEN`]).
    pub metrics_token: Option<MetricsToken>,
    /// The integration hub's providers (`ORIGIN_INTEGRATION_<ID>_*`, see `integrations::providers`).
    pub integrations: crate::integrations::providers::Providers,
}

/// Who carries emails.
#[derive(Clone, Debug)]
pub enum EmailDelivery {
    /// The local file (`ORIGIN_OUTBOX`).
    File,
    Smtp {
        endpoint: crate::delivery::SmtpEndpoint,
        from: String,
    },
}

/// Who carries texts.
#[derive(Clone)]
pub enum SmsDelivery {
    /// The local file (`ORIGIN_OUTBOX`).
    File,
    Http {
        base_url: String,
        account_sid: String,
        auth_token: String,
        from: String,
    },
}

/// The metrics scrape token. Never printed.
#[derive(Clone)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(..)")
    }
}

/// The data-encryption master key and its id. Never printed.
#[derive(Clone)]
pub struct MasterKey {
    pub id: String,
    pub bytes: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey {{ id: {:?}, .. }}", self.id)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("database_url", &self.database_url)
            .field("master_key", &self.master_key)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need no process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let bind_raw = lookup(VAR_BIND).unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind = bind_raw.parse().map_err(|e| ConfigError::Invalid {
            var: VAR_BIND,
            reason: format!("{bind_raw:?} is not an address:port ({e})"),
        })?;

        let database_url = lookup(VAR_DATABASE_URL).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !database_url.starts_with("sqlite:") && !crate::store::is_postgres(&database_url) {
            return Err(ConfigError::Invalid {
                var: VAR_DATABASE_URL,
                reason: "expected a sqlite: or postgres:// URL".to_owned(),
            });
        }

        let secret_hex = lookup(VAR_SHARED_SECRET).ok_or(ConfigError::Missing(VAR_SHARED_SECRET))?;
        let secret_bytes = hex::decode(secret_hex.trim())
            .map_err(|e| ConfigError::Invalid { var: VAR_SHARED_SECRET, reason: format!("not hex ({e})") })?;
        let shared_secret = SharedSecret::new(&secret_bytes)
            .map_err(|e| ConfigError::Invalid { var: VAR_SHARED_SECRET, reason: e.to_string() })?;

        let key_b64 = lookup(VAR_MASTER_KEY).ok_or(ConfigError::Missing(VAR_MASTER_KEY))?;
        let bytes = key_bytes(VAR_MASTER_KEY, &key_b64)?;
        let id = lookup(VAR_MASTER_KEY_ID).unwrap_or_else(|| DEFAULT_MASTER_KEY_ID.to_owned());
        check_key_id(VAR_MASTER_KEY_ID, &id)?;
        let mut previous_master_keys: Vec<MasterKey> = Vec::new();
        for entry in lookup(VAR_PREVIOUS_MASTER_KEYS).unwrap_or_default().split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let (old_id, old_b64) = entry.split_once(':').ok_or_else(|| ConfigError::Invalid {
                var: VAR_PREVIOUS_MASTER_KEYS,
                reason: "each entry must be id:base64".to_owned(),
            })?;
            check_key_id(VAR_PREVIOUS_MASTER_KEYS, old_id)?;
            if old_id == id || previous_master_keys.iter().any(|k| k.id == old_id) {
                return Err(ConfigError::Invalid {
                    var: VAR_PREVIOUS_MASTER_KEYS,
                    reason: format!("key id {old_id:?} appears twice (a retired key needs its own id)"),
                });
            }
            let old_bytes = key_bytes(VAR_PREVIOUS_MASTER_KEYS, old_b64)?;
            previous_master_keys.push(MasterKey { id: old_id.to_owned(), bytes: old_bytes });
        }

        let outbox_path = lookup(VAR_OUTBOX).unwrap_or_else(|| DEFAULT_OUTBOX.to_owned()).into();
        let email_delivery = match lookup(VAR_SMTP_URL).filter(|v| !v.trim().is_empty()) {
            Some(raw) => EmailDelivery::Smtp {
                endpoint: crate::delivery::SmtpEndpoint::parse(&raw)
                    .map_err(|reason| ConfigError::Invalid { var: VAR_SMTP_URL, reason })?,
                from: lookup(VAR_SMTP_FROM).unwrap_or_else(|| DEFAULT_SMTP_FROM.to_owned()),
            },
            None => EmailDelivery::File,
        };
        let sms_delivery = match lookup(VAR_SMS_URL).filter(|v| !v.trim().is_empty()) {
            Some(base_url) => {
                domain::net::check_origin_url(&base_url)
                    .map_err(|e| ConfigError::Invalid { var: VAR_SMS_URL, reason: e.to_string() })?;
                let needed = |var: &'static str| {
                    lookup(var).filter(|v| !v.is_empty()).ok_or(ConfigError::Missing(var))
                };
                SmsDelivery::Http {
                    base_url,
                    account_sid: needed(VAR_SMS_ACCOUNT_SID)?,
                    auth_token: needed(VAR_SMS_AUTH_TOKEN)?,
                    from: needed(VAR_SMS_FROM)?,
                }
            }
            None => SmsDelivery::File,
        };
        let public_url = lookup(VAR_PUBLIC_URL).unwrap_or_else(|| DEFAULT_PUBLIC_URL.to_owned());
        let reports_dir = lookup(VAR_REPORTS_DIR).unwrap_or_else(|| DEFAULT_REPORTS_DIR.to_owned()).into();
        let inbox_dir = lookup(VAR_INBOX_DIR).unwrap_or_else(|| DEFAULT_INBOX_DIR.to_owned()).into();
        let event_retention_days = match lookup(VAR_EVENT_RETENTION_DAYS) {
            Some(v) => v.trim().parse().ok().filter(|d| *d > 0).ok_or(ConfigError::Invalid {
                var: VAR_EVENT_RETENTION_DAYS,
                reason: "must be a positive number of days".to_owned(),
            })?,
            None => DEFAULT_EVENT_RETENTION_DAYS,
        };
        let erasure_grace_days = match lookup(VAR_ERASURE_GRACE_DAYS) {
            Some(v) => v.trim().parse().ok().filter(|d| *d <= 3650).ok_or(ConfigError::Invalid {
                var: VAR_ERASURE_GRACE_DAYS,
                reason: "must be a number of days from 0 to 3650".to_owned(),
            })?,
            None => domain::rights::DEFAULT_ERASURE_GRACE_DAYS,
        };
        let minor_under = match lookup(VAR_MINOR_AGE) {
            Some(v) => {
                v.trim().parse().ok().filter(|a| (13..=21).contains(a)).ok_or(ConfigError::Invalid {
                    var: VAR_MINOR_AGE,
                    reason: "must be an age from 13 to 21".to_owned(),
                })?
            }
            None => domain::coppa::DEFAULT_MINOR_UNDER,
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let count = |var: &'static str, default: usize| -> Result<usize, ConfigError> {
            match lookup(var) {
                Some(v) => v.trim().parse().ok().filter(|n: &usize| (1..=4096).contains(n)).ok_or(
                    ConfigError::Invalid { var, reason: "must be a number from 1 to 4096".to_owned() },
                ),
                None => Ok(default),
            }
        };
        let hash_threads = count(VAR_HASH_THREADS, cores)?;
        let hash_queue = count(VAR_HASH_QUEUE, hash_threads * 8)?;
        let request_timeout_secs = match lookup(VAR_REQUEST_TIMEOUT_SECS) {
            Some(v) => v.trim().parse().ok().filter(|s: &u64| (1..=3600).contains(s)).ok_or(
                ConfigError::Invalid {
                    var: VAR_REQUEST_TIMEOUT_SECS,
                    reason: "must be a number of seconds from 1 to 3600".to_owned(),
                },
            )?,
            None => DEFAULT_REQUEST_TIMEOUT_SECS,
        };
        let metrics_token = match lookup(VAR_METRICS_TOKEN).map(|t| t.trim().to_owned()) {
            None => None,
            Some(t) if t.is_empty() => None,
            Some(t) if t.len() >= 16 && t.chars().all(|c| c.is_ascii_graphic()) => Some(MetricsToken(t)),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    var: VAR_METRICS_TOKEN,
                    reason: "must be at least 16 printable ASCII characters without spaces".to_owned(),
                })
            }
        };
        let max_concurrent_requests = match lookup(VAR_MAX_CONCURRENT_REQUESTS) {
            Some(v) => v.trim().parse().ok().filter(|n: &usize| (1..=100_000).contains(n)).ok_or(
                ConfigError::Invalid {
                    var: VAR_MAX_CONCURRENT_REQUESTS,
                    reason: "must be a number of requests from 1 to 100000".to_owned(),
                },
            )?,
            None => DEFAULT_MAX_CONCURRENT_REQUESTS,
        };
        let webauthn_rp_id = lookup(VAR_WEBAUTHN_RP_ID).unwrap_or_else(|| DEFAULT_WEBAUTHN_RP_ID.to_owned());
        let webauthn_origin =
            lookup(VAR_WEBAUTHN_ORIGIN).unwrap_or_else(|| DEFAULT_WEBAUTHN_ORIGIN.to_owned());
        let origin_host = webauthn_origin
            .split_once("://")
            .map(|(_, rest)| rest.split([':', '/']).next().unwrap_or_default())
            .unwrap_or_default();
        // The RP id must be the origin's host or a registrable suffix of it (WebAuthn §5.1.3).
        if !(origin_host == webauthn_rp_id || origin_host.ends_with(&format!(".{webauthn_rp_id}"))) {
            return Err(ConfigError::Invalid {
                var: VAR_WEBAUTHN_RP_ID,
                reason: format!("{webauthn_rp_id:?} is not the host of {VAR_WEBAUTHN_ORIGIN} ({webauthn_origin:?}) nor a suffix of it"),
            });
        }
        let integrations = crate::integrations::providers::Providers::from_lookup(&lookup)
            .map_err(|reason| ConfigError::Invalid { var: "ORIGIN_INTEGRATION_*", reason })?;
        Ok(Self {
            integrations,
            webauthn_rp_id,
            webauthn_origin,
            hash_threads,
            hash_queue,
            bind,
            database_url,
            shared_secret,
            master_key: MasterKey { id, bytes },
            previous_master_keys,
            outbox_path,
            email_delivery,
            sms_delivery,
            public_url: public_url.trim_end_matches('/').to_owned(),
            reports_dir,
            inbox_dir,
            event_retention_days,
            erasure_grace_days,
            minor_under,
            request_timeout: std::time::Duration::from_secs(request_timeout_secs),
            max_concurrent_requests,
            metrics_token,
        })
    }
}

/// A master key: 32 bytes in standard base64.
fn key_bytes(var: &'static str, b64: &str) -> Result<[u8; 32], ConfigError> {
    let key_vec = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| ConfigError::Invalid { var, reason: format!("not base64 ({e})") })?;
    key_vec.try_into().map_err(|v: Vec<u8>| ConfigError::Invalid {
        var,
        reason: format!("must decode to 32 bytes, got {}", v.len()),
    })
}

fn check_key_id(var: &'static str, id: &str) -> Result<(), ConfigError> {
    if id.is_empty()
        || id.len() > 32
        || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::Invalid {
            var,
            reason: "a key id must be 1 to 32 characters of [A-Za-z0-9_-]".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const SECRET: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn defaults_apply_and_secrets_are_required() {
        let c = Config::from_lookup(env(&[(VAR_SHARED_SECRET, SECRET), (VAR_MASTER_KEY, KEY)])).unwrap();
        assert_eq!(c.bind.to_string(), DEFAULT_BIND);
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.master_key.id, "k1");
        assert_eq!(c.request_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.max_concurrent_requests, 512);
        assert!(c.metrics_token.is_none());
        let short = Config::from_lookup(env(&[
            (VAR_SHARED_SECRET, SECRET),
            (VAR_MASTER_KEY, KEY),
            (VAR_METRICS_TOKEN, "short"),
        ]))
        .unwrap_err();
        assert!(short.to_string().contains(VAR_METRICS_TOKEN), "{short}");
        let err = Config::from_lookup(env(&[(VAR_MASTER_KEY, KEY)])).unwrap_err();
        assert_eq!(err.to_string(), "ORIGIN_SHARED_SECRET is not set");
    }

    #[test]
    fn errors_name_the_variable() {
        let err =
            Config::from_lookup(env(&[(VAR_SHARED_SECRET, "abcd"), (VAR_MASTER_KEY, KEY)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ORIGIN_SHARED_SECRET is invalid: the shared secret must be at least 32 bytes, got 2"
        );
        let err =
            Config::from_lookup(env(&[(VAR_SHARED_SECRET, SECRET), (VAR_MASTER_KEY, "AAEC")])).unwrap_err();
        assert_eq!(err.to_string(), "ORIGIN_MASTER_KEY is invalid: must decode to 32 bytes, got 3");
        let err = Config::from_lookup(env(&[
            (VAR_SHARED_SECRET, SECRET),
            (VAR_MASTER_KEY, KEY),
            (VAR_BIND, "localhost"),
        ]))
        .unwrap_err();
        assert!(err.to_string().starts_with("ORIGIN_BIND is invalid: \"localhost\""), "{err}");
    }

    #[test]
    fn request_limits_are_read_and_checked() {
        let base = [(VAR_SHARED_SECRET, SECRET), (VAR_MASTER_KEY, KEY)];
        let with = |pairs: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(pairs);
            Config::from_lookup(env(&all))
        };
        let c = with(&[(VAR_REQUEST_TIMEOUT_SECS, "5"), (VAR_MAX_CONCURRENT_REQUESTS, "8")]).unwrap();
        assert_eq!(c.request_timeout, std::time::Duration::from_secs(5));
        assert_eq!(c.max_concurrent_requests, 8);
        for (var, bad) in [
            (VAR_REQUEST_TIMEOUT_SECS, "0"),
            (VAR_REQUEST_TIMEOUT_SECS, "soon"),
            (VAR_MAX_CONCURRENT_REQUESTS, "0"),
            (VAR_MAX_CONCURRENT_REQUESTS, "-1"),
        ] {
            let err = with(&[(var, bad)]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{var} is invalid")), "{err}");
        }
    }

    #[test]
    fn the_webauthn_rp_id_must_match_the_origin() {
        let base = [(VAR_SHARED_SECRET, SECRET), (VAR_MASTER_KEY, KEY)];
        let with = |pairs: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(pairs);
            Config::from_lookup(env(&all))
        };
        let c = with(&[]).unwrap();
        assert_eq!(
            (c.webauthn_rp_id.as_str(), c.webauthn_origin.as_str()),
            ("localhost", "http://localhost:8787")
        );
        let c = with(&[(VAR_WEBAUTHN_RP_ID, "example.com"), (VAR_WEBAUTHN_ORIGIN, "https://id.example.com")])
            .unwrap();
        assert_eq!(c.webauthn_rp_id, "example.com");
        let err = with(&[(VAR_WEBAUTHN_ORIGIN, "http://127.0.0.1:8787")]).unwrap_err().to_string();
        assert!(err.starts_with("ORIGIN_WEBAUTHN_RP_ID is invalid: \"localhost\""), "{err}");
    }

    #[test]
    fn retired_master_keys_are_read_with_their_ids() {
        const OLD: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";
        let base = [(VAR_SHARED_SECRET, SECRET), (VAR_MASTER_KEY, KEY), (VAR_MASTER_KEY_ID, "k2")];
        let with = |previous: &str| {
            let mut pairs = base.to_vec();
            pairs.push((VAR_PREVIOUS_MASTER_KEYS, previous));
            Config::from_lookup(env(&pairs))
        };
        let c = with(&format!("k1:{OLD}, k0:{KEY}")).unwrap();
        let ids: Vec<&str> = c.previous_master_keys.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["k1", "k0"]);
        assert_eq!(c.previous_master_keys[0].bytes[0], 0x1f);
        assert!(Config::from_lookup(env(&base)).unwrap().previous_master_keys.is_empty());
        for (bad, reason) in [
            (format!("k2:{OLD}"), "appears twice"),
            (format!("k1:{OLD},k1:{KEY}"), "appears twice"),
            (OLD.to_owned(), "id:base64"),
            ("k1:AAEC".to_owned(), "32 bytes"),
            (format!("k 1:{OLD}"), "key id"),
        ] {
            let err = with(&bad).unwrap_err().to_string();
            assert!(
                err.starts_with("ORIGIN_PREVIOUS_MASTER_KEYS is invalid") && err.contains(reason),
                "{err}"
            );
        }
    }
}
