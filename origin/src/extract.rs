//! Extractors for the internal API's bodies, whose rejection is a problem+json 400 naming what
//! is wrong (axum's own `Json` answers plain text, and insists on a content type the edge has
//! already checked).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use domain::problem::ProblemKind;
use serde::de::DeserializeOwned;

use crate::errors::ApiError;

/// A JSON body deserialised into `T`, or a 400 problem.
pub struct ApiJson<T>(pub T);

/// A JSON body deserialised into `T`, or `T::default()` when the body is empty (a DELETE whose
/// proof is optional, an enrolment without a password).
pub struct OptionalJson<T>(pub T);

/// Parses a JSON body, or names what is wrong with it and where (`invalid body at
/// `profile.language`: …`): serde's own message gives a line and column, not the field.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let detail = if path == "." {
            format!("invalid body: {}", e.inner())
        } else {
            format!("invalid body at `{path}`: {}", e.inner())
        };
        ApiError::client(ProblemKind::BadRequest, detail)
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::client(ProblemKind::BadRequest, format!("invalid body: {e}")))?;
    Ok(parsed)
}

async fn bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|e| ApiError::client(ProblemKind::BadRequest, format!("unreadable body: {e}")))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Ok(ApiJson(parse(&bytes(request, state).await?)?))
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let body = bytes(request, state).await?;
        if body.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        Ok(OptionalJson(parse(&body)?))
    }
}
