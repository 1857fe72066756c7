//! The per-user Durable Object ("gate"): the edge's strongly consistent state for one user.
//!
//! The edge consults a user's gate once per authenticated request, and that one call answers
//! everything the edge must know consistently: the latest profile version the user has been
//! acknowledged (so a read never returns something older than their own write, whatever KV
//! says), and the tier the edge enforces (changed by an upgrade, effective on the next
//! request). Later issues add the rate-limit window and sessions to the same call.
//!
//! State lives in the object's SQLite storage, so it survives eviction and restarts.

use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, State};

/// The gate's answer to a check.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateState {
    /// The newest profile version acknowledged to anyone through this edge, if any.
    pub profile_version: Option<u64>,
    /// The tier the edge enforces, once the gate has learnt it from the origin.
    pub tier: Option<String>,
}

/// What the edge tells the gate after the origin acknowledged a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub profile_version: u64,
    pub tier: String,
}

#[durable_object(fetch)]
pub struct Gate {
    state: State,
}

impl Gate {
    fn ensure_schema(&self) -> Result<()> {
        // One row per object; `id = 1` makes it a singleton.
        self.state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS gate (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                profile_version INTEGER,
                tier TEXT
            )",
            None,
        )?;
        Ok(())
    }

    fn load(&self) -> Result<GateState> {
        let rows: Vec<GateState> = self
            .state
            .storage()
            .sql()
            .exec("SELECT profile_version, tier FROM gate WHERE id = 1", None)?
            .to_array()?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    fn record(&self, record: &GateRecord) -> Result<GateState> {
        // Versions only move forward: two writes acknowledged out of order must not make the
        // gate forget the newer one.
        let version = i64::try_from(record.profile_version).unwrap_or(i64::MAX);
        self.state.storage().sql().exec(
            "INSERT INTO gate (id, profile_version, tier) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET
                tier = CASE WHEN excluded.profile_version >= COALESCE(gate.profile_version, 0)
                            THEN excluded.tier ELSE gate.tier END,
                profile_version = MAX(COALESCE(gate.profile_version, 0), excluded.profile_version)",
            vec![version.into(), record.tier.as_str().into()],
        )?;
        self.load()
    }
}

impl DurableObject for Gate {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        self.ensure_schema()?;
        match (req.method(), req.path().as_str()) {
            (Method::Post, "/check") => Response::from_json(&self.load()?),
            (Method::Post, "/record") => {
                let record: GateRecord = req.json().await?;
                Response::from_json(&self.record(&record)?)
            }
            _ => Response::error("no such gate operation", 404),
        }
    }
}

/// The edge's handle on one user's gate.
pub struct GateClient {
    stub: worker::Stub,
}

/// The binding name of the gate namespace (see `wrangler.toml`).
pub const BINDING: &str = crate::bindings::DO_GATE;

impl GateClient {
    pub fn for_user(env: &Env, user_id: &str) -> Result<Self> {
        Ok(Self { stub: env.durable_object(BINDING)?.get_by_name(user_id)? })
    }

    async fn call<T: Serialize>(&self, op: &str, body: &T) -> Result<GateState> {
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_body(Some(serde_json::to_string(body)?.into()));
        let req = Request::new_with_init(&format!("https://gate{op}"), &init)?;
        let mut res = self.stub.fetch_with_request(req).await?;
        if res.status_code() != 200 {
            return Err(worker::Error::RustError(format!("gate {op} answered {}", res.status_code())));
        }
        res.json().await
    }

    pub async fn check(&self) -> Result<GateState> {
        self.call("/check", &serde_json::json!({})).await
    }

    pub async fn record(&self, record: &GateRecord) -> Result<GateState> {
        self.call("/record", record).await
    }
}
