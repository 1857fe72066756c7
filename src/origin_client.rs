//! Signed calls from the edge to the origin (see `domain::signing` for the scheme). The
//! origin's answers are signed too, over their status, their body and the request's nonce: an
//! answer without a valid signature is refused, so nothing between the two can forge one (a
//! login answer naming the admin role, say).

use std::time::Duration;

use domain::identity::Actor;
use domain::signing::{
    SignatureError, SignedRequest, SignedResponse, HEADER_ACTOR, HEADER_NONCE, HEADER_RESPONSE_SIGNATURE,
    HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use domain::time::UnixMillis;
use futures_util::future::{select, Either};
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::bindings::OriginConfig;

/// How long the edge waits for the origin before it answers 503 itself.
pub const ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("the origin could not be reached: {0}")]
    Unreachable(String),
    #[error("the origin did not answer within {} s", ORIGIN_TIMEOUT.as_secs())]
    Timeout,
    #[error("the edge could not build the request: {0}")]
    Build(String),
    /// The answer's signature is absent or wrong: it did not come from the origin unaltered.
    #[error("the origin's answer (status {status}) failed its signature check: {cause}")]
    Unsigned { status: u16, cause: SignatureError },
}

/// An answer from the origin, whatever its status.
#[derive(Debug)]
pub struct OriginResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

pub struct OriginClient {
    config: OriginConfig,
}

/// The time, by one call of the runtime's `Date.now()` (workers-rs' `Date::now` builds a `Date`
/// object and reads it back: two calls and an allocation, several times a request).
pub fn now() -> UnixMillis {
    let ms = worker::js_sys::Date::now();
    // Milliseconds since 1970 as a float: whole, positive and far below 2^53 on any clock
    // this runs on; anything else reads as 0.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    UnixMillis(if ms.is_finite() && ms > 0.0 { ms as u64 } else { 0 })
}

impl OriginClient {
    pub fn new(config: OriginConfig) -> Self {
        Self { config }
    }

    /// Sends a signed request. `path_and_query` starts with `/`.
    pub async fn send_as(
        &self,
        actor: &Actor,
        method: Method,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<OriginResponse, OriginError> {
        let actor_text = actor.to_string();
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).map_err(|e| OriginError::Build(e.to_string()))?;
        let nonce = hex::encode(nonce);
        let signature = SignedRequest { method: method.as_ref(), path_and_query, actor: &actor_text, body }
            .sign(&self.config.secret, now(), &nonce);

        let build = |e: worker::Error| OriginError::Build(e.to_string());
        let headers = Headers::new();
        headers.set(HEADER_TIMESTAMP, &signature.timestamp.0.to_string()).map_err(build)?;
        headers.set(HEADER_NONCE, &signature.nonce).map_err(build)?;
        headers.set(HEADER_ACTOR, &actor_text).map_err(build)?;
        headers.set(HEADER_SIGNATURE, &signature.signature).map_err(build)?;
        if !body.is_empty() {
            headers.set("content-type", "application/json").map_err(build)?;
        }
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        if !body.is_empty() {
            init.with_body(Some(worker::js_sys::Uint8Array::from(body).into()));
        }
        let url = format!("{}{}", self.config.base_url, path_and_query);
        let request = Request::new_with_init(&url, &init).map_err(build)?;

        let fetch = Fetch::Request(request);
        let secret = &self.config.secret;
        let call = Box::pin(async move {
            let response = fetch.send().await.map_err(|e| OriginError::Unreachable(e.to_string()))?;
            let status = response.status_code();
            let given = response.headers().get(HEADER_RESPONSE_SIGNATURE).ok().flatten();
            let body = crate::http::response_bytes(response)
                .await
                .map_err(|e| OriginError::Unreachable(e.to_string()))?;
            SignedResponse { status, request_nonce: &nonce, body: &body }
                .verify(secret, given.as_deref())
                .map_err(|cause| OriginError::Unsigned { status, cause })?;
            Ok(OriginResponse { status, body })
        });
        match select(call, Delay::from(ORIGIN_TIMEOUT)).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(OriginError::Timeout),
        }
    }
}
