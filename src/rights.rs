//! Data rights at the edge (issue 13): export, erasure and its cancellation, consents. The
//! origin decides and stores; the edge forwards as the caller, and applies what only it holds:
//! an erasure's wipe of the KV profile entry and of the user's Durable Object, the sessions a
//! scheduled erasure ends at once, and the `analytics` consent its gate enforces.

use domain::identity::{Actor, UserId};
use domain::problem::ProblemKind;
use domain::wire::rights::{ExportRequest, ExportStart, PendingWipes};
use serde_json::Value;
use worker::{console_error, console_log, Env, Headers, Method, Request, Response};

use crate::auth::Caller;
use crate::gate::GateClient;
use crate::http::{self, forward, JSON};
use crate::problem::EdgeError;

fn authorize(caller: &Caller, target: &UserId) -> Result<(), EdgeError> {
    if caller.actor().may_act_on(target) {
        Ok(())
    } else {
        Err(EdgeError::new(ProblemKind::Forbidden, "you may only act on your own account"))
    }
}

/// A JSON object body when one was sent; `{}` for an empty one (the origin reads it as its
/// wire type, whose fields are all optional).
async fn optional_json(req: &mut Request) -> Result<Value, EdgeError> {
    let declared = req.headers().get("content-length")?.and_then(|l| l.trim().parse::<u64>().ok());
    let has_type = req.headers().get("content-type")?.is_some();
    if declared == Some(0) || (declared.is_none() && !has_type) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    http::read_json(req, &[JSON]).await
}

/// `Sec-GPC: 1` (Global Privacy Control): the browser asks not to sell or share.
fn gpc(req: &Request) -> Result<bool, EdgeError> {
    Ok(req.headers().get("sec-gpc")?.is_some_and(|v| v.trim() == "1"))
}

/// Starts an export: the caller's session's step-up (or a password and code in the body)
/// travels to the origin, with the sessions the gate holds (they are part of the export).
pub async fn start_export(
    mut req: Request,
    env: &Env,
    caller: Caller,
    id: UserId,
    stepped_up_at: Option<u64>,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let proof: ExportRequest = serde_json::from_value(optional_json(&mut req).await?)
        .map_err(|e| EdgeError::new(ProblemKind::BadRequest, format!("invalid body: {e}")))?;
    let sessions = GateClient::for_user(env, id.as_str())?.sessions().await?;
    let body = http::to_origin(&ExportStart {
        current_password: proof.current_password,
        method: proof.method,
        code: proof.code,
        step_up_at: stepped_up_at.filter(|_| caller.id == id),
        sessions: serde_json::to_value(&sessions)?,
    })?;
    let path = format!("/internal/users/{id}/export");
    let answer = forward(env, &caller.actor(), Method::Post, &path, Some(&body)).await?;
    let location: String = http::origin_field(&answer, "location")?;
    let mut response = http::relay(202, &answer)?;
    response.headers_mut().set("location", &location)?;
    Ok(response)
}

/// An export: 202 while it is built, then the ZIP (each fetch counted at the origin).
pub async fn download_export(
    env: &Env,
    caller: Caller,
    id: UserId,
    export_id: String,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    if export_id.is_empty()
        || export_id.len() > 64
        || !export_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(EdgeError::new(ProblemKind::NotFound, format!("no export {export_id}")));
    }
    let path = format!("/internal/users/{id}/exports/{export_id}");
    let answer = forward(env, &caller.actor(), Method::Get, &path, None).await?;
    if answer.status == 202 {
        let retry_after: u64 = http::origin_field(&answer, "retry_after")?;
        let mut response = http::relay(202, &answer)?;
        response.headers_mut().set("retry-after", &retry_after.to_string())?;
        return Ok(response);
    }
    let headers = Headers::new();
    headers.set("content-type", "application/zip")?;
    headers.set("content-disposition", &format!("attachment; filename=\"{export_id}.zip\""))?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_bytes(answer.body)?.with_headers(headers))
}

