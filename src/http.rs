//! HTTP plumbing shared by the handlers: reading JSON bodies with limits, writing JSON answers
//! with validators, and forwarding to the origin with its problems passed through.

use domain::identity::Actor;
use domain::problem::{Problem, ProblemKind};
use serde_json::Value;
use worker::{Env, Headers, Method, Request, Response};

use crate::bindings::OriginConfig;
use crate::origin_client::{OriginClient, OriginResponse};
use crate::problem::EdgeError;

/// The largest request body the public API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub const JSON: &str = "application/json";
pub const MERGE_PATCH_JSON: &str = "application/merge-patch+json";

/// The bytes of a response the edge received (the origin's), read by one call of the runtime's
/// `arrayBuffer()`: workers-rs reads a fetched body through a stream reader, a promise and a copy
/// per chunk.
pub async fn response_bytes(res: Response) -> worker::Result<Vec<u8>> {
    let raw: worker::web_sys::Response = res.into();
    let buffer = worker::wasm_bindgen_futures::JsFuture::from(raw.array_buffer()?).await?;
    Ok(worker::js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Reads a JSON object body whose media type is one of `accepted`.
pub async fn read_json(req: &mut Request, accepted: &[&str]) -> Result<Value, EdgeError> {
    let content_type = req.headers().get("content-type")?.unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !accepted.contains(&media_type.as_str()) {
        return Err(EdgeError::new(
            ProblemKind::UnsupportedMediaType,
            format!("send the body as {} (got {:?})", accepted.join(" or "), content_type),
        ));
    }
    // A declared length over the limit is refused before a byte of the body is read, so a
    // client cannot make the edge buffer (or wait for) a body it will refuse anyway.
    if let Some(declared) = req.headers().get("content-length")? {
        let too_large = match declared.trim().parse::<u64>() {
            Ok(n) => n > MAX_BODY_BYTES as u64,
            Err(_) => {
                return Err(EdgeError::new(
                    ProblemKind::BadRequest,
                    "the Content-Length header is not a number",
                ))
            }
        };
        if too_large {
            return Err(EdgeError::new(
                ProblemKind::PayloadTooLarge,
                format!("the body is declared as {} bytes; the limit is {MAX_BODY_BYTES}", declared.trim()),
            ));
        }
    }
    let bytes = req.bytes().await?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(EdgeError::new(
            ProblemKind::PayloadTooLarge,
            format!("the body is {} bytes; the limit is {MAX_BODY_BYTES}", bytes.len()),
        ));
    }
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| EdgeError::new(ProblemKind::BadRequest, format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(EdgeError::new(ProblemKind::BadRequest, "the body must be a JSON object"));
    }
    Ok(value)
}

/// Sets the step-up time the origin may trust in a body the edge forwards: the session's, as
/// its gate answered, or none. A `step_up_at` the client wrote is never passed on: the origin
/// takes the field as the edge's word (the call is signed), so a client's would stand for a
/// proof it never gave.
pub fn vouch_step_up(body: &mut Value, session_step_up: Option<u64>) {
    if let Value::Object(object) = body {
        object.remove("step_up_at");
        if let Some(at) = session_step_up {
            object.insert("step_up_at".into(), Value::from(at));
        }
    }
}

/// A JSON answer; with `version`, a strong `ETag` of it.
pub fn json(status: u16, body: &Value, version: Option<u64>) -> Result<Response, EdgeError> {
    let headers = Headers::new();
    headers.set("content-type", JSON)?;
    headers.set("cache-control", "no-store")?;
    if let Some(v) = version {
        headers.set("etag", &etag(v))?;
    }
    Ok(Response::ok(serde_json::to_string(body)?)?.with_status(status).with_headers(headers))
}

/// A JSON answer whose body is already JSON text (a cached profile, served as stored).
pub fn json_text(status: u16, body: String, version: Option<u64>) -> Result<Response, EdgeError> {
    let headers = Headers::new();
    headers.set("content-type", JSON)?;
    headers.set("cache-control", "no-store")?;
    if let Some(v) = version {
        headers.set("etag", &etag(v))?;
    }
    Ok(Response::ok(body)?.with_status(status).with_headers(headers))
}

/// The request's raw query (after `?`, without the fragment), read from the URL string: parsing
/// it with `Request::url` would link the `url` crate, its IDNA and Unicode tables, into the wasm.
pub fn raw_query(req: &Request) -> String {
    let url = req.inner().url();
    let after = url.split_once('?').map_or("", |(_, q)| q);
    after.split_once('#').map_or(after, |(q, _)| q).to_owned()
}

pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The version an `If-Match` header asks for: `None` when absent. `*` matches any version,
/// which for an existing resource is the same as no condition.
pub fn if_match(req: &Request) -> Result<Option<u64>, EdgeError> {
    let Some(raw) = req.headers().get("if-match")? else { return Ok(None) };
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|v| v.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            EdgeError::new(
                ProblemKind::BadRequest,
                format!("If-Match must be an ETag from this API, like \"3\" (got {raw})"),
            )
        })
}

