//! The one place the edge turns an error into a response: RFC 9457 problem+json.

use domain::problem::{Problem, ProblemKind, CONTENT_TYPE};
use worker::{Headers, Response, Result};

pub fn respond(problem: &Problem) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", CONTENT_TYPE)?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::ok(problem.to_json())?
        .with_status(problem.status)
        .with_headers(headers))
}

pub fn respond_kind(kind: ProblemKind, detail: impl Into<String>) -> Result<Response> {
    respond(&Problem::new(kind, detail))
}