/// Removes what the edge holds about an erased user: the KV profile entry and everything the
/// user's Durable Object stores; then tells the origin, which forgets the id.
pub async fn wipe(env: &Env, id: &str, actor: &Actor) -> Result<(), EdgeError> {
    crate::profile_cache::delete(env, id).await?;
    crate::entitlements::forget(env, id).await?;
    GateClient::for_user(env, id)?.wipe().await?;
    forward(env, actor, Method::Post, &format!("/internal/erasures/{id}/wiped"), None).await?;
    Ok(())
}

/// `DELETE /api/v1/users/{id}`: the owner schedules the erasure (every session ends at once);
/// an admin with `{"immediately": true}` erases now, and the edge wipes its part before it
/// answers (the scheduled job retries if that fails).
pub async fn erase(mut req: Request, env: &Env, caller: Caller, id: UserId) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let body = optional_json(&mut req).await?;
    let path = format!("/internal/users/{id}");
    let answer = forward(env, &caller.actor(), Method::Delete, &path, Some(&body)).await?;
    // The origin's answer, with what only the edge knows added to it.
    let mut view = http::origin_object(&answer)?;
    if answer.status == 202 {
        let ended = GateClient::for_user(env, id.as_str())?.revoke(None, None, "erasure requested").await?;
        view.insert("sessions_ended".into(), Value::from(u64::try_from(ended).unwrap_or(u64::MAX)));
        return http::json(202, &Value::Object(view), None);
    }
    let wiped = match wipe(env, id.as_str(), &caller.actor()).await {
        Ok(()) => true,
        Err(e) => {
            console_error!("erasure: the edge wipe failed, the scheduled job will retry: {e:?}");
            false
        }
    };
    view.insert("edge_wiped".into(), Value::Bool(wiped));
    http::json(200, &Value::Object(view), None)
}

/// Cancels a scheduled erasure with the password (no session: logging in is refused meanwhile).
pub async fn cancel_erasure(mut req: Request, env: &Env, id: UserId) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let path = format!("/internal/users/{id}/erasure/cancel");
    let answer = forward(env, &Actor::Anonymous, Method::Post, &path, Some(&body)).await?;
    http::relay(200, &answer)
}

/// `GET`/`PUT …/consents`; the answer's `collects_events` goes to the user's gate, so a
/// withdrawn `analytics` consent stops event collection from the next request.
pub async fn consents(
    mut req: Request,
    env: &Env,
    caller: Caller,
    id: UserId,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let query = if gpc(&req)? { "?gpc=1" } else { "" };
    let path = format!("/internal/users/{id}/consents{query}");
    let answer = if req.method() == Method::Put {
        let body = http::read_json(&mut req, &[JSON]).await?;
        let answer = forward(env, &caller.actor(), Method::Put, &path, Some(&body)).await?;
        crate::personalisation::forget(env, id.as_str()).await?;
        answer
    } else {
        forward(env, &caller.actor(), Method::Get, &path, None).await?
    };
    let collects_events: bool = http::origin_field(&answer, "collects_events")?;
    GateClient::for_user(env, id.as_str())?.record_consent(collects_events).await?;
    http::relay(200, &answer)
}

/// The scheduled job: asks the origin for erasures whose edge part is still to do, and does it.
pub async fn apply_pending_wipes(env: &Env) {
    let ids = match forward(env, &Actor::System, Method::Get, "/internal/erasures/pending", None).await {
        Ok(answer) => http::origin_as::<PendingWipes>(&answer).map(|p| p.user_ids).unwrap_or_default(),
        Err(e) => {
            console_error!("pending erasures: the origin did not answer: {e:?}");
            return;
        }
    };
    let mut done = 0;
    for id in &ids {
        match wipe(env, id, &Actor::System).await {
            Ok(()) => done += 1,
            Err(e) => console_error!("erasure wipe failed, retried next time: {e:?}"),
        }
    }
    console_log!("erasure wipes: {done} of {} applied", ids.len());
}

/// A parent's answer to a child's signup (`{"token", "decision": "grant"|"refuse"}`).
pub async fn parental_consent(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body = http::read_json(&mut req, &[JSON]).await?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/parental-consent", Some(&body)).await?;
    http::relay(200, &answer)
}
