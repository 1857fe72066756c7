//! The origin's error policy, in one place.
//!
//! - Outside requests (start-up, CLI jobs) errors are `anyhow::Error`, reported once and fatal.
//! - Inside requests every failure is an [`ApiError`]; handlers return `Result<_, ApiError>` and
//!   this module is the only place that turns one into an HTTP response, always RFC 9457
//!   `application/problem+json`.
//! - A client error carries its problem (kind, detail, extension members) from where it was
//!   decided; a server error carries its cause, which is logged here, once, while the body
//!   stays generic.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::problem::{Problem, ProblemKind, CONTENT_TYPE};
use domain::signing::SignatureError;

use crate::crypto::CryptoError;
use crate::passwords::HashError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unsigned or badly signed request: {0}")]
    Signature(#[from] SignatureError),
    /// A refusal decided by the service: answered as this problem.
    #[error("{}", .0.detail.clone().unwrap_or_default())]
    Client(Problem),
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    #[error("encryption failed: {0}")]
    Crypto(#[from] CryptoError),
    #[error("{0}")]
    Hash(#[from] HashError),
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn client(kind: ProblemKind, detail: impl Into<String>) -> Self {
        ApiError::Client(Problem::new(kind, detail))
    }

    fn problem(&self) -> Problem {
        match self {
            ApiError::Signature(e) => Problem::new(ProblemKind::Unauthenticated, e.to_string()),
            ApiError::Client(problem) => problem.clone(),
            ApiError::Store(StoreError::DuplicateEmail) => {
                Problem::new(ProblemKind::Conflict, "a user with this email already exists")
            }
            ApiError::Hash(HashError::Busy { retry_after_secs }) => Problem::new(
                ProblemKind::Overloaded,
                format!("too many password checks at once; retry in {retry_after_secs} s"),
            )
            .with("retry_after", *retry_after_secs),
            ApiError::Store(_) | ApiError::Crypto(_) | ApiError::Hash(_) | ApiError::Internal(_) => {
                Problem::new(ProblemKind::Internal, "the origin could not complete the request")
            }
        }
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError::Client(p)
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

/// Renders a problem with its status and media type; a problem that names its wait in
/// `retry_after` (seconds) also carries it as `Retry-After` (RFC 9110 §10.2.3).
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, problem.to_json()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Some(secs) = problem.extensions.get("retry_after").and_then(serde_json::Value::as_u64) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
