//! What only the edge sees, counted two ways:
//!
//! - each admission decision is written to Workers Analytics Engine (the `EDGE_ANALYTICS`
//!   dataset, queried with SQL in Cloudflare's dashboard) through the small [`AnalyticsSink`]
//!   trait, so a deployment without the binding (or a runtime whose emulation refuses a write)
//!   only loses that copy;
//! - the isolate sums the same counts in a [`domain::observe::EdgeAggregate`] and, at most
//!   every `EDGE_METRICS_FLUSH_SECS` (default 10 s), sends it as an `edge_metrics` event with a
//!   request's other events through the queue, so the origin's `/metrics` has the whole
//!   picture. The aggregate's labels are bounded (`domain::observe`).
//!
//! An isolate handles one request at a time per thread, so a `thread_local` is its state.

use std::cell::RefCell;

use domain::observe::EdgeAggregate;
use worker::{console_warn, AnalyticsEngineDataPointBuilder, Env};

use crate::bindings::{metrics_flush_ms, AE_EDGE_ANALYTICS};

thread_local! {
    static AGGREGATE: RefCell<EdgeAggregate> = RefCell::new(EdgeAggregate::default());
    /// When the isolate last shipped its aggregate (it starts counting on its first request).
    static LAST_SHIPPED: RefCell<Option<u64>> = const { RefCell::new(None) };
    static SINK_WARNED: RefCell<bool> = const { RefCell::new(false) };
}

fn with<R>(f: impl FnOnce(&mut EdgeAggregate) -> R) -> R {
    AGGREGATE.with(|a| f(&mut a.borrow_mut()))
}

/// One admission decision, as Analytics Engine stores it: index = tier, blobs = outcome and
/// reason, double = the gate's latency in milliseconds.
pub struct AdmissionPoint<'a> {
    pub tier: &'a str,
    pub outcome: &'a str,
    pub reason: &'a str,
    pub gate_ms: f64,
}

/// Where admission points go: Analytics Engine in production.
pub trait AnalyticsSink {
    fn write(&self, point: &AdmissionPoint<'_>) -> Result<(), String>;
}

impl AnalyticsSink for worker::AnalyticsEngineDataset {
    fn write(&self, point: &AdmissionPoint<'_>) -> Result<(), String> {
        let data = AnalyticsEngineDataPointBuilder::new()
            .indexes([point.tier])
            .add_blob(point.outcome)
            .add_blob(point.reason)
            .add_double(point.gate_ms)
            .build();
        self.write_data_point(&data).map_err(|e| e.to_string())
    }
}

/// Writes `point` to the Analytics Engine binding if there is one. A failure is logged once
/// per isolate and never fails the request.
fn write_point(env: &Env, point: &AdmissionPoint<'_>) {
    let result = match env.analytics_engine(AE_EDGE_ANALYTICS) {
        Ok(dataset) => dataset.write(point),
        Err(e) => Err(format!("no binding: {e}")),
    };
    if let Err(e) = result {
        SINK_WARNED.with(|w| {
            if !*w.borrow() {
                console_warn!("Analytics Engine write skipped ({AE_EDGE_ANALYTICS}): {e}");
                *w.borrow_mut() = true;
            }
        });
    }
}

/// A request admitted under `tier` (`none` for a per-address limit) after the gate answered in
/// `gate_ms`.
pub fn admitted(env: &Env, tier: &str, gate_ms: u64) {
    with(|a| {
        a.admit(tier);
        a.gate_latency.observe(gate_ms);
    });
    write_point(env, &AdmissionPoint { tier, outcome: "admitted", reason: "", gate_ms: gate_ms as f64 });
}

/// A request refused (429) under `tier` for `reason` (see `domain::observe::REFUSAL_REASONS`).
pub fn refused(env: &Env, tier: &str, reason: &str, gate_ms: u64) {
    with(|a| {
        a.refuse(tier, reason);
        a.gate_latency.observe(gate_ms);
    });
    write_point(env, &AdmissionPoint { tier, outcome: "refused", reason, gate_ms: gate_ms as f64 });
}

/// A profile read answered from the KV cache (`true`) or by the origin.
pub fn profile_read(from_cache: bool) {
    with(|a| {
        if from_cache {
            a.cache_hits += 1;
        } else {
            a.origin_reads += 1;
        }
    });
}

/// A bearer token refused for `reason` (see `domain::observe::TOKEN_FAILURE_REASONS`).
pub fn token_failure(reason: &str) {
    with(|a| a.token_failure(reason));
}

/// The aggregate to ship now, if the flush interval has passed since the last one and there is
/// something to ship; the isolate starts a new one.
pub fn take_due(env: &Env, now_ms: u64) -> Option<EdgeAggregate> {
    let interval = metrics_flush_ms(env);
    let due = LAST_SHIPPED.with(|last| {
        let mut last = last.borrow_mut();
        match *last {
            Some(at) if now_ms.saturating_sub(at) < interval => false,
            Some(_) => true,
            None => {
                // The first request of an isolate starts its interval (and ships at once when
                // the interval is zero).
                *last = Some(now_ms);
                interval == 0
            }
        }
    });
    if !due || with(|a| a.is_empty()) {
        return None;
    }
    LAST_SHIPPED.with(|last| *last.borrow_mut() = Some(now_ms));
    Some(with(std::mem::take))
}
