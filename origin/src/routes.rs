//! The origin's routes. Handlers extract, call once, and map the result.

use axum::extract::State;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use domain::identity::{Actor, UserId};
use domain::tier::Tier;
use serde::Deserialize;
use serde_json::Value;

use crate::email_change::{ConfirmEmailChange, StartEmailChange};
use crate::protection::{LoginRequest, MfaAnswer, MfaSend, Proof, StepUp};
use crate::sms::EnrolSms;
use crate::users::{ChangePassword, CreateUser};
use axum::{Json, Router};
use domain::problem::{Problem, ProblemKind};
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::errors::{problem_response, ApiError};
use crate::signed::require_edge_signature;
use crate::AppState;

pub fn router(state: AppState) -> Router {
    // The signature check wraps every internal path, including the catch-all, so an unsigned
    // caller cannot probe which internal routes exist.
    let internal = Router::new()
        .route("/ping", get(ping))
        .route("/users", post(create_user))
        .route("/users/{id}", get(read_user).patch(update_user))
        .route("/users/{id}/tier", post(change_tier))
        .route("/users/{id}/insights", get(insights))
        .route("/users/{id}/password", post(change_password))
        .route("/users/{id}/email", post(start_email_change))
        .route("/users/{id}/email/confirm", post(confirm_email_change))
        .route("/users/{id}/status", post(set_status))
        .route("/auth/verify", post(verify))
        .route("/events", post(store_events))
        .route("/jobs/runs", get(job_runs))
        .route("/jobs/{name}", post(start_job))
        .route("/auth/mfa", post(complete_mfa))
        .route("/auth/activate", post(activate))
        .route("/auth/mfa/send", post(send_code))
        .route("/users/{id}/mfa/totp", post(enrol_totp).delete(remove_totp))
        .route("/users/{id}/mfa/totp/confirm", post(confirm_totp))
        .route("/users/{id}/mfa/sms", post(enrol_sms).delete(remove_sms))
        .route("/users/{id}/mfa/sms/confirm", post(confirm_sms))
        .route("/users/{id}/security-events", get(security_events))
        .route("/users/{id}/audit", get(audit))
        .route("/users/{id}/step-up", post(step_up))
        .route("/{*rest}", any(not_found))
        .layer(middleware::from_fn_with_state(state.clone(), require_edge_signature));

    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(crate::metrics::serve))
        .nest("/internal", internal)
        .nest("/admin", crate::admin::router(state.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn(crate::metrics::track_http))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The one unsigned route: process and database liveness, for the operator's probes.
async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(json!({ "status": "ok", "service": "origin", "version": env!("CARGO_PKG_VERSION") })))
}

/// A signed no-op the edge calls to prove the whole signed path works.
async fn ping(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "time_ms": state.clock.now().0,
    }))
}

async fn not_found() -> impl IntoResponse {
    problem_response(&Problem::new(ProblemKind::NotFound, "no route matches this path"))
}

/// The JSON body of a request, or a 400 problem naming what is wrong with it.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::client(ProblemKind::BadRequest, format!("invalid body: {e}")))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| ApiError::client(ProblemKind::NotFound, format!("no user {raw}")))
}

async fn create_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: CreateUser = parse(&body)?;
    let view = state.accounts.create(&actor, request, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn read_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.accounts.read(&actor, &user_id(&id)?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    patch: Value,
    #[serde(default)]
    if_match: Option<i64>,
    /// When the caller's session last stepped up (the edge reads it from the session).
    #[serde(default)]
    step_up_at: Option<u64>,
}

async fn update_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: UpdateUser = parse(&body)?;
    let view = state
        .accounts
        .update(
            &actor,
            &user_id(&id)?,
            &request.patch,
            request.if_match,
            request.step_up_at,
            state.clock.now(),
        )
        .await?;
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeTier {
    tier: Tier,
}

async fn change_tier(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: ChangeTier = parse(&body)?;
    Ok(Json(state.accounts.change_tier(&actor, &user_id(&id)?, request.tier, state.clock.now()).await?))
}

async fn insights(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.accounts.insights(&actor, &user_id(&id)?, state.clock.now()).await?))
}

async fn verify(State(state): State<AppState>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let request: LoginRequest = parse(&body)?;
    Ok(Json(state.accounts.login(request, state.clock.now()).await?))
}

async fn complete_mfa(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let answer: MfaAnswer = parse(&body)?;
    Ok(Json(state.accounts.complete_mfa(answer, state.clock.now()).await?))
}

async fn send_code(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: MfaSend = parse(&body)?;
    Ok((StatusCode::ACCEPTED, Json(state.accounts.send_code(request, state.clock.now()).await?)))
}

#[derive(Deserialize, Default)]
struct PasswordProof {
    #[serde(default)]
    current_password: Option<String>,
}

