//! The OpenAPI 3.1 document of the public API, generated: the schemas come from the types in
//! `domain::wire` (their `utoipa::ToSchema` derives, behind `domain`'s `openapi` feature), the
//! operations from the annotations in this crate, one module per area of the API, and the
//! problem responses every operation shares from `common`.
//!
//! `src/openapi.json` is this document, checked in: the edge serves it as a static asset (so it
//! costs the wasm nothing) and a test fails when it differs from what this crate generates.
//! After changing a wire type or an operation: `cargo run -p contract -- --write`.

use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

pub mod admin;
pub mod auth;
pub mod common;
pub mod entitlements;
pub mod integrations;
pub mod orgs;
pub mod passkeys;
pub mod personalization;
pub mod rights;
pub mod users;

use domain::problem::Problem;
use domain::wire::{Factor, Role, Tier};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "User management API",
        version = "0.1.0",
        description = "The public API of the user-management edge. Errors are RFC 9457 application/problem+json with a stable type URI.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    servers((url = "http://127.0.0.1:8787", description = "scripts/run")),
    components(
        schemas(Problem, Tier, Role, Factor),
        responses(
            common::BadRequest,
            common::Unauthenticated,
            common::Forbidden,
            common::NotFound,
            common::PayloadTooLarge,
            common::UnsupportedMediaType,
            common::TooManyRequests,
            common::BadGateway,
            common::ServiceUnavailable,
        )
    ),
    modifiers(&SecuritySchemes)
)]
struct Base;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, scheme) in common::security_schemes() {
            components.add_security_scheme(name, scheme);
        }
    }
}

/// The whole document.
pub fn document() -> Document {
    let mut document = Base::openapi();
    for area in [
        auth::Api::openapi(),
        users::Api::openapi(),
        passkeys::Api::openapi(),
        rights::Api::openapi(),
        admin::Api::openapi(),
        orgs::Api::openapi(),
        entitlements::Api::openapi(),
        integrations::Api::openapi(),
        personalization::Api::openapi(),
    ] {
        document.merge(area);
    }
    add_shared_problems(&mut document);
    add_rate_limit_headers(&mut document);
    document
}

/// Operations the edge answers without the origin (no 502).
const EDGE_ONLY: [&str; 4] = ["jwks", "openapi", "introspectToken", "integrationCatalogue"];
/// Operations answered from what the isolate holds, without a gate or the origin: not limited
/// (no 429) and always available (no 503).
const STATIC: [&str; 2] = ["jwks", "openapi"];
/// Operations whose only call is the user's gate (the token introspection): documented
/// without a 503.
const GATE_ONLY: [&str; 1] = ["introspectToken"];

/// The problem answers many operations share, added by rule instead of repeated in each
/// annotation (an operation that says more about one of these statuses keeps its own):
/// a body too large (413) or of the wrong type (415) for every operation that takes one; a
/// refusal for the quota (429) for every limited operation; the origin's failure (502) for
/// every operation that calls it, and the service unavailable (503) for every one but the
/// isolate's own answers.
fn add_shared_problems(document: &mut Document) {
    use utoipa::openapi::{Ref, RefOr};
    for item in document.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
            .into_iter()
            .flatten()
        {
            let id = operation.operation_id.clone().unwrap_or_default();
            let has_body = operation.request_body.is_some();
            let shared = [
                ("413", "PayloadTooLarge", has_body),
                ("415", "UnsupportedMediaType", has_body),
                ("429", "TooManyRequests", !STATIC.contains(&id.as_str())),
                ("502", "BadGateway", !EDGE_ONLY.contains(&id.as_str())),
                (
                    "503",
                    "ServiceUnavailable",
                    !STATIC.contains(&id.as_str()) && !GATE_ONLY.contains(&id.as_str()),
                ),
            ];
            for (status, name, applies) in shared {
                if applies {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
                }
            }
        }
    }
}

/// Every success answer of an operation that needs a user's token carries the rate-limit
/// headers (the edge admits each such request through the user's gate), so the operations do
/// not each repeat them.
fn add_rate_limit_headers(document: &mut Document) {
    use utoipa::openapi::RefOr;
    for item in document.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
            .into_iter()
            .flatten()
        {
            let bearer = operation.security.iter().flatten().any(|requirement| {
                serde_json::to_value(requirement)
                    .ok()
                    .and_then(|v| v.as_object().map(|o| o.contains_key("bearerAuth")))
                    .unwrap_or(false)
            });
            if !bearer {
                continue;
            }
            for (status, response) in operation.responses.responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                    let built =
                        common::with_rate_limit_headers(utoipa::openapi::ResponseBuilder::new()).build();
                    for (name, header) in built.headers {
                        response.headers.entry(name).or_insert(header);
                    }
                }
            }
        }
    }
}

/// The document as the checked-in file holds it: pretty-printed with one space per level, and
/// a final newline.
pub fn to_json(document: &Document) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // The document is made of strings, maps and numbers: serialising it cannot fail.
    if document.serialize(&mut serializer).is_err() {
        return String::new();
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    text.push('\n');
    text
}

/// Where the checked-in document lives.
pub fn checked_in_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/openapi.json")
}
