//! The edge's error policy, in one place. Handlers return `Result<Response, EdgeError>`;
//! [`EdgeError::into_response`] is the only place an error becomes a response, always RFC 9457
//! problem+json. A 5xx body stays generic; its cause is logged here, once.

use domain::problem::{Problem, ProblemKind, CONTENT_TYPE};
use worker::{console_error, Headers, Response, Result};

use crate::origin_client::OriginError;

#[derive(Debug)]
pub enum EdgeError {
    /// A problem to answer as it is: a refusal decided at the edge, or one the origin gave.
    Problem(Problem),
    /// The origin could not be reached or did not answer in time.
    Origin(OriginError),
    /// The origin answered with a server error.
    OriginFailed { status: u16 },
    /// The runtime failed (KV, Durable Object, a malformed binding).
    Runtime(worker::Error),
}

impl EdgeError {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self::Problem(Problem::new(kind, detail))
    }

    pub fn into_response(self, path: &str) -> Result<Response> {
        let problem = self.into_problem(path);
        let mut response = respond(&problem)?;
        // A 405 lists the methods the resource has, in the header RFC 9110 requires.
        if problem.status == 405 {
            if let Some(allow) = problem.extensions.get("allow").and_then(serde_json::Value::as_str) {
                response.headers_mut().set("allow", allow)?;
            }
        }
        // A 429 (softlock) or 503 (saturation) passed through from the origin says its wait in
        // `retry_after`.
        if matches!(problem.status, 429 | 503) {
            if let Some(secs) = problem.extensions.get("retry_after").and_then(serde_json::Value::as_u64) {
                response.headers_mut().set("retry-after", &secs.to_string())?;
            }
        }
        Ok(response)
    }

    fn into_problem(self, path: &str) -> Problem {
        match self {
            EdgeError::Problem(p) => p,
            EdgeError::Origin(e @ OriginError::Unsigned { .. }) => {
                // Something between the edge and the origin answered, or altered the answer:
                // nothing of it is used, and nothing of it is told.
                console_error!("{path}: {e}");
                Problem::new(ProblemKind::BadGateway, "the origin service failed to complete the request")
            }
            EdgeError::Origin(e) => {
                console_error!("{path}: {e}");
                Problem::new(ProblemKind::OriginUnavailable, "the origin service is unavailable; retry later")
            }
            EdgeError::OriginFailed { status } => {
                console_error!("{path}: the origin answered {status}");
                Problem::new(ProblemKind::BadGateway, "the origin service failed to complete the request")
            }
            EdgeError::Runtime(e) => {
                console_error!("{path}: {e}");
                Problem::new(ProblemKind::Internal, "the edge could not complete the request")
            }
        }
    }
}

impl From<worker::Error> for EdgeError {
    fn from(e: worker::Error) -> Self {
        EdgeError::Runtime(e)
    }
}

impl From<worker::kv::KvError> for EdgeError {
    fn from(e: worker::kv::KvError) -> Self {
        EdgeError::Runtime(worker::Error::RustError(format!("KV: {e}")))
    }
}

impl From<OriginError> for EdgeError {
    fn from(e: OriginError) -> Self {
        EdgeError::Origin(e)
    }
}

impl From<serde_json::Error> for EdgeError {
    fn from(e: serde_json::Error) -> Self {
        EdgeError::Runtime(worker::Error::RustError(format!("JSON: {e}")))
    }
}

pub fn respond(problem: &Problem) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", CONTENT_TYPE)?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(problem.to_json())?.with_status(problem.status).with_headers(headers))
}
