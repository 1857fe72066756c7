//! The admin dashboard, under `/admin`: one server-rendered page (maud) whose tables carry
//! every number (usable without JavaScript), charts drawn by the vendored uPlot, and a JSON
//! document the page polls every few seconds to stay live.
//!
//! The routes sit behind the same edge signature as `/internal`: the edge authenticates the
//! admin and forwards as them, and every handler here checks the signed actor's role again, so
//! the origin never relies on the edge alone. Every number is read from the store (the truth
//! shared by every origin on one database), not from this process's metrics.

use std::collections::BTreeMap;

use axum::extract::{Extension, Path, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use domain::identity::{Actor, Role};
use domain::observe;
use domain::problem::ProblemKind;
use domain::time::UnixMillis;
use domain::wire::admin::{Business, Compliance, Dashboard, RecentSecurityEvent, Security, TierUsage};
use domain::wire::event::EventKind;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

use crate::errors::ApiError;
use crate::signed::require_edge_signature;
use crate::AppState;

/// The vendored chart library (uPlot 1.6.32, MIT, `origin/assets/uPlot.LICENSE`), copied from
/// its npm package and served from the binary.
const UPLOT_JS: &[u8] = include_bytes!("../assets/uPlot.iife.min.js");
const UPLOT_CSS: &[u8] = include_bytes!("../assets/uPlot.min.css");
const DASHBOARD_JS: &[u8] = include_bytes!("../assets/dashboard.js");
const DASHBOARD_CSS: &[u8] = include_bytes!("../assets/dashboard.css");

/// The page allows its own scripts and styles only: no inline script, no inline style, no
/// third party. The edge sends the same policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How far back the security section looks.
const SECURITY_WINDOW_MS: u64 = 24 * 3_600_000;
/// The most security events one dashboard reads.
const SECURITY_EVENTS_READ: u32 = 5_000;
/// How many recent security events the page lists.
const RECENT_LISTED: usize = 15;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/data", get(data))
        .route("/assets/{name}", get(asset))
        .layer(middleware::from_fn_with_state(state, require_edge_signature))
}

fn require_admin(actor: &Actor) -> Result<(), ApiError> {
    match actor {
        Actor::User { role: Role::Admin, .. } => Ok(()),
        _ => Err(ApiError::client(ProblemKind::Forbidden, "the dashboard is for admins")),
    }
}

async fn page(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, ApiError> {
    require_admin(&actor)?;
    let dashboard = read(&state, state.clock.now()).await?;
    let markup = render(&dashboard)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-store"),
        ],
        markup.into_string(),
    )
        .into_response())
}

async fn data(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<Dashboard>, ApiError> {
    require_admin(&actor)?;
    Ok(Json(read(&state, state.clock.now()).await?))
}

async fn asset(Extension(actor): Extension<Actor>, Path(name): Path<String>) -> Result<Response, ApiError> {
    require_admin(&actor)?;
    let (body, media_type) = match name.as_str() {
        "uplot.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uplot.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        "dashboard.js" => (DASHBOARD_JS, "text/javascript; charset=utf-8"),
        "dashboard.css" => (DASHBOARD_CSS, "text/css; charset=utf-8"),
        _ => return Err(ApiError::client(ProblemKind::NotFound, format!("no asset {name}"))),
    };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, media_type)], body).into_response())
}

fn field<'a>(value: &'a Value, key: &str) -> &'a Value {
    value.get(key).unwrap_or(&Value::Null)
}

fn u64_map(value: &Value) -> BTreeMap<String, u64> {
    value
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
        .unwrap_or_default()
}