/// A signed call to the origin. A 2xx comes back as it is; a 4xx problem is passed through to
/// the client unchanged (the origin's refusal is the answer); a 5xx becomes a generic 502.
pub async fn forward(
    env: &Env,
    actor: &Actor,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<OriginResponse, EdgeError> {
    let config = OriginConfig::from_env(env)
        .map_err(|e| EdgeError::Runtime(worker::Error::RustError(e.to_string())))?;
    let bytes = match body {
        Some(v) => serde_json::to_vec(v)?,
        None => Vec::new(),
    };
    let response = OriginClient::new(config).send_as(actor, method, path, &bytes).await?;
    match response.status {
        200..=299 => Ok(response),
        400..=499 => {
            let problem: Problem = serde_json::from_slice(&response.body)
                .map_err(|_| EdgeError::OriginFailed { status: response.status })?;
            Err(EdgeError::Problem(problem))
        }
        // The origin at capacity says when to retry: that is the client's answer too.
        503 => match serde_json::from_slice::<Problem>(&response.body) {
            Ok(problem) if problem.type_uri == ProblemKind::Overloaded.type_uri() => {
                Err(EdgeError::Problem(problem))
            }
            _ => Err(EdgeError::OriginFailed { status: 503 }),
        },
        status => Err(EdgeError::OriginFailed { status }),
    }
}

/// The origin's JSON answer, relayed as it is with `status`, for the operations where the edge
/// adds nothing: the answer's type is the origin's (built there, and checked against the
/// document by the contract tests), so the edge carries no code for it. An answer that is not
/// JSON is the origin's failure (502).
pub fn relay(status: u16, response: &OriginResponse) -> Result<Response, EdgeError> {
    let failed = || EdgeError::OriginFailed { status: response.status };
    let text = std::str::from_utf8(&response.body).map_err(|_| failed())?;
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|_| failed())?;
    json_text(status, text.to_owned(), None)
}

/// The origin's JSON object answer, for the edge to read one field of or add one to; anything
/// else is the origin's failure (502).
pub fn origin_object(response: &OriginResponse) -> Result<serde_json::Map<String, Value>, EdgeError> {
    match origin_json(response)? {
        Value::Object(object) => Ok(object),
        _ => Err(EdgeError::OriginFailed { status: response.status }),
    }
}

/// One field of the origin's JSON object answer, as `T`; a missing or mistyped one is the
/// origin's failure (502).
pub fn origin_field<T: serde::de::DeserializeOwned>(
    response: &OriginResponse,
    name: &str,
) -> Result<T, EdgeError> {
    origin_object(response)?
        .remove(name)
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or(EdgeError::OriginFailed { status: response.status })
}

/// The JSON body of an origin answer.
pub fn origin_json(response: &OriginResponse) -> Result<Value, EdgeError> {
    serde_json::from_slice(&response.body).map_err(|_| EdgeError::OriginFailed { status: response.status })
}

// The typed edges of the wire: every wire type goes through `serde_json::Value` both ways, so
// each is (de)serialised by one (de)serializer only, whatever the call: the wasm's size.

/// The body of an origin answer as the wire type it must be; anything else is the origin's
/// failure (502), not the client's.
pub fn origin_as<T: serde::de::DeserializeOwned>(response: &OriginResponse) -> Result<T, EdgeError> {
    serde_json::from_value(origin_json(response)?)
        .map_err(|_| EdgeError::OriginFailed { status: response.status })
}

/// A request body as the wire type `T`, or a 400 naming what is wrong.
pub async fn read_body<T: serde::de::DeserializeOwned>(
    req: &mut Request,
    accepted: &[&str],
) -> Result<T, EdgeError> {
    let value = read_json(req, accepted).await?;
    serde_json::from_value(value)
        .map_err(|e| EdgeError::new(ProblemKind::BadRequest, format!("invalid body: {e}")))
}

/// A wire value as the JSON body of a call to the origin.
pub fn to_origin<T: serde::Serialize>(value: &T) -> Result<Value, EdgeError> {
    Ok(serde_json::to_value(value)?)
}

/// A JSON answer of the wire value `body`.
pub fn reply<T: serde::Serialize>(status: u16, body: &T) -> Result<Response, EdgeError> {
    json(status, &serde_json::to_value(body)?, None)
}
