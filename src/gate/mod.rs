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
//! State lives in the object's SQLite storage, so counts survive eviction and restarts. A
//! Durable Object instance is the only writer of its storage and handles one request at a time,
//! so it also keeps what it read in memory (the user's row with its parsed window, the session
//! records, the configuration) and writes every change through: a request reads no row it has
//! read before, and writes only what changed.

use domain::org::OrgGrant;
use domain::rate_limit::{Decision, Limiter, Policy};
use domain::tier::Tier;
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::bindings::RateLimitConfig;
use crate::origin_client::now;

pub mod sessions;

use sessions::{CreatedSession, NewSession, RefreshFailure, SessionView, Sessions, TokenPair};

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
    /// Why the request's session cannot be used (revoked, timed out); `None` when it can.
    pub session_refused: Option<String>,
    /// When the request's session last stepped up (ms), for sensitive changes.
    #[serde(default)]
    pub stepped_up_at: Option<u64>,
    /// Whether the user's usage events may be collected (their `analytics` consent).
    #[serde(default = "yes")]
    pub collects_events: bool,
    /// The organization the user belongs to (its tier is `tier` meanwhile).
    #[serde(default)]
    pub org: Option<String>,
    /// Moves whenever what the user's entitlements are computed from changes through the edge
    /// (tier, consents, usage): a cached view computed under another epoch is not served.
    #[serde(default)]
    pub entitlements_epoch: u64,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RequestCheck {
    /// The tier in the caller's token, used only until the gate has learnt one from the origin.
    tier_hint: Tier,
    /// Whether this request counts against the quota (a tier change does not: a user who hit
    /// the free quota must still be able to upgrade).
    count: bool,
    /// The session of the request's token, checked (and its activity marked) first.
    sid: Option<String>,
}

/// What the edge tells the gate after the origin acknowledged a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub profile_version: u64,
    pub tier: Tier,
    /// The user's `session_timeout_minutes` in that version: open sessions follow it at once.
    #[serde(default)]
    pub idle_timeout_minutes: Option<u32>,
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
    #[serde(default)]
    collects_events: Option<i64>,
    /// The organization's grant (`domain::org::OrgGrant`, JSON), and when it was decided.
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    org_at: Option<i64>,
    #[serde(default)]
    entitlements_epoch: Option<i64>,
}

/// The user's row as this instance last read or wrote it, its window parsed.
#[derive(Debug, Clone, Default)]
struct GateState {
    profile_version: Option<i64>,
    tier: Option<Tier>,
    limiter: Limiter,
    /// The `analytics` consent as the origin last answered it (collected until told otherwise).
    collects_events: bool,
    /// The user's organization, as the origin last decided it (at `org_at`).
    org: Option<OrgGrant>,
    org_at: Option<i64>,
    entitlements_epoch: u64,
}

impl GateState {
    /// The tier the edge enforces: the organization's while a member, the user's own after.
    fn enforced_tier(&self, hint: Tier) -> Tier {
        domain::org::effective_tier(self.tier.unwrap_or(hint), self.org.as_ref().map(|g| g.tier))
    }

    fn org_id(&self) -> Option<String> {
        self.org.as_ref().map(|g| g.org.clone())
    }
}

#[durable_object(fetch)]
pub struct Gate {
    env: Env,
    /// The object's storage as a whole, for the erasure's `deleteAll`.
    storage: worker::Storage,
    sql_storage: worker::SqlStorage,
    /// Whether this instance has made sure of its tables (once per instance, not per request).
    schema_ready: std::cell::Cell<bool>,
    /// Whether the throttles' table alone is there (an address's object).
    throttles_ready: std::cell::Cell<bool>,
    /// The rate-limit configuration, read from the environment once per instance.
    config: std::cell::OnceCell<RateLimitConfig>,
    /// The user's row, written through (`None` until read, and after a write that must be
    /// read back).
    state: std::cell::RefCell<Option<GateState>>,
    /// Session records by id, written through by [`Sessions`].
    session_cache: sessions::Cache,
}

