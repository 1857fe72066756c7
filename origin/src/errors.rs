//! The origin's error policy, in one place.
//!
//! - Outside requests (start-up, CLI jobs) errors are `anyhow::Error`, reported once and fatal.
//! - Inside requests every failure is an [`ApiError`]; handlers return `Result<_, ApiError>` and
//!   this module is the only place that turns one into an HTTP response, always RFC 9457
//!   `application/problem+json`.
//! - A 5xx body stays generic; its cause is logged here, once, with `tracing`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::problem::{Problem, ProblemKind, CONTENT_TYPE};
use domain::signing::SignatureError;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unsigned or badly signed request: {0}")]
    Signature(#[from] SignatureError),
    #[error("{0}")]
    BadRequest(String),
    #[error("no such resource: {0}")]
    NotFound(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            ApiError::Signature(e) => Problem::new(ProblemKind::Unauthenticated, e.to_string()),
            ApiError::BadRequest(detail) => Problem::new(ProblemKind::BadRequest, detail.clone()),
            ApiError::NotFound(what) => Problem::new(ProblemKind::NotFound, what.clone()),
            ApiError::PayloadTooLarge => Problem::new(
                ProblemKind::PayloadTooLarge,
                "the body exceeds the origin's limit",
            ),
            ApiError::Store(_) => Problem::new(
                ProblemKind::Internal,
                "the origin could not complete the request",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        problem_response(&problem)
    }
}

/// Renders a problem with its status and media type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, problem.to_json()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}