/// Everything the dashboard shows, read at `now`.
pub async fn read(state: &AppState, now: UnixMillis) -> Result<Dashboard, ApiError> {
    let store = &state.store;
    let hour_ago = now.saturating_sub_ms(observe::ACTIVITY_MINUTES as u64 * 60_000);
    let counts = store.activity_counts(UnixMillis(hour_ago.0 - hour_ago.0 % 60_000)).await?;
    let activity = observe::activity(&counts, now.0);

    let mut tiers: BTreeMap<String, TierUsage> = domain::tier::ALL_TIERS
        .iter()
        .map(|t| {
            let tier = t.as_str().to_owned();
            (tier, TierUsage { tier: *t, users: 0, requests: 0, refusals: 0 })
        })
        .collect();
    for (tier, n) in store.tier_counts().await? {
        if let Some(t) = tiers.get_mut(&tier) {
            t.users = n;
        }
    }
    let kinds = [EventKind::ApiRequest.as_str(), EventKind::RateLimited.as_str()];
    for (kind, tier, n) in store.usage_by_tier(hour_ago, &kinds).await? {
        if let Some(t) = tiers.get_mut(&tier) {
            if kind == EventKind::ApiRequest.as_str() {
                t.requests += n;
            } else {
                t.refusals += n;
            }
        }
    }

    let events =
        store.security_events_since(now.saturating_sub_ms(SECURITY_WINDOW_MS), SECURITY_EVENTS_READ).await?;
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let mut scores = Vec::new();
    for (_, e) in &events {
        *by_kind.entry(e.kind.as_str()).or_default() += 1;
        if e.kind == "risk_assessed" {
            if let Some(score) =
                serde_json::from_str::<Value>(&e.detail).ok().and_then(|d| d.get("score")?.as_f64())
            {
                scores.push(score);
            }
        }
    }
    let count = |k: &str| by_kind.get(k).copied().unwrap_or(0);
    let security = Security {
        window_hours: SECURITY_WINDOW_MS / 3_600_000,
        failed_logins: count("login_failure"),
        softlocks: count("login_throttled") + count("mfa_throttled"),
        mfa: BTreeMap::from([
            ("asked".to_owned(), count("mfa_challenge")),
            ("accepted".to_owned(), count("mfa_success")),
            ("refused".to_owned(), count("mfa_failure")),
        ]),
        risk: observe::risk_distribution(&scores),
        recent: events
            .iter()
            .take(RECENT_LISTED)
            .map(|(user, e)| RecentSecurityEvent {
                at: crate::users::rfc3339(e.at),
                kind: e.kind.clone(),
                user_id: user.clone(),
            })
            .collect(),
        truncated: events.len() >= SECURITY_EVENTS_READ as usize,
    };

    let analytics = store.last_successful_run(crate::jobs::Job::GenerateAnalytics.as_str()).await?;
    let tiers_run = store.last_successful_run(crate::jobs::Job::AnalyzeTiers.as_str()).await?;
    let empty = Value::Null;
    let a = analytics.as_ref().map_or(&empty, |(_, s)| s);
    let t = tiers_run.as_ref().map_or(&empty, |(_, s)| s);
    let business = Business {
        analytics_at: analytics.as_ref().map(|(at, _)| crate::users::rfc3339(*at)),
        segments: u64_map(field(a, "segments")),
        churn_auc: field(a, "auc").as_f64(),
        churn_risk: field(a, "churn_risk")
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
        cohorts: serde_json::from_value(field(a, "cohorts").clone()).unwrap_or_default(),
        tiers_at: tiers_run.as_ref().map(|(at, _)| crate::users::rfc3339(*at)),
        recommendations: u64_map(field(t, "recommendations")),
    };

    Ok(Dashboard {
        generated_at: crate::users::rfc3339(now),
        activity,
        tiers: tiers.into_values().collect(),
        security,
        compliance: Compliance {
            counts: state.store.compliance_counts(now.saturating_sub_ms(24 * 3_600_000), now).await?,
        },
        business,
    })
}

/// `2026-11-25 18:02:41` from an RFC 3339 time (the page shows UTC to the second).
fn short_time(rfc3339: &str) -> String {
    let trimmed = rfc3339.split('.').next().unwrap_or(rfc3339).trim_end_matches('Z');
    trimmed.replacen('T', " ", 1)
}

fn minute_label(unix_secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix_secs).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

fn total(v: &[u64]) -> u64 {
    v.iter().sum()
}

fn meter(value: u64, max: u64) -> Markup {
    html! { meter min="0" max=(max.max(1)) value=(value) {} }
}