#[derive(Debug, Serialize, Deserialize)]
struct RefreshRequest {
    user_id: String,
    token: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RevokeRequest {
    /// One session, or all of them (but `except`) when `None`.
    sid: Option<String>,
    except: Option<String>,
    reason: String,
}

/// The user's organization as the origin decided it at `at` (ms); `end_sessions` ends every
/// open session too (a removal, or an organization admin ending them).
#[derive(Debug, Serialize, Deserialize)]
pub struct OrgRecord {
    pub grant: Option<OrgGrant>,
    pub at: u64,
    #[serde(default)]
    pub end_sessions: bool,
}

/// The user's `analytics` consent, as the origin answered it.
#[derive(Debug, Serialize, Deserialize)]
struct ConsentRecord {
    collects_events: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct StepUpRequest {
    sid: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct RevokeAnswer {
    ended: usize,
}

impl Gate {
    fn sql(&self) -> &worker::SqlStorage {
        &self.sql_storage
    }

    /// One operation of the gate on its JSON body (`op` names it, as `/check`); the JSON answer,
    /// or `None` for an operation that answers nothing.
    async fn handle(&self, op: &str, body: &str) -> Result<Option<String>> {
        if op == "/throttle" {
            if !self.throttles_ready.get() && !self.schema_ready.get() {
                self.ensure_throttles()?;
                self.throttles_ready.set(true);
            }
        } else if !self.schema_ready.get() {
            self.ensure_schema()?;
        }
        match op {
            "/check" => answer(&self.check(&serde_json::from_str(body)?)?),
            "/record" => {
                self.record(&serde_json::from_str(body)?)?;
                Ok(None)
            }
            "/peek" => answer(&self.peek()?),
            "/org" => {
                self.record_org(&serde_json::from_str(body)?)?;
                Ok(None)
            }
            "/consent" => {
                self.record_consent(&serde_json::from_str(body)?)?;
                Ok(None)
            }
            "/entitlements/touch" => {
                self.touch_entitlements()?;
                Ok(None)
            }
            "/wipe" => {
                self.wipe().await?;
                Ok(None)
            }
            "/throttle" => answer(&self.throttle(&serde_json::from_str(body)?)?),
            "/session/create" => {
                let new: NewSession = serde_json::from_str(body)?;
                if let Some(record) = &new.record {
                    self.record(record)?;
                }
                if let Some(at) = new.org_at {
                    self.record_org(&OrgRecord { grant: new.org.clone(), at, end_sessions: false })?;
                }
                // The session's tier is the one the gate enforces once it has learnt one (the
                // organization's for a member), and so is its cap (an organization's may be lower).
                let state = self.load()?;
                let tier: Tier = state.enforced_tier(new.tier);
                let cap = tier.limits().max_open_sessions;
                let cap = state.org.as_ref().and_then(|g| g.max_sessions).map_or(cap, |m| m.min(cap));
                let max_open = usize::try_from(cap).unwrap_or(usize::MAX);
                let org = state.org_id();
                let created =
                    self.sessions().create(&NewSession { tier, ..new }, max_open, org.as_deref()).await?;
                answer(&CreatedSession { collects_events: state.collects_events, ..created })
            }
            "/session/step-up" => {
                let request: StepUpRequest = serde_json::from_str(body)?;
                answer(&self.sessions().step_up(&request.sid)?)
            }
            "/session/refresh" => {
                let request: RefreshRequest = serde_json::from_str(body)?;
                let state = self.load()?;
                let tier = state.enforced_tier(Tier::Free);
                let grace_ms = crate::bindings::refresh_grace_ms(&self.env);
                let outcome: std::result::Result<TokenPair, RefreshFailure> = self
                    .sessions()
                    .refresh(&request.user_id, &request.token, tier, grace_ms, state.org.as_ref())
                    .await?;
                answer(&outcome)
            }
            "/session/revoke" => {
                let request: RevokeRequest = serde_json::from_str(body)?;
                let ended = match &request.sid {
                    Some(sid) => usize::from(self.sessions().revoke(sid, &request.reason)?),
                    None => self.sessions().revoke_all(request.except.as_deref(), &request.reason)?,
                };
                answer(&RevokeAnswer { ended })
            }
            "/session/list" => {
                let list: Vec<SessionView> = self.sessions().list()?;
                answer(&list)
            }
            _ => Err(worker::Error::RustError(format!("no such gate operation: {op}"))),
        }
    }

    /// The per-address throttle's one table: an address's object (`ip:…`, one per client
    /// address, most of them new) needs nothing else, and creating nothing else keeps its first
    /// request to one statement.
    fn ensure_throttles(&self) -> Result<()> {
        self.sql().exec(THROTTLES_TABLE, None)?;
        Ok(())
    }

    /// A user's tables. A new object gets the current schema in a few statements; an object
    /// created by an earlier release gets the columns added since (each `ALTER` fails harmlessly
    /// where its column exists, which is why it is not run on a new object).
    fn ensure_schema(&self) -> Result<()> {
        let fresh = self
            .sql()
            .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'gate'", None)?
            .to_array::<serde_json::Value>()?
            .is_empty();
        if fresh {
            // One row per user object (`id = 1` makes it a singleton).
            self.sql().exec(
                "CREATE TABLE gate (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    profile_version INTEGER,
                    tier TEXT,
                    window TEXT,
                    collects_events INTEGER,
                    org TEXT,
                    org_at INTEGER,
                    entitlements_epoch INTEGER
                )",
                None,
            )?;
        }
        self.sql().exec(THROTTLES_TABLE, None)?;
        for statement in sessions::SCHEMA {
            self.sql().exec(statement, None)?;
        }
        if !fresh {
            // The `analytics` consent (issue 13); NULL in older rows means collected.
            let _ = self.sql().exec("ALTER TABLE gate ADD COLUMN collects_events INTEGER", None);
            // The user's organization (issue 19); NULL: none.
            let _ = self.sql().exec("ALTER TABLE gate ADD COLUMN org TEXT", None);
            let _ = self.sql().exec("ALTER TABLE gate ADD COLUMN org_at INTEGER", None);
            // The entitlements epoch (issue 19); NULL in older rows is 0.
            let _ = self.sql().exec("ALTER TABLE gate ADD COLUMN entitlements_epoch INTEGER", None);
            for statement in sessions::UPGRADE {
                // The column exists already in objects created by this release: that error is
                // the expected outcome, not a failure.
                let _ = self.sql().exec(statement, None);
            }
        }
        for statement in sessions::INDEXES {
            self.sql().exec(statement, None)?;
        }
        self.schema_ready.set(true);
        Ok(())
    }

    fn config(&self) -> Result<&RateLimitConfig> {
        if let Some(config) = self.config.get() {
            return Ok(config);
        }
        let config =
            RateLimitConfig::from_env(&self.env).map_err(|e| worker::Error::RustError(e.to_string()))?;
        Ok(self.config.get_or_init(|| config))
    }

    /// The user's row: from memory, or read once.
    fn load(&self) -> Result<GateState> {
        if let Some(state) = self.state.borrow().as_ref() {
            return Ok(state.clone());
        }
        let rows: Vec<GateRow> = self
            .sql()
            .exec(
                "SELECT profile_version, tier, window, collects_events, org, org_at, entitlements_epoch FROM gate WHERE id = 1",
                None,
            )?
            .to_array()?;
        let row = rows.into_iter().next().unwrap_or_default();
        let state = GateState {
            profile_version: row.profile_version,
            tier: row.tier.as_deref().and_then(|t| t.parse().ok()),
            limiter: Self::limiter(row.window.as_deref()),
            collects_events: row.collects_events != Some(0),
            org: row.org.as_deref().and_then(|g| serde_json::from_str(g).ok()),
            org_at: row.org_at,
            entitlements_epoch: row.entitlements_epoch.and_then(|e| u64::try_from(e).ok()).unwrap_or(0),
        };
        *self.state.borrow_mut() = Some(state.clone());
        Ok(state)
    }

    fn limiter(raw: Option<&str>) -> Limiter {
        // A window that does not parse (a format from an older release) starts afresh.
        raw.and_then(|w| serde_json::from_str(w).ok()).unwrap_or_default()
    }

    fn sessions(&self) -> Sessions<'_> {
        Sessions { sql: &self.sql_storage, env: &self.env, now: now(), cache: &self.session_cache }
    }

