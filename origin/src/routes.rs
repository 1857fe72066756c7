//! The origin's routes. Handlers extract, call once, and map the result.

use axum::extract::State;
use axum::extract::{Extension, Path};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use domain::identity::{Actor, UserId};
use domain::wire::event::{EventBatch, EventKind, EventsStored};
use domain::wire::job::{Job, JobRuns, JobStarted};
use domain::wire::rights::{
    CancelErasure, Consents, ErasureCancelled, ErasureDone, ErasureScheduled, ExportPending, ExportStart,
    ExportStarted, ExportState, ParentalOutcome, PendingWipes,
};
use serde::Deserialize;
use serde_json::Value;

use crate::passkeys::{PasswordlessFinish, RegistrationFinish, RegistrationStart, Rename};
use crate::protection::{LoginRequest, MfaAnswer, MfaSend, Proof, StepUp};
use axum::{Json, Router};
use domain::problem::{Problem, ProblemKind};
use domain::wire::auth::{
    ActivateRequest, Activated, CodeSent, ForgotPasswordRequest, LoginVerified, PasswordResetDone,
    ResetPasswordRequest, ResetRequested, StepUpPending, StepUpProved, StepUpRequest, VerifyEmailRequest,
};
use domain::wire::passkeys::{
    AssertionOptions, Passkey, PasskeyList, PasskeyLoginOptions, RegistrationOptions,
};
use domain::wire::users::{
    AccountStatus, AuditLog, ChangePassword, Code, CreateUser, EmailChangeStarted, EnrolSms, FactorEnrolled,
    PasswordProof, SecurityEvents, Signup, SmsEnrolment, StatusChanged, TotpEnrolment, UpdateUser,
    UpgradeRequest, Upgraded, User,
};
use domain::wire::Factor;
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
        .route("/users/{id}", get(read_user).patch(update_user).delete(erase_user))
        .route("/users/{id}/export", post(start_export))
        .route("/users/{id}/exports/{export_id}", get(download_export))
        .route("/users/{id}/erasure/cancel", post(cancel_erasure))
        .route("/users/{id}/consents", get(read_consents).put(put_consents))
        .route("/erasures/pending", get(pending_edge_wipes))
        .route("/auth/parental-consent", post(parental_consent))
        .route("/erasures/{id}/wiped", post(edge_wiped))
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
        .route("/auth/password/forgot", post(forgot_password))
        .route("/auth/password/reset", post(reset_password))
        .route("/auth/email/verify", post(verify_email))
        .route("/users/{id}/email/verification", post(resend_verification))
        .route("/users/{id}/mfa/totp", post(enrol_totp).delete(remove_totp))
        .route("/users/{id}/mfa/totp/confirm", post(confirm_totp))
        .route("/users/{id}/mfa/sms", post(enrol_sms).delete(remove_sms))
        .route("/users/{id}/mfa/sms/confirm", post(confirm_sms))
        .route("/users/{id}/security-events", get(security_events))
        .route("/users/{id}/audit", get(audit))
        .route("/users/{id}/step-up", post(step_up))
        .route("/users/{id}/passkeys", get(list_passkeys).post(finish_passkey_registration))
        .route("/users/{id}/passkeys/options", post(start_passkey_registration))
        .route(
            "/users/{id}/passkeys/{credential}",
            axum::routing::patch(rename_passkey).delete(remove_passkey),
        )
        .route("/auth/webauthn/options", post(passwordless_options))
        .route("/auth/webauthn/login", post(passwordless_login))
        .route("/auth/mfa/webauthn", post(mfa_webauthn_options))
        .merge(crate::orgs::routes())
        .merge(crate::entitlements::routes())
        .merge(crate::integrations::routes())
        .merge(crate::personalisation::routes())
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
async fn ping(State(state): State<AppState>) -> Json<domain::wire::auth::Ping> {
    Json(domain::wire::auth::Ping {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        time_ms: state.clock.now().0,
    })
}

async fn not_found() -> impl IntoResponse {
    problem_response(&Problem::new(ProblemKind::NotFound, "no route matches this path"))
}

use crate::extract::{parse, ApiJson, OptionalJson};

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    raw.parse().map_err(|_| ApiError::client(ProblemKind::NotFound, format!("no user {raw}")))
}

async fn create_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    ApiJson(request): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<Signup>), ApiError> {
    let signup = state.accounts.create(&actor, request, state.clock.now()).await?;
    // A child's account waits for a parent: accepted, not yet created for use.
    let status = match signup {
        Signup::Pending(_) => StatusCode::ACCEPTED,
        Signup::Created(_) => StatusCode::CREATED,
    };
    Ok((status, Json(signup)))
}

