//! The gate in front of the internal API: a request passes only with a valid edge signature
//! (see `domain::signing`) over a fresh timestamp and a nonce never seen before. Every answer
//! to such a request is signed in turn (`x-origin-signature`, over its status, its body and
//! the request's nonce), so the edge can refuse an answer that did not come from here.

use axum::body::{to_bytes, Body};
use axum::extract::{OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::identity::Actor;
use domain::problem::ProblemKind;
use domain::signing::SignedResponse;
use domain::signing::{
    RawSignatureHeaders, SignatureError, SignedRequest, HEADER_ACTOR, HEADER_NONCE,
    HEADER_RESPONSE_SIGNATURE, HEADER_SIGNATURE, HEADER_TIMESTAMP, NONCE_RETENTION_MS,
};

use crate::errors::ApiError;
use crate::store::NonceOutcome;
use crate::AppState;

/// The largest body the internal API reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub async fn require_edge_signature(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::client(ProblemKind::PayloadTooLarge, "the body exceeds the origin's limit"))?;

    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let raw = RawSignatureHeaders {
        timestamp: header(HEADER_TIMESTAMP),
        nonce: header(HEADER_NONCE),
        signature: header(HEADER_SIGNATURE),
    };
    // Under `nest` the URI has lost its prefix; the signature covers the path as sent.
    let uri = parts.extensions.get::<OriginalUri>().map_or(&parts.uri, |o| &o.0);
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let actor_text = header(HEADER_ACTOR).unwrap_or("");
    let signed =
        SignedRequest { method: parts.method.as_str(), path_and_query, actor: actor_text, body: &bytes };
    let now = state.clock.now();
    let signature = signed.verify(&state.config.shared_secret, &raw, now)?;

    match state.store.remember_nonce(&signature.nonce, now, NONCE_RETENTION_MS).await? {
        NonceOutcome::Fresh => {}
        NonceOutcome::Replayed => return Err(SignatureError::Replayed.into()),
    }

    // The actor is trusted only now that the signature covering it has been checked.
    let actor: Actor = actor_text.parse().map_err(|_| SignatureError::Malformed(HEADER_ACTOR))?;
    // Nothing is done for a disabled account, whatever its tokens say (they may not have
    // expired yet at the edge when an admin disabled it). The refusal is signed like any answer.
    let disabled = match actor.user_id() {
        Some(id) => state.store.is_disabled(id.as_str()).await? == Some(true),
        None => false,
    };
    let response = if disabled {
        ApiError::client(ProblemKind::Forbidden, "this account is disabled").into_response()
    } else {
        let mut request = Request::from_parts(parts, Body::from(bytes));
        request.extensions_mut().insert(actor);
        next.run(request).await
    };

    // The answer is signed for the request's nonce. Its body is read whole to be hashed: the
    // internal API's answers are JSON documents, never streams.
    let (mut parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading an answer to sign it: {e}")))?;
    let answer_signature =
        SignedResponse { status: parts.status.as_u16(), request_nonce: &signature.nonce, body: &body }
            .sign(&state.config.shared_secret);
    let value = axum::http::HeaderValue::from_str(&answer_signature)
        .map_err(|e| ApiError::Internal(format!("signing an answer: {e}")))?;
    parts.headers.insert(HEADER_RESPONSE_SIGNATURE, value);
    Ok(Response::from_parts(parts, Body::from(body)))
}
