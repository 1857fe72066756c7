//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document of the public API. It is a static asset
//! (`scripts/build-worker` copies `src/openapi.json` to `public/api/v1/`), served by the platform
//! before the Worker runs, so the document costs the wasm nothing. The end-to-end suite validates
//! real answers against the served document, so it cannot drift from what the edge answers.
//!
//! A `GET` reaches the Worker only when the asset is missing from a deployment.

use domain::problem::{Problem, ProblemKind};

use crate::problem::EdgeError;

pub fn missing() -> EdgeError {
    EdgeError::Problem(Problem::new(
        ProblemKind::NotFound,
        "the OpenAPI document is a static asset of this deployment and it is missing: deploy with `scripts/build-worker` run first",
    ))
}