async fn read_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.accounts.read(&actor, &user_id(&id)?).await?))
}

async fn update_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpdateUser>,
) -> Result<Json<User>, ApiError> {
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

async fn change_tier(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UpgradeRequest>,
) -> Result<Json<Upgraded>, ApiError> {
    Ok(Json(state.accounts.change_tier(&actor, &user_id(&id)?, request.tier, state.clock.now()).await?))
}

async fn insights(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<domain::wire::users::Insights>, ApiError> {
    Ok(Json(state.accounts.insights(&actor, &user_id(&id)?, state.clock.now()).await?))
}

async fn verify(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<LoginVerified>, ApiError> {
    Ok(Json(state.accounts.login(request, state.clock.now()).await?))
}

async fn complete_mfa(
    State(state): State<AppState>,
    ApiJson(answer): ApiJson<MfaAnswer>,
) -> Result<Json<LoginVerified>, ApiError> {
    Ok(Json(state.accounts.complete_mfa(answer, state.clock.now()).await?))
}

async fn send_code(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<MfaSend>,
) -> Result<(StatusCode, Json<CodeSent>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(state.accounts.send_code(request, state.clock.now()).await?)))
}

async fn enrol_totp(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    OptionalJson(proof): OptionalJson<PasswordProof>,
) -> Result<(StatusCode, Json<TotpEnrolment>), ApiError> {
    let answer = state
        .accounts
        .enrol_totp(&actor, &user_id(&id)?, proof.current_password.as_deref(), state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

async fn confirm_totp(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<Code>,
) -> Result<Json<FactorEnrolled>, ApiError> {
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
    OptionalJson(request): OptionalJson<StepUpRequest>,
) -> Result<axum::response::Response, ApiError> {
    let proof = Proof::from(request);
    Ok(match state.accounts.step_up(&actor, &user_id(&id)?, proof, state.clock.now()).await? {
        StepUp::Done { at } => Json(StepUpProved { stepped_up_at: at.0 }).into_response(),
        StepUp::CodeSent => {
            (StatusCode::ACCEPTED, Json(StepUpPending::CodeSent { sent: Factor::Sms })).into_response()
        }
        StepUp::Options(options) => (StatusCode::ACCEPTED, Json(options)).into_response(),
    })
}

async fn enrol_sms(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<EnrolSms>,
) -> Result<(StatusCode, Json<SmsEnrolment>), ApiError> {
    let answer = state.accounts.enrol_sms(&actor, &user_id(&id)?, request, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

async fn confirm_sms(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<Code>,
) -> Result<Json<FactorEnrolled>, ApiError> {
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
) -> Result<Json<SecurityEvents>, ApiError> {
    Ok(Json(state.accounts.security_events(&actor, &user_id(&id)?).await?))
}

async fn start_email_change(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<domain::wire::users::StartEmailChange>,
) -> Result<(StatusCode, Json<EmailChangeStarted>), ApiError> {
    let answer =
        state.accounts.start_email_change(&actor, &user_id(&id)?, request, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

async fn confirm_email_change(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<Code>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.accounts.confirm_email_change(&actor, &user_id(&id)?, request, state.clock.now()).await?))
}

async fn audit(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<AuditLog>, ApiError> {
    Ok(Json(state.accounts.audit(&actor, &user_id(&id)?).await?))
}

async fn change_password(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    state.accounts.change_password(&actor, &user_id(&id)?, request, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_status(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AccountStatus>,
) -> Result<Json<StatusChanged>, ApiError> {
    Ok(Json(state.accounts.set_disabled(&actor, &user_id(&id)?, request.disabled, state.clock.now()).await?))
}

/// Events from the edge's queue consumer. Only the system actor sends them.
async fn store_events(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    body: axum::body::Bytes,
) -> Result<Json<EventsStored>, ApiError> {
    if actor != Actor::System {
        return Err(ApiError::client(ProblemKind::Forbidden, "events come from the edge's queue consumer"));
    }
    let batch: EventBatch = parse(&body)?;
    let now = state.clock.now();
    // The edge's metric aggregates are stored like any event (their id makes a redelivery a
    // duplicate) and added to the metrics only when stored the first time.
    let (aggregates, events): (Vec<_>, Vec<_>) =
        batch.events.into_iter().partition(|e| e.kind == EventKind::EdgeMetrics);
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
    Ok(Json(EventsStored { stored, duplicates }))
}

/// Starts a job in the background (the edge's cron triggers call this); 202 at once.
async fn start_job(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<JobStarted>), ApiError> {
    if actor != Actor::System {
        return Err(ApiError::client(ProblemKind::Forbidden, "jobs are started by the system"));
    }
    let job: Job =
        name.parse().map_err(|_| ApiError::client(ProblemKind::NotFound, format!("no job {name}")))?;
    let options = crate::jobs::JobOptions {
        reports: state.config.reports_dir.clone(),
        inbox: state.config.inbox_dir.clone(),
        retention_days: state.config.event_retention_days,
        interactive: false,
    };
    let background = state.clone();
    tokio::spawn(async move {
        let now = background.clock.now();
        match crate::jobs::run(&background, job, None, &options, crate::jobs::Trigger::Schedule, now).await {
            Ok(summary) => tracing::info!(job = %job, %summary, "job finished"),
            Err(e) => tracing::error!(job = %job, error = %e, "job failed"),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(JobStarted { job, started: true })))
}

async fn job_runs(State(state): State<AppState>) -> Result<Json<JobRuns>, ApiError> {
    Ok(Json(JobRuns { runs: state.store.job_runs(50).await? }))
}

async fn activate(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ActivateRequest>,
) -> Result<Json<Activated>, ApiError> {
    Ok(Json(state.accounts.activate(&request.token, &request.password, state.clock.now()).await?))
}

async fn list_passkeys(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<Json<PasskeyList>, ApiError> {
    Ok(Json(state.accounts.list_passkeys(&actor, &user_id(&id)?).await?))
}

async fn start_passkey_registration(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<RegistrationOptions>, ApiError> {
    let request: RegistrationStart =
        if body.is_empty() { RegistrationStart::default() } else { parse(&body)? };
    Ok(Json(
        state.accounts.passkey_registration_start(&actor, &user_id(&id)?, request, state.clock.now()).await?,
    ))
}

async fn finish_passkey_registration(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Passkey>), ApiError> {
    let request: RegistrationFinish = parse(&body)?;
    let view = state
        .accounts
        .passkey_registration_finish(&actor, &user_id(&id)?, request, state.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn rename_passkey(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, credential)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Passkey>, ApiError> {
    let request: Rename = parse(&body)?;
    Ok(Json(state.accounts.rename_passkey(&actor, &user_id(&id)?, &credential, request).await?))
}

async fn remove_passkey(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, credential)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let proof: Proof = if body.is_empty() { Proof::default() } else { parse(&body)? };
    state.accounts.remove_passkey(&actor, &user_id(&id)?, &credential, &proof, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn passwordless_options(State(state): State<AppState>) -> Result<Json<PasskeyLoginOptions>, ApiError> {
    Ok(Json(state.accounts.passwordless_start(state.clock.now()).await?))
}

async fn passwordless_login(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<LoginVerified>, ApiError> {
    let request: PasswordlessFinish = parse(&body)?;
    Ok(Json(state.accounts.passwordless_finish(request, state.clock.now()).await?))
}

async fn mfa_webauthn_options(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<MfaSend>,
) -> Result<Json<AssertionOptions>, ApiError> {
    Ok(Json(state.accounts.mfa_webauthn_options(request, state.clock.now()).await?))
}

/// Always 202 for a well-formed address: the lookup and the email happen after the answer, so
/// an unknown address is told and timed like a known one.
async fn forgot_password(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ForgotPasswordRequest>,
) -> Result<(StatusCode, Json<ResetRequested>), ApiError> {
    let email = state.accounts.parse_forgot(&request)?;
    let accounts = std::sync::Arc::clone(&state.accounts);
    let now = state.clock.now();
    tokio::spawn(async move {
        if let Err(e) = accounts.forgot_password(email, now).await {
            tracing::warn!(error = %e, "a password reset could not be sent");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(ResetRequested {
            status: "accepted".into(),
            detail: "if an account has this address, a reset code is on its way".into(),
        }),
    ))
}

async fn reset_password(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<ResetPasswordRequest>,
) -> Result<Json<PasswordResetDone>, ApiError> {
    Ok(Json(state.accounts.reset_password(request, state.clock.now()).await?))
}

async fn verify_email(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<VerifyEmailRequest>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.accounts.verify_email(request, state.clock.now()).await?))
}

async fn resend_verification(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let answer = state.accounts.resend_verification(&actor, &user_id(&id)?, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// `?gpc=1`: the edge saw `Sec-GPC: 1` on the request.
#[derive(Deserialize, Default)]
struct GpcQuery {
    #[serde(default)]
    gpc: Option<String>,
}

impl GpcQuery {
    fn on(&self) -> bool {
        self.gpc.as_deref() == Some("1")
    }
}

async fn read_consents(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<GpcQuery>,
) -> Result<Json<Consents>, ApiError> {
    Ok(Json(state.accounts.consents(&actor, &user_id(&id)?, query.on(), state.clock.now()).await?))
}

async fn put_consents(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<GpcQuery>,
    body: axum::body::Bytes,
) -> Result<Json<Consents>, ApiError> {
    let request: Value = parse(&body)?;
    Ok(Json(
        state.accounts.put_consents(&actor, &user_id(&id)?, &request, query.on(), state.clock.now()).await?,
    ))
}

async fn start_export(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ExportStarted>), ApiError> {
    let request: ExportStart = if body.is_empty() { ExportStart::default() } else { parse(&body)? };
    let proof = Proof {
        current_password: request.current_password,
        method: request.method,
        code: request.code,
        step_up_at: request.step_up_at,
        credential: None,
    };
    let id = user_id(&id)?;
    let sessions = if request.sessions.is_null() { json!([]) } else { request.sessions };
    let export = state.accounts.start_export(&actor, &id, &proof, sessions, state.clock.now()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ExportStarted {
            location: format!("/api/v1/users/{id}/exports/{}", export.id),
            status: if export.ready_at.is_some() { ExportState::Ready } else { ExportState::Pending },
            requested_at: crate::users::rfc3339(export.created_at),
            export_id: export.id,
        }),
    ))
}

async fn download_export(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path((id, export_id)): Path<(String, String)>,
) -> Result<axum::response::Response, ApiError> {
    match state.accounts.download_export(&actor, &user_id(&id)?, &export_id, state.clock.now()).await? {
        crate::rights::Download::Pending { retry_after_secs } => Ok((
            StatusCode::ACCEPTED,
            [(axum::http::header::RETRY_AFTER, retry_after_secs.to_string())],
            Json(ExportPending { export_id, status: ExportState::Pending, retry_after: retry_after_secs }),
        )
            .into_response()),
        crate::rights::Download::Ready { zip, downloads_left } => Ok((
            StatusCode::OK,
            [
                (axum::http::header::CONTENT_TYPE, "application/zip".to_owned()),
                (axum::http::HeaderName::from_static("x-downloads-left"), downloads_left.to_string()),
            ],
            zip,
        )
            .into_response()),
    }
}

async fn erase_user(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    let request: crate::rights::EraseRequest =
        if body.is_empty() { Default::default() } else { parse(&body)? };
    let id = user_id(&id)?;
    let grace = state.config.erasure_grace_days;
    match state.accounts.request_erasure(&actor, &id, request, grace, state.clock.now()).await? {
        crate::rights::Erasure::Scheduled { due_at } => Ok((
            StatusCode::ACCEPTED,
            Json(ErasureScheduled {
                id: id.to_string(),
                erasure_due_at: crate::users::rfc3339(due_at),
                cancel: format!("/api/v1/users/{id}/erasure/cancel"),
                sessions_ended: None,
            }),
        )
            .into_response()),
        crate::rights::Erasure::Done { purged } => Ok((
            StatusCode::OK,
            Json(ErasureDone { id: id.to_string(), erased: true, purged, edge_wiped: None }),
        )
            .into_response()),
    }
}

async fn cancel_erasure(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ErasureCancelled>, ApiError> {
    let request: CancelErasure = parse(&body)?;
    Ok(Json(state.accounts.cancel_erasure(&user_id(&id)?, &request.password, state.clock.now()).await?))
}

/// Erased users whose edge state is still to be wiped (the edge's scheduled job asks).
async fn pending_edge_wipes(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<PendingWipes>, ApiError> {
    if actor != Actor::System {
        return Err(ApiError::client(ProblemKind::Forbidden, "the edge's scheduled job asks for these"));
    }
    Ok(Json(PendingWipes { user_ids: state.store.pending_edge_wipes(100).await? }))
}

/// The edge wiped an erased user's KV entry and Durable Object.
async fn edge_wiped(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // The system (the scheduled job) or the admin whose erasure call the edge just applied.
    if !actor.is_admin() {
        return Err(ApiError::client(ProblemKind::Forbidden, "only the edge confirms a wipe"));
    }
    state.store.edge_wiped(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn parental_consent(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<ParentalOutcome>, ApiError> {
    let answer: crate::rights::ParentalAnswer = parse(&body)?;
    Ok(Json(state.accounts.parental_consent(&answer, state.clock.now()).await?))
}
