//! The origin's routes. Handlers extract, call once, and map the result.

use axum::extract::State;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get};
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
        .route("/{*rest}", any(not_found))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_edge_signature,
        ));

    Router::new()
        .route("/health", get(health))
        .nest("/internal", internal)
        .fallback(not_found)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The one unsigned route: process and database liveness, for the operator's probes.
async fn health(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.store.ping().await?;
    Ok(Json(
        json!({ "status": "ok", "service": "origin", "version": env!("CARGO_PKG_VERSION") }),
    ))
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
    problem_response(&Problem::new(
        ProblemKind::NotFound,
        "no route matches this path",
    ))
}
