//! Every answer the suite receives is checked against the OpenAPI document (`src/openapi.json`,
//! the one the edge serves; `contract::…` checks that they are the same): when the request's
//! method and path are a documented operation, the answer's status must be documented for it,
//! and a JSON body must match the schema documented for that status and media type. So every
//! end-to-end test is also a test of the document, and the document cannot drift from the API.
//!
//! Requests the document does not describe (a wrong method, an unknown path, the origin's
//! internal API) are not checked here; `contract::` has the tests for them.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use crate::api::Answer;

struct Document {
    paths: Vec<(Vec<String>, String)>,
    root: Value,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

fn document() -> Option<&'static Document> {
    static DOCUMENT: OnceLock<Option<Document>> = OnceLock::new();
    DOCUMENT
        .get_or_init(|| {
            let text = std::fs::read_to_string(crate::repo_root().join("src/openapi.json")).ok()?;
            let root: Value = serde_json::from_str(&text).ok()?;
            let paths = root["paths"]
                .as_object()?
                .keys()
                .map(|p| (p.split('/').map(str::to_owned).collect(), p.clone()))
                .collect();
            Some(Document { paths, root, validators: Mutex::new(HashMap::new()) })
        })
        .as_ref()
}

/// The documented path template `path` is an instance of, preferring literal segments
/// (`/users/{id}/export` over `/users/{id}/{anything}`).
fn template<'d>(document: &'d Document, path: &str) -> Option<&'d str> {
    let segments: Vec<&str> = path.split('/').collect();
    document
        .paths
        .iter()
        .filter(|(pattern, _)| {
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p == s || (p.starts_with('{') && p.ends_with('}') && !s.is_empty()))
        })
        .max_by_key(|(pattern, _)| pattern.iter().filter(|p| !p.starts_with('{')).count())
        .map(|(_, template)| template.as_str())
}

fn resolve<'d>(root: &'d Value, node: &'d Value) -> &'d Value {
    match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/")) {
        Some(pointer) => root.pointer(&format!("/{pointer}")).unwrap_or(node),
        None => node,
    }
}

/// Checks one answer to `method path` (the path without its query) against the document.
pub fn check(method: &str, path: &str, answer: &Answer) -> Result<()> {
    let Some(document) = document() else { return Ok(()) };
    let Some(template) = template(document, path) else { return Ok(()) };
    let method = method.to_ascii_lowercase();
    let Some(operation) = document.root["paths"][template].get(&method) else { return Ok(()) };
    let status = answer.status.to_string();
    let Some(response) =
        operation["responses"].get(&status).or_else(|| operation["responses"].get("default"))
    else {
        bail!(
            "the document does not list {status} for {} {template}, and the API answered it: {}",
            method.to_uppercase(),
            answer.body
        );
    };
    let response = resolve(&document.root, response);
    if answer.body.is_null() {
        return Ok(());
    }
    let media = answer.content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !(media == "application/json" || media.ends_with("+json")) {
        return Ok(());
    }
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        bail!(
            "{} {template} answered {status} with a {media} body, and the document lists no body",
            method.to_uppercase()
        );
    };
    let Some(schema) = content.get(&media).map(|c| &c["schema"]) else {
        bail!(
            "{} {template} answered {status} as {media}; the document lists {:?}",
            method.to_uppercase(),
            content.keys().collect::<Vec<_>>()
        );
    };
    // A media type documented without a schema (the document itself) takes any body.
    if schema.is_null() {
        return Ok(());
    }
    let key = format!("{method} {template} {status} {media}");
    let validator = {
        let mut cache = document.validators.lock().map_err(|_| anyhow!("validator cache poisoned"))?;
        match cache.get(&key) {
            Some(v) => v.clone(),
            None => {
                let mut root = schema.clone();
                if let Some(object) = root.as_object_mut() {
                    object.insert("components".into(), document.root["components"].clone());
                } else {
                    root = json!({ "allOf": [schema], "components": document.root["components"] });
                }
                let validator = std::sync::Arc::new(
                    jsonschema::draft202012::new(&root).map_err(|e| anyhow!("the schema of {key}: {e}"))?,
                );
                cache.insert(key.clone(), validator.clone());
                validator
            }
        }
    };
    let errors: Vec<String> = validator
        .iter_errors(&answer.body)
        .take(5)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    if !errors.is_empty() {
        bail!("the answer does not match the document ({key}): {errors:?} in {}", answer.body);
    }
    Ok(())
}