async fn enrol_totp(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let proof: PasswordProof = if body.is_empty() { PasswordProof::default() } else { parse(&body)? };
    let answer = state
        .accounts
        .enrol_totp(&actor, &user_id(&id)?, proof.current_password.as_deref(), state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

/// A one-time code confirming an enrolment (TOTP, SMS).
#[derive(Deserialize)]
struct TotpCode {
    code: String,
}

async fn confirm_totp(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: TotpCode = parse(&body)?;
    Ok(Json(state.accounts.confirm_totp(&actor, &user_id(&id)?, &request.code, state.clock.now()).await?))
}

async fn remove_totp(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let proof: Proof = if body.is_empty() { Proof::default() } else { parse(&body)? };
    state.accounts.remove_totp(&actor, &user_id(&id)?, &proof, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A step-up for the caller's session: 200 with the time it proved at, or 202 when a code
/// was texted for the second call.
async fn step_up(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let proof: Proof = if body.is_empty() { Proof::default() } else { parse(&body)? };
    match state.accounts.step_up(&actor, &user_id(&id)?, proof, state.clock.now()).await? {
        StepUp::Done { at } => Ok((StatusCode::OK, Json(json!({ "stepped_up_at": at.0 })))),
        StepUp::CodeSent => Ok((StatusCode::ACCEPTED, Json(json!({ "sent": "sms" })))),
    }
}

async fn enrol_sms(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: EnrolSms = parse(&body)?;
    let answer = state.accounts.enrol_sms(&actor, &user_id(&id)?, request, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

async fn confirm_sms(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: TotpCode = parse(&body)?;
    Ok(Json(state.accounts.confirm_sms(&actor, &user_id(&id)?, &request.code, state.clock.now()).await?))
}

async fn remove_sms(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let proof: Proof = if body.is_empty() { Proof::default() } else { parse(&body)? };
    state.accounts.remove_sms(&actor, &user_id(&id)?, &proof, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn security_events(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.accounts.security_events(&actor, &user_id(&id)?).await?))
}

async fn start_email_change(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: StartEmailChange = parse(&body)?;
    let answer =
        state.accounts.start_email_change(&actor, &user_id(&id)?, request, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

async fn confirm_email_change(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: ConfirmEmailChange = parse(&body)?;
    Ok(Json(state.accounts.confirm_email_change(&actor, &user_id(&id)?, request, state.clock.now()).await?))
}

async fn audit(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.accounts.audit(&actor, &user_id(&id)?).await?))
}

async fn change_password(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let request: ChangePassword = parse(&body)?;
    state.accounts.change_password(&actor, &user_id(&id)?, request, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountStatus {
    disabled: bool,
}

async fn set_status(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: AccountStatus = parse(&body)?;
    Ok(Json(state.accounts.set_disabled(&actor, &user_id(&id)?, request.disabled, state.clock.now()).await?))
}

#[derive(Deserialize)]
struct EventBatch {
    events: Vec<crate::store::EventRow>,
}

/// Events from the edge's queue consumer. Only the system actor sends them.
async fn store_events(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    if actor != Actor::System {
        return Err(ApiError::client(ProblemKind::Forbidden, "events come from the edge's queue consumer"));
    }
    let batch: EventBatch = parse(&body)?;
    let now = state.clock.now();
    // The edge's metric aggregates are stored like any event (their id makes a redelivery a
    // duplicate) and added to the metrics only when stored the first time.
    let (aggregates, events): (Vec<_>, Vec<_>) =
        batch.events.into_iter().partition(|e| e.kind == domain::observe::EDGE_METRICS_EVENT);
    let (mut stored, mut duplicates) = state.store.store_events(&events, now).await?;
    for aggregate in aggregates {
        let (new, again) = state.store.store_events(std::slice::from_ref(&aggregate), now).await?;
        if new > 0 {
            match serde_json::from_value::<domain::observe::EdgeAggregate>(aggregate.data.clone()) {
                Ok(counts) => crate::metrics::edge(&counts),
                Err(e) => tracing::warn!(error = %e, "an edge metrics aggregate did not parse"),
            }
        }
        stored += new;
        duplicates += again;
    }
    crate::metrics::events(stored, duplicates);
    Ok(Json(serde_json::json!({ "stored": stored, "duplicates": duplicates })))
}

/// Starts a job in the background (the edge's cron triggers call this); 202 at once.
async fn start_job(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if actor != Actor::System {
        return Err(ApiError::client(ProblemKind::Forbidden, "jobs are started by the system"));
    }
    if !crate::jobs::JOBS.contains(&name.as_str()) {
        return Err(ApiError::client(ProblemKind::NotFound, format!("no job {name}")));
    }
    let options = crate::jobs::JobOptions {
        reports: state.config.reports_dir.clone(),
        inbox: state.config.inbox_dir.clone(),
        retention_days: state.config.event_retention_days,
        interactive: false,
    };
    let job = name.clone();
    let background = state.clone();
    tokio::spawn(async move {
        let now = background.clock.now();
        match crate::jobs::run(&background, &job, None, &options, crate::jobs::Trigger::Schedule, now).await {
            Ok(summary) => tracing::info!(job = %job, %summary, "job finished"),
            Err(e) => tracing::error!(job = %job, error = %e, "job failed"),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "job": name, "started": true }))))
}

async fn job_runs(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::json!({ "runs": state.store.job_runs(50).await? })))
}

async fn activate(State(state): State<AppState>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    #[derive(Deserialize)]
    struct Activation {
        token: String,
        password: String,
    }
    let request: Activation = parse(&body)?;
    Ok(Json(state.accounts.activate(&request.token, &request.password, state.clock.now()).await?))
}
