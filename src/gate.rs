//! The per-user Durable Object ("gate"): the edge's strongly consistent state for one user.
//!
//! The edge consults a user's gate once per authenticated request, and that one call answers
//! everything the edge must know consistently: whether the request is within the user's rate
//! limit (counted here, exactly, see `domain::rate_limit`), the tier the edge enforces (set by
//! the origin's answers, so an upgrade takes effect on the next request, whatever the token
//! says), and the newest profile version acknowledged to the user (so a read never returns
//! something older than their own write, whatever KV says).
//!
//! The same class also throttles the unauthenticated endpoints per client IP, as objects named
//! `ip:<address>`, one rolling window per endpoint class.
//!
//! State lives in the object's SQLite storage, so counts survive eviction and restarts.

use domain::rate_limit::{Decision, Limiter, Policy};
use domain::tier::Tier;
use domain::time::UnixMillis;
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, Date, DurableObject, Env, Method, Request, RequestInit, Response, Result, State,
};

use crate::bindings::RateLimitConfig;

/// A rate-limit decision as the edge uses it for its answer's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitAnswer {
    pub admitted: bool,
    /// `None`: unlimited (VIP); nothing was counted.
    pub limit: Option<u32>,
    pub remaining: u32,
    pub reset_secs: u64,
    pub retry_after_secs: Option<u64>,
    pub window_secs: u64,
}

impl LimitAnswer {
    fn from_decision(d: Decision, policy: &Policy) -> Self {
        Self {
            admitted: d.admitted,
            limit: d.limit,
            remaining: d.remaining,
            reset_secs: d.reset_secs,
            retry_after_secs: d.retry_after_secs,
            window_secs: policy.window_secs(),
        }
    }
}

/// The gate's answer to a per-request check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateAnswer {
    /// The newest profile version acknowledged through this edge, if any.
    pub profile_version: Option<u64>,
    /// The tier the edge enforces.
    pub tier: Tier,
    pub limit: LimitAnswer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RequestCheck {
    /// The tier in the caller's token, used only until the gate has learnt one from the origin.
    tier_hint: Tier,
    /// Whether this request counts against the quota (a tier change does not: a user who hit
    /// the free quota must still be able to upgrade).
    count: bool,
}

/// What the edge tells the gate after the origin acknowledged a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub profile_version: u64,
    pub tier: Tier,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ThrottleCheck {
    class: String,
    window_secs: u64,
    buckets: u32,
    quota: u32,
}

#[derive(Debug, Default, Deserialize)]
struct GateRow {
    profile_version: Option<i64>,
    tier: Option<String>,
    window: Option<String>,
}

#[durable_object(fetch)]
pub struct Gate {
    state: State,
    env: Env,
}

fn now() -> UnixMillis {
    UnixMillis(Date::now().as_millis())
}