    fn check(&self, check: &RequestCheck) -> Result<GateAnswer> {
        let config = self.config()?;
        let mut row = self.load()?;
        let tier = row.enforced_tier(check.tier_hint);
        let policy = config.user_policy(tier);
        // A revoked or timed-out session is refused before anything is counted, and so is one
        // opened without a second factor when the user's organization requires one.
        let (session_refused, stepped_up_at) = match &check.sid {
            Some(sid) => {
                let (status, stepped_up_at, second_factor) = self.sessions().check(sid)?;
                let refused = status.reason().or_else(|| {
                    row.org
                        .as_ref()
                        .filter(|g| !g.admits_session(second_factor))
                        .map(|_| sessions::ORG_NEEDS_SECOND_FACTOR.to_owned())
                });
                (refused, stepped_up_at.map(|t| t.0))
            }
            None => (Some("the token belongs to no session".to_owned()), None),
        };
        if session_refused.is_some() {
            let decision = row.limiter.peek(now(), &policy);
            return Ok(GateAnswer {
                profile_version: None,
                tier,
                limit: LimitAnswer::from_decision(decision, &policy),
                session_refused,
                stepped_up_at: None,
                collects_events: row.collects_events,
                org: row.org_id(),
                entitlements_epoch: row.entitlements_epoch,
            });
        }
        let org = row.org_id();
        let mut limiter = row.limiter;
        let decision =
            if check.count { limiter.decide(now(), &policy) } else { limiter.peek(now(), &policy) };
        if decision.admitted && check.count && policy.quota.is_some() {
            let window = serde_json::to_string(&limiter)?;
            self.sql().exec(
                "INSERT INTO gate (id, window) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET window = excluded.window",
                vec![window.into()],
            )?;
            if let Some(state) = self.state.borrow_mut().as_mut() {
                state.limiter = limiter;
            }
        }
        Ok(GateAnswer {
            profile_version: row.profile_version.and_then(|v| u64::try_from(v).ok()),
            tier,
            limit: LimitAnswer::from_decision(decision, &policy),
            session_refused: None,
            stepped_up_at,
            collects_events: row.collects_events,
            org,
            entitlements_epoch: row.entitlements_epoch,
        })
    }

