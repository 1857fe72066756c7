//! The public contract: what `src/openapi.json` must say of every operation, whatever the
//! operation does. The statuses follow from how the edge answers: a JSON body can be malformed
//! (400), too large (413) or of another media type (415); a bearer token can be missing or
//! refused (401) and counts against a quota (429); an `{id}` can name another user (403) or
//! none (404); whatever reaches the origin can find it failing (502) or unavailable (503). A
//! schema fuzzer run against the served document (README, "Checking the API contract") finds
//! the operations that break these rules; this test keeps them from coming back.

use std::collections::BTreeSet;

use anyhow::{ensure, Context};
use serde_json::Value;

use crate::{Ctx, TestFn};

pub const TESTS: &[(&str, TestFn)] = &[
    (
        "contract::every_operation_documents_the_statuses_it_can_answer",
        every_operation_documents_the_statuses_it_can_answer,
    ),
    ("contract::a_wrong_method_is_405_with_an_allow_header", a_wrong_method_is_405_with_an_allow_header),
];

/// Operations answered by the edge alone: no origin status applies.
const EDGE_ONLY: &[(&str, &str)] = &[
    ("get", "/.well-known/jwks.json"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/auth/token"),
    ("get", "/api/v1/integrations"),
];

fn every_operation_documents_the_statuses_it_can_answer(ctx: &Ctx) -> anyhow::Result<()> {
    // The served document is the checked-in one.
    let served = ctx.api.get("/api/v1/openapi.json", None)?;
    ensure!(served.status == 200, "GET /api/v1/openapi.json answered {}", served.status);
    let document: Value = served.body.clone();
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string(e2e::repo_root().join("src/openapi.json"))?)?;
    ensure!(document == checked_in, "the served document differs from src/openapi.json");

    let default_security = document.get("security").cloned().unwrap_or(Value::Null);
    let paths = document["paths"].as_object().context("paths")?;
    let mut missing = Vec::new();
    for (path, operations) in paths {
        for (method, operation) in operations.as_object().context("a path item")? {
            if !["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let documented: BTreeSet<&str> = operation["responses"]
                .as_object()
                .map(|r| r.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let security = operation.get("security").unwrap_or(&default_security);
            let secured = security.as_array().is_some_and(|s| !s.is_empty());
            let mut needed: BTreeSet<&str> = BTreeSet::new();
            if operation.get("requestBody").is_some() {
                needed.extend(["400", "413", "415"]);
            }
            if !EDGE_ONLY.contains(&(method.as_str(), path.as_str())) {
                // Every operation that reaches the origin is limited: per user or per address.
                needed.insert("429");
            }
            if secured {
                needed.extend(["401", "429"]);
                if path.contains("{id}") {
                    needed.extend(["403", "404"]);
                }
            }
            if !EDGE_ONLY.contains(&(method.as_str(), path.as_str())) {
                needed.extend(["502", "503"]);
            }
            let absent: Vec<&str> = needed.difference(&documented).copied().collect();
            if !absent.is_empty() {
                missing.push(format!("{} {path}: {}", method.to_uppercase(), absent.join(", ")));
            }
        }
    }
    ensure!(
        missing.is_empty(),
        "operations that do not document every status they can answer:\n{}",
        missing.join("\n")
    );
    Ok(())
}

fn a_wrong_method_is_405_with_an_allow_header(ctx: &Ctx) -> anyhow::Result<()> {
    let answer = e2e::http::client().delete(ctx.api.url("/health")).send()?;
    ensure!(answer.status().as_u16() == 405, "DELETE /health answered {}", answer.status());
    let allow = answer.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    ensure!(allow == "GET", "Allow is {allow:?}");
    // A method workers-rs has no name for is not taken for GET.
    let answer =
        e2e::http::client().request(reqwest::Method::from_bytes(b"QUERY")?, ctx.api.url("/health")).send()?;
    ensure!(answer.status().as_u16() == 405, "QUERY /health answered {}", answer.status());
    ensure!(
        answer
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json")),
        "a 405 is a problem+json"
    );
    Ok(())
}
