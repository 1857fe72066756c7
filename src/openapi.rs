//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the public API, served as written
//! in `openapi.json` beside this file. The end-to-end suite validates real answers against it,
//! so the document cannot drift from what the edge serves.

use worker::{Headers, Response};

use crate::problem::EdgeError;

const DOCUMENT: &str = include_str!("openapi.json");

pub fn serve() -> Result<Response, EdgeError> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", "public, max-age=300")?;
    Ok(Response::ok(DOCUMENT)?.with_headers(headers))
}