impl Gate {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    fn ensure_schema(&self) -> Result<()> {
        // One row per user object (`id = 1` makes it a singleton), one per throttled class.
        self.sql().exec(
            "CREATE TABLE IF NOT EXISTS gate (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                profile_version INTEGER,
                tier TEXT,
                window TEXT
            )",
            None,
        )?;
        self.sql().exec(
            "CREATE TABLE IF NOT EXISTS throttles (class TEXT PRIMARY KEY, window TEXT NOT NULL)",
            None,
        )?;
        Ok(())
    }

    fn load(&self) -> Result<GateRow> {
        let rows: Vec<GateRow> = self
            .sql()
            .exec("SELECT profile_version, tier, window FROM gate WHERE id = 1", None)?
            .to_array()?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    fn limiter(raw: Option<&str>) -> Limiter {
        // A window that does not parse (a format from an older release) starts afresh.
        raw.and_then(|w| serde_json::from_str(w).ok()).unwrap_or_default()
    }

    fn check(&self, check: &RequestCheck) -> Result<GateAnswer> {
        let config =
            RateLimitConfig::from_env(&self.env).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let row = self.load()?;
        let tier = row.tier.as_deref().and_then(|t| t.parse().ok()).unwrap_or(check.tier_hint);
        let policy = config.user_policy(tier);
        let mut limiter = Self::limiter(row.window.as_deref());
        let decision =
            if check.count { limiter.decide(now(), &policy) } else { limiter.peek(now(), &policy) };
        if decision.admitted && check.count && policy.quota.is_some() {
            let window = serde_json::to_string(&limiter)?;
            self.sql().exec(
                "INSERT INTO gate (id, window) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET window = excluded.window",
                vec![window.into()],
            )?;
        }
        Ok(GateAnswer {
            profile_version: row.profile_version.and_then(|v| u64::try_from(v).ok()),
            tier,
            limit: LimitAnswer::from_decision(decision, &policy),
        })
    }

    fn record(&self, record: &GateRecord) -> Result<()> {
        // Versions only move forward: two writes acknowledged out of order must not make the
        // gate forget the newer one, nor take the older one's tier.
        let version = i64::try_from(record.profile_version).unwrap_or(i64::MAX);
        self.sql().exec(
            "INSERT INTO gate (id, profile_version, tier) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET
                tier = CASE WHEN excluded.profile_version >= COALESCE(gate.profile_version, 0)
                            THEN excluded.tier ELSE gate.tier END,
                profile_version = MAX(COALESCE(gate.profile_version, 0), excluded.profile_version)",
            vec![version.into(), record.tier.as_str().into()],
        )?;
        Ok(())
    }

    fn throttle(&self, check: &ThrottleCheck) -> Result<LimitAnswer> {
        let policy = Policy::rolling(check.window_secs, check.buckets, Some(check.quota));
        let rows: Vec<GateRow> = self
            .sql()
            .exec(
                "SELECT NULL AS profile_version, NULL AS tier, window FROM throttles WHERE class = ?",
                vec![check.class.as_str().into()],
            )?
            .to_array()?;
        let mut limiter = Self::limiter(rows.first().and_then(|r| r.window.as_deref()));
        let decision = limiter.decide(now(), &policy);
        if decision.admitted {
            self.sql().exec(
                "INSERT INTO throttles (class, window) VALUES (?, ?)
                 ON CONFLICT (class) DO UPDATE SET window = excluded.window",
                vec![check.class.as_str().into(), serde_json::to_string(&limiter)?.into()],
            )?;
        }
        Ok(LimitAnswer::from_decision(decision, &policy))
    }
}

impl DurableObject for Gate {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.ensure_schema()?;
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/check") => Response::from_json(&self.check(&req.json().await?)?),
            (Method::Post, "/record") => {
                self.record(&req.json().await?)?;
                Response::empty()
            }
            (Method::Post, "/throttle") => Response::from_json(&self.throttle(&req.json().await?)?),
            _ => Response::error("no such gate operation", 404),
        }
    }
}

/// The edge's handle on one gate.
pub struct GateClient {
    stub: worker::Stub,
}

impl GateClient {
    pub fn for_user(env: &Env, user_id: &str) -> Result<Self> {
        Ok(Self { stub: env.durable_object(crate::bindings::DO_GATE)?.get_by_name(user_id)? })
    }

    pub fn for_ip(env: &Env, ip: &str) -> Result<Self> {
        Ok(Self { stub: env.durable_object(crate::bindings::DO_GATE)?.get_by_name(&format!("ip:{ip}"))? })
    }

    async fn call<T: Serialize>(&self, op: &str, body: &T) -> Result<Response> {
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(serde_json::to_string(body)?.into()));
        let req = Request::new_with_init(&format!("https://gate{op}"), &init)?;
        let res = self.stub.fetch_with_request(req).await?;
        if res.status_code() != 200 {
            return Err(worker::Error::RustError(format!("gate {op} answered {}", res.status_code())));
        }
        Ok(res)
    }

    /// The one call per authenticated request: limit, tier, acknowledged version.
    pub async fn check(&self, tier_hint: Tier, count: bool) -> Result<GateAnswer> {
        self.call("/check", &RequestCheck { tier_hint, count }).await?.json().await
    }

    pub async fn record(&self, record: &GateRecord) -> Result<()> {
        self.call("/record", record).await.map(|_| ())
    }

    /// Counts one request of `class` against a per-IP quota.
    pub async fn throttle(&self, class: &str, window_secs: u64, quota: u32) -> Result<LimitAnswer> {
        // Six buckets: a refusal is never more than a sixth of the window early.
        let check = ThrottleCheck { class: class.to_owned(), window_secs, buckets: 6, quota };
        self.call("/throttle", &check).await?.json().await
    }
}