    fn peek(&self) -> Result<GateAnswer> {
        let config = self.config()?;
        let mut row = self.load()?;
        let tier = row.enforced_tier(Tier::Free);
        let policy = config.user_policy(tier);
        let decision = row.limiter.peek(now(), &policy);
        Ok(GateAnswer {
            profile_version: row.profile_version.and_then(|v| u64::try_from(v).ok()),
            tier,
            limit: LimitAnswer::from_decision(decision, &policy),
            session_refused: None,
            stepped_up_at: None,
            collects_events: row.collects_events,
            org: row.org_id(),
            entitlements_epoch: row.entitlements_epoch,
        })
    }

    /// Records the user's organization as the origin decided it at `at` (an older decision
    /// arriving late changes nothing), and ends the sessions when it says so.
    fn record_org(&self, update: &OrgRecord) -> Result<()> {
        let at = i64::try_from(update.at).unwrap_or(i64::MAX);
        if self.load()?.org_at.is_some_and(|known| known > at) {
            return Ok(());
        }
        let grant = update.grant.as_ref().map(serde_json::to_string).transpose()?;
        self.sql().exec(
            "INSERT INTO gate (id, org, org_at) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET org = excluded.org, org_at = excluded.org_at",
            vec![grant.into(), at.into()],
        )?;
        if let Some(state) = self.state.borrow_mut().as_mut() {
            state.org = update.grant.clone();
            state.org_at = Some(at);
        }
        // The entitlements follow the organization (its tier, its integrations).
        self.touch_entitlements()?;
        if update.end_sessions {
            let reason = if update.grant.is_some() {
                "ended by an administrator of the organization"
            } else {
                "removed from the organization"
            };
            self.sessions().revoke_all(None, reason)?;
        }
        Ok(())
    }