/// The page: every number in a table (no script needed), with a canvas slot per chart.
fn render(d: &Dashboard) -> Result<Markup, ApiError> {
    // The data the charts start from, in a JSON block the browser does not execute (the CSP
    // forbids inline scripts; this one is data). `<` is escaped so no text can close it.
    let initial =
        serde_json::to_string(d).map_err(|e| ApiError::Internal(e.to_string()))?.replace('<', "\\u003c");
    let a = &d.activity;
    let max_users = d.tiers.iter().map(|t| t.users).max().unwrap_or(0);
    let max_risk = d.security.risk.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let max_segment = d.business.segments.values().copied().max().unwrap_or(0);
    Ok(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Operations — user management" }
                // No favicon request (it would be one more authenticated round trip, and a 404).
                link rel="icon" href="data:,";
                link rel="stylesheet" href="/admin/assets/uplot.css";
                link rel="stylesheet" href="/admin/assets/dashboard.css";
                script src="/admin/assets/uplot.js" defer {}
                script src="/admin/assets/dashboard.js" defer {}
            }
            body {
                header {
                    h1 { "Operations" }
                    p.meta { "Generated " time #generated { (short_time(&d.generated_at)) } " UTC" " · " span #live { "static page" } }
                }
                script #dashboard-data type="application/json" { (PreEscaped(initial)) }
                section #activity {
                    h2 { "Real-time activity" small { "per minute, last hour" } }
                    div.kpis {
                        div.kpi { span.n #kpi-requests { (total(&a.requests)) } span.l { "API requests" } }
                        div.kpi { span.n #kpi-logins { (total(&a.logins)) } span.l { "logins" } }
                        div.kpi { span.n #kpi-failed { (total(&a.failed_logins)) } span.l { "failed logins" } }
                        div.kpi { span.n #kpi-signups { (total(&a.signups)) } span.l { "signups" } }
                    }
                    div.chart #chart-activity {}
                    details {
                        summary { "Minutes with activity" }
                        table #table-activity {
                            thead { tr { th { "minute (UTC)" } th { "requests" } th { "logins" } th { "failed logins" } th { "signups" } } }
                            tbody {
                                @for i in 0..a.minutes.len() {
                                    @let row = [a.requests.get(i), a.logins.get(i), a.failed_logins.get(i), a.signups.get(i)].map(|v| v.copied().unwrap_or(0));
                                    @if row.iter().any(|n| *n > 0) {
                                        tr { td { (minute_label(a.minutes.get(i).copied().unwrap_or(0))) } @for n in row { td.num { (n) } } }
                                    }
                                }
                            }
                        }
                    }
                }
                div.grid {
                    section #tiers {
                        h2 { "Usage by tier" small { "requests and refusals: last hour" } }
                        div.chart #chart-tiers {}
                        table #table-tiers {
                            thead { tr { th { "tier" } th { "users" } th {} th { "requests" } th { "quota refusals" } } }
                            tbody {
                                @for t in &d.tiers {
                                    tr { th { (t.tier.as_str()) } td.num { (t.users) } td { (meter(t.users, max_users)) } td.num { (t.requests) } td.num { (t.refusals) } }
                                }
                            }
                        }
                    }
                    section #security {
                        h2 { "Security" small { "last " (d.security.window_hours) " h" } }
                        div.kpis {
                            div.kpi.warn { span.n #kpi-security-failed { (d.security.failed_logins) } span.l { "failed logins" } }
                            div.kpi.warn { span.n #kpi-softlocks { (d.security.softlocks) } span.l { "softlocks" } }
                            @for (k, n) in &d.security.mfa {
                                div.kpi { span.n { (n) } span.l { "MFA " (k) } }
                            }
                        }
                        h3 { "Login risk" }
                        div.chart.small #chart-risk {}
                        table #table-risk {
                            thead { tr { th { "risk score" } th { "logins" } th {} } }
                            tbody { @for (label, n) in &d.security.risk { tr { th { (label) } td.num { (n) } td { (meter(*n, max_risk)) } } } }
                        }
                        h3 { "Recent security events" }
                        table #table-recent {
                            thead { tr { th { "when (UTC)" } th { "event" } th { "user" } } }
                            tbody {
                                @for e in &d.security.recent { tr { td.when { (short_time(&e.at)) } td { code { (e.kind) } } td { code.id { (e.user_id) } } } }
                                @if d.security.recent.is_empty() { tr { td colspan="3" { "none" } } }
                            }
                        }
                        @if d.security.truncated { p.note { "More events happened than the dashboard reads; counts cover the latest 5,000." } }
                    }
                    section #compliance {
                        h2 { "Compliance" }
                        table #table-compliance {
                            thead { tr { th { "requests" } th { "now" } th { "last 24 h" } } }
                            tbody {
                                tr { th { "erasures (grace period / run)" } td { (d.compliance.counts.erasures_pending) } td { (d.compliance.counts.erasures_done) } }
                                tr { th { "edge wipes to confirm" } td { (d.compliance.counts.edge_wipes_pending) } td { "" } }
                                tr { th { "exports (building / ready)" } td { (d.compliance.counts.exports_building) } td { (d.compliance.counts.exports_ready) " ready" } }
                                tr { th { "consent changes" } td { "" } td { (d.compliance.counts.consent_changes) } }
                                tr { th { "children waiting for a parent" } td { (d.compliance.counts.parental_pending) } td { "" } }
                            }
                        }
                        p.note { "Counts only: who asked is in each user's audit trail." }
                    }
                    section #business {
                        h2 { "Business" small { @match &d.business.analytics_at { Some(at) => { "analytics of " (short_time(at)) " UTC" }, None => { "no analytics run yet" } } } }
                        h3 { "Churn risk" @if let Some(auc) = d.business.churn_auc { small { "model AUC " (auc) } } }
                        @if d.business.churn_risk.is_empty() {
                            p.note { "No churn model yet: run generate-analytics once there is history." }
                        } @else {
                            div.chart.small #chart-churn {}
                            table #table-churn {
                                thead { tr { th { "churn probability" } th { "users" } } }
                                tbody { @for (i, n) in d.business.churn_risk.iter().enumerate() { tr { th { (i * 10) "–" (i * 10 + 10) " %" } td.num { (n) } } } }
                            }
                        }
                        h3 { "Segments" }
                        table #table-segments {
                            tbody {
                                @for (s, n) in &d.business.segments { tr { th { (s) } td.num { (n) } td { (meter(*n, max_segment)) } } }
                                @if d.business.segments.is_empty() { tr { td { "none yet" } } }
                            }
                        }
                        h3 { "Cohort retention" small { "share active in each 30-day period after signup" } }
                        table #table-cohorts.cohorts {
                            thead { tr { th { "cohort" } th { "users" } th { "periods" } } }
                            tbody {
                                @for c in &d.business.cohorts {
                                    tr { th { (c.cohort) } td.num { (c.users) } td { @for r in &c.retention { span.cell { (format!("{:.0}%", r * 100.0)) } } } }
                                }
                                @if d.business.cohorts.is_empty() { tr { td colspan="3" { "none yet" } } }
                            }
                        }
                        h3 { "Tier recommendations" small { @match &d.business.tiers_at { Some(at) => { "analysis of " (short_time(at)) " UTC" }, None => { "no tier analysis yet" } } } }
                        table #table-recommendations {
                            tbody {
                                @for (path, n) in &d.business.recommendations { tr { th { (path.replace("->", " → ")) } td.num { (n) } } }
                                @if d.business.recommendations.is_empty() { tr { td { "none" } } }
                            }
                        }
                    }
                }
                footer { p { "Numbers come from the database; " a href="/admin/data" { "JSON" } ". Charts refresh every 5 s." } }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventRow;
    use crate::testing::TestOrigin;

    fn event(id: &str, kind: EventKind, tier: &str, at: u64) -> EventRow {
        EventRow {
            id: id.to_owned(),
            kind,
            // No user: the store drops events about users that do not exist (erased ones).
            user_id: None,
            class: None,
            at,
            data: serde_json::json!({ "tier": tier }),
        }
    }

    #[tokio::test]
    async fn the_dashboard_counts_the_last_hour_by_minute_and_tier() {
        let origin = TestOrigin::start().await;
        let now = UnixMillis(1_700_000_000_000);
        let events = vec![
            event("e1", EventKind::ApiRequest, "premium", now.0 - 1_000),
            event("e2", EventKind::ApiRequest, "premium", now.0 - 61_000),
            event("e3", EventKind::RateLimited, "free", now.0 - 2_000),
            event("e4", EventKind::LoginSuccess, "free", now.0 - 3_000),
            // Older than the hour: not shown.
            event("e5", EventKind::ApiRequest, "premium", now.0 - 3_700_000),
        ];
        origin.state.store.store_events(&events, now).await.unwrap();
        let d = read(&origin.state, now).await.unwrap();
        assert_eq!(d.activity.requests.iter().sum::<u64>(), 2);
        assert_eq!(d.activity.requests[59], 1);
        assert_eq!(d.activity.requests[58], 1);
        assert_eq!(d.activity.logins[59], 1);
        let tier = |name: &str| d.tiers.iter().find(|t| t.tier.as_str() == name).unwrap();
        assert_eq!((tier("premium").requests, tier("premium").refusals), (2, 0));
        assert_eq!((tier("free").requests, tier("free").refusals), (0, 1));
        assert_eq!(d.compliance.counts, crate::store::ComplianceCounts::default());
        let page = render(&d).unwrap().into_string();
        assert!(page.contains("id=\"table-tiers\""), "the tiers table is in the page");
        // The data block is the whole JSON document (no text in it can close the element).
        let start = page.find("id=\"dashboard-data\"").unwrap();
        let open = start + page[start..].find('>').unwrap() + 1;
        let close = open + page[open..].find("</script>").unwrap();
        let data: Value = serde_json::from_str(&page[open..close]).unwrap();
        assert_eq!(data["activity"]["requests"][59], 1);
    }
}