    fn record_consent(&self, consent: &ConsentRecord) -> Result<()> {
        // Consents narrow the entitlements.
        self.touch_entitlements()?;
        self.sql().exec(
            "INSERT INTO gate (id, collects_events) VALUES (1, ?)
             ON CONFLICT (id) DO UPDATE SET collects_events = excluded.collects_events",
            vec![i64::from(consent.collects_events).into()],
        )?;
        if let Some(state) = self.state.borrow_mut().as_mut() {
            state.collects_events = consent.collects_events;
        }
        Ok(())
    }

    /// The erasure: every row of this object's storage goes (`deleteAll`), and what this
    /// instance holds in memory with it; the next request starts from nothing.
    async fn wipe(&self) -> Result<()> {
        self.storage.delete_all().await?;
        *self.state.borrow_mut() = None;
        self.session_cache.borrow_mut().clear();
        self.schema_ready.set(false);
        self.throttles_ready.set(false);
        Ok(())
    }

    fn record(&self, record: &GateRecord) -> Result<()> {
        // Versions only move forward: two writes acknowledged out of order must not make the
        // gate forget the newer one, nor take the older one's tier (or its session timeout).
        let version = i64::try_from(record.profile_version).unwrap_or(i64::MAX);
        let known = self.load()?;
        let newest = known.profile_version.is_none_or(|v| version >= v);
        // A new tier changes the entitlements.
        if newest && known.tier != Some(record.tier) {
            self.touch_entitlements()?;
        }
        if let (true, Some(minutes)) = (newest, record.idle_timeout_minutes) {
            self.sessions().set_idle_timeout(u64::from(minutes).saturating_mul(60_000))?;
        }
        self.sql().exec(
            "INSERT INTO gate (id, profile_version, tier) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET
                tier = CASE WHEN excluded.profile_version >= COALESCE(gate.profile_version, 0)
                            THEN excluded.tier ELSE gate.tier END,
                profile_version = MAX(COALESCE(gate.profile_version, 0), excluded.profile_version)",
            vec![version.into(), record.tier.as_str().into()],
        )?;
        // The row's new values are SQLite's to decide (versions only move forward): read back.
        *self.state.borrow_mut() = None;
        Ok(())
    }

    /// Moves the entitlements epoch: cached entitlements computed before are not served.
    fn touch_entitlements(&self) -> Result<()> {
        self.sql().exec(
            "INSERT INTO gate (id, entitlements_epoch) VALUES (1, 1)
             ON CONFLICT (id) DO UPDATE SET entitlements_epoch = COALESCE(gate.entitlements_epoch, 0) + 1",
            None,
        )?;
        if let Some(state) = self.state.borrow_mut().as_mut() {
            state.entitlements_epoch += 1;
        }
        Ok(())
    }

    fn throttle(&self, check: &ThrottleCheck) -> Result<LimitAnswer> {
        let policy = Policy::rolling(check.window_secs, check.buckets, Some(check.quota));
        let rows: Vec<GateRow> = self
            .sql()
            .exec(
                "SELECT NULL AS profile_version, NULL AS tier, window, NULL AS collects_events, \
                 NULL AS entitlements_epoch FROM throttles WHERE class = ?",
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
        let storage = state.storage();
        let sql_storage = storage.sql();
        Self {
            env,
            storage,
            sql_storage,
            schema_ready: std::cell::Cell::new(false),
            throttles_ready: std::cell::Cell::new(false),
            config: std::cell::OnceCell::new(),
            state: std::cell::RefCell::new(None),
            session_cache: sessions::Cache::default(),
        }
    }

    /// The gate's operations over HTTP (`POST /check`, ...): the edge calls them by RPC
    /// ([`Gate::gate_op`]); this is the same dispatch for a `fetch` to the object.
    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let body = req.text().await?;
        match self.handle(&req.path(), &body).await? {
            Some(json) => {
                let headers = worker::Headers::new();
                headers.set("content-type", "application/json")?;
                Ok(Response::ok(json)?.with_headers(headers))
            }
            None => Response::empty(),
        }
    }
}

/// The gate's operations by RPC: the edge's one way in. A call passes two strings and gets one
/// back (or `null`), where a `fetch` to the object builds a request, its headers and a response
/// on both sides. The class is made a `DurableObject` subclass, which RPC requires, by the
/// Worker's entry module (`src/entry.mjs`).
#[worker::wasm_bindgen::prelude::wasm_bindgen(
    wasm_bindgen = ::worker::wasm_bindgen,
    wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
    js_sys = ::worker::js_sys
)]
impl Gate {
    #[wasm_bindgen(js_name = gateOp)]
    pub async fn gate_op(
        &self,
        op: String,
        body: String,
    ) -> std::result::Result<worker::wasm_bindgen::JsValue, worker::wasm_bindgen::JsValue> {
        match self.handle(&op, &body).await {
            Ok(Some(json)) => Ok(worker::wasm_bindgen::JsValue::from_str(&json)),
            Ok(None) => Ok(worker::wasm_bindgen::JsValue::NULL),
            Err(e) => Err(worker::wasm_bindgen::JsValue::from(e)),
        }
    }
}

/// A JSON answer of the gate.
fn answer<T: Serialize>(value: &T) -> Result<Option<String>> {
    Ok(Some(serde_json::to_string(value)?))
}

/// One row per throttled class of an address (or of a user).
const THROTTLES_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS throttles (class TEXT PRIMARY KEY, window TEXT NOT NULL)";

#[worker::wasm_bindgen::prelude::wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
extern "C" {
    /// A gate's stub seen as its RPC interface ([`Gate::gate_op`]).
    type GateRpc;
    #[wasm_bindgen(method, js_name = gateOp)]
    fn gate_op(this: &GateRpc, op: &str, body: &str) -> worker::js_sys::Promise;
}

/// The edge's handle on one gate.
pub struct GateClient {
    rpc: GateRpc,
}

impl GateClient {
    pub fn for_user(env: &Env, user_id: &str) -> Result<Self> {
        Ok(Self { rpc: env.durable_object(crate::bindings::DO_GATE)?.get_by_name(user_id)?.into_rpc() })
    }

    pub fn for_ip(env: &Env, ip: &str) -> Result<Self> {
        let stub = env.durable_object(crate::bindings::DO_GATE)?.get_by_name(&format!("ip:{ip}"))?;
        Ok(Self { rpc: stub.into_rpc() })
    }

    /// One operation of the gate, by RPC: its JSON answer, or `None`.
    async fn call<T: Serialize>(&self, op: &str, body: &T) -> Result<Option<String>> {
        // An RPC call answers a thenable, not a Promise: resolved into one to be awaited.
        let pending = worker::js_sys::Promise::resolve(&self.rpc.gate_op(op, &serde_json::to_string(body)?));
        let answer = worker::wasm_bindgen_futures::JsFuture::from(pending)
            .await
            .map_err(|e| worker::Error::RustError(format!("gate {op}: {}", worker::Error::from(e))))?;
        Ok(answer.as_string())
    }

    /// One operation of the gate whose answer is JSON.
    async fn call_json<T: Serialize, R: serde::de::DeserializeOwned>(&self, op: &str, body: &T) -> Result<R> {
        match self.call(op, body).await? {
            Some(json) => Ok(serde_json::from_str(&json)?),
            None => Err(worker::Error::RustError(format!("gate {op} answered nothing"))),
        }
    }

    /// The one call per authenticated request: session, limit, tier, acknowledged version.
    pub async fn check(&self, tier_hint: Tier, count: bool, sid: Option<&str>) -> Result<GateAnswer> {
        self.call_json("/check", &RequestCheck { tier_hint, count, sid: sid.map(str::to_owned) }).await
    }

    /// An admin's look at another user's gate: their limit and version, counting nothing and
    /// checking no session (the admin's own was checked by their own gate).
    pub async fn peek(&self) -> Result<GateAnswer> {
        self.call_json("/peek", &serde_json::json!({})).await
    }

    pub async fn create_session(&self, new: &NewSession) -> Result<CreatedSession> {
        self.call_json("/session/create", new).await
    }

    /// Records a step-up for `sid`; false when the session is not active.
    pub async fn step_up(&self, sid: &str) -> Result<bool> {
        self.call_json("/session/step-up", &StepUpRequest { sid: sid.to_owned() }).await
    }

    pub async fn refresh(
        &self,
        user_id: &str,
        token: &str,
    ) -> Result<std::result::Result<TokenPair, RefreshFailure>> {
        let request = RefreshRequest { user_id: user_id.to_owned(), token: token.to_owned() };
        self.call_json("/session/refresh", &request).await
    }

    /// Revokes one session (`sid`) or all but `except`; how many ended.
    pub async fn revoke(&self, sid: Option<&str>, except: Option<&str>, reason: &str) -> Result<usize> {
        let request = RevokeRequest {
            sid: sid.map(str::to_owned),
            except: except.map(str::to_owned),
            reason: reason.to_owned(),
        };
        let answer: RevokeAnswer = self.call_json("/session/revoke", &request).await?;
        Ok(answer.ended)
    }

    pub async fn sessions(&self) -> Result<Vec<SessionView>> {
        self.call_json("/session/list", &serde_json::json!({})).await
    }

    /// Records the user's organization: its tier and policies apply from the next request.
    pub async fn record_org(&self, record: &OrgRecord) -> Result<()> {
        self.call("/org", record).await.map(|_| ())
    }

    /// Records the user's `analytics` consent: events stop (or resume) from the next request.
    pub async fn record_consent(&self, collects_events: bool) -> Result<()> {
        self.call("/consent", &ConsentRecord { collects_events }).await.map(|_| ())
    }

    /// Records that the user's entitlements changed (a usage report the origin applied).
    pub async fn touch_entitlements(&self) -> Result<()> {
        self.call("/entitlements/touch", &serde_json::json!({})).await.map(|_| ())
    }

    /// Deletes everything the object stores (an erased user's sessions, counters, tier).
    pub async fn wipe(&self) -> Result<()> {
        self.call("/wipe", &serde_json::json!({})).await.map(|_| ())
    }

    pub async fn record(&self, record: &GateRecord) -> Result<()> {
        self.call("/record", record).await.map(|_| ())
    }

    /// Counts one request of `class` against a per-IP quota.
    pub async fn throttle(&self, class: &str, window_secs: u64, quota: u32) -> Result<LimitAnswer> {
        // Six buckets: a refusal is never more than a sixth of the window early.
        let check = ThrottleCheck { class: class.to_owned(), window_secs, buckets: 6, quota };
        self.call_json("/throttle", &check).await
    }
}
