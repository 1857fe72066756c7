//! Organizations (issue 19) at the edge: every operation is forwarded as the caller over the
//! signed channel; the origin decides. What it answers in `gate` (a member's new grant, a
//! removal, sessions to end) is recorded in each member's gate before the answer, so the
//! organization's tier and policies apply on the member's next request, and then stripped.
//! The security posture gets each member's open sessions from their gate (the origin does not
//! hold sessions).

use domain::org::GateUpdate;
use domain::problem::ProblemKind;
use domain::wire::orgs::{Gated, OwnershipTransfer};
use serde_json::Value;
use worker::{Env, Method, Request, Response};

use crate::auth::Caller;
use crate::gate::{GateClient, OrgRecord};
use crate::http::{self, forward, JSON, MERGE_PATCH_JSON};
use crate::problem::EdgeError;

/// An operation on organizations, with the ids of its path.
pub enum OrgOp {
    Create,
    Read(String),
    Policies(String),
    Members(String),
    Invite(String),
    Invitations(String),
    Accept,
    Role(String, String),
    Remove(String, String),
    EndSessions(String, String),
    Transfer(String),
    Audit(String),
    Posture(String),
}

fn org_id(raw: &str) -> Result<String, EdgeError> {
    let valid =
        raw.strip_prefix("org_").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(EdgeError::new(ProblemKind::NotFound, format!("no organization {raw}")))
    }
}

fn member_id(raw: &str) -> Result<String, EdgeError> {
    raw.parse::<domain::identity::UserId>()
        .map(|id| id.to_string())
        .map_err(|_| EdgeError::new(ProblemKind::NotFound, format!("no member {raw}")))
}

/// The operation a method and path (split in segments after `/api/v1`) name: `None` when the
/// path is not an organization's.
pub fn route(method: &Method, segments: &[&str]) -> Option<Result<OrgOp, EdgeError>> {
    let only = |allowed: &[Method], op: &dyn Fn() -> Result<OrgOp, EdgeError>| {
        if allowed.contains(method) {
            op()
        } else {
            Err(crate::routes::not_allowed(allowed))
        }
    };
    let op = match segments {
        ["invitations", "accept"] => only(&[Method::Post], &|| Ok(OrgOp::Accept)),
        ["orgs"] => only(&[Method::Post], &|| Ok(OrgOp::Create)),
        ["orgs", id] => only(&[Method::Get], &|| org_id(id).map(OrgOp::Read)),
        ["orgs", id, "policies"] => only(&[Method::Patch], &|| org_id(id).map(OrgOp::Policies)),
        ["orgs", id, "members"] => only(&[Method::Get], &|| org_id(id).map(OrgOp::Members)),
        ["orgs", id, "invitations"] => match method {
            Method::Post => org_id(id).map(OrgOp::Invite),
            Method::Get => org_id(id).map(OrgOp::Invitations),
            _ => Err(crate::routes::not_allowed(&[Method::Get, Method::Post])),
        },
        ["orgs", id, "members", user] => {
            only(&[Method::Delete], &|| Ok(OrgOp::Remove(org_id(id)?, member_id(user)?)))
        }
        ["orgs", id, "members", user, "role"] => {
            only(&[Method::Put], &|| Ok(OrgOp::Role(org_id(id)?, member_id(user)?)))
        }
        ["orgs", id, "members", user, "sessions"] => {
            only(&[Method::Delete], &|| Ok(OrgOp::EndSessions(org_id(id)?, member_id(user)?)))
        }
        ["orgs", id, "transfer"] => only(&[Method::Post], &|| org_id(id).map(OrgOp::Transfer)),
        ["orgs", id, "audit"] => only(&[Method::Get], &|| org_id(id).map(OrgOp::Audit)),
        ["orgs", id, "posture"] => only(&[Method::Get], &|| org_id(id).map(OrgOp::Posture)),
        _ => return None,
    };
    Some(op)
}

impl OrgOp {
    /// The origin's method and path, and the status a success is answered with.
    fn target(&self) -> (Method, String, u16) {
        match self {
            OrgOp::Create => (Method::Post, "/internal/orgs".into(), 201),
            OrgOp::Read(o) => (Method::Get, format!("/internal/orgs/{o}"), 200),
            OrgOp::Policies(o) => (Method::Patch, format!("/internal/orgs/{o}/policies"), 200),
            OrgOp::Members(o) => (Method::Get, format!("/internal/orgs/{o}/members"), 200),
            OrgOp::Invite(o) => (Method::Post, format!("/internal/orgs/{o}/invitations"), 201),
            OrgOp::Invitations(o) => (Method::Get, format!("/internal/orgs/{o}/invitations"), 200),
            OrgOp::Accept => (Method::Post, "/internal/invitations/accept".into(), 200),
            OrgOp::Role(o, u) => (Method::Put, format!("/internal/orgs/{o}/members/{u}/role"), 200),
            OrgOp::Remove(o, u) => (Method::Delete, format!("/internal/orgs/{o}/members/{u}"), 204),
            OrgOp::EndSessions(o, u) => {
                (Method::Post, format!("/internal/orgs/{o}/members/{u}/sessions/end"), 204)
            }
            OrgOp::Transfer(o) => (Method::Post, format!("/internal/orgs/{o}/transfer"), 200),
            OrgOp::Audit(o) => (Method::Get, format!("/internal/orgs/{o}/audit"), 200),
            OrgOp::Posture(o) => (Method::Get, format!("/internal/orgs/{o}/posture"), 200),
        }
    }

    /// Whether the client sends a JSON body.
    fn has_body(&self) -> bool {
        matches!(
            self,
            OrgOp::Create
                | OrgOp::Policies(_)
                | OrgOp::Invite(_)
                | OrgOp::Accept
                | OrgOp::Role(..)
                | OrgOp::Transfer(_)
        )
    }
}

/// Records each gate update the origin answered in its member's gate (the answer is then
/// given without them).
async fn apply_gate_updates(env: &Env, updates: Vec<GateUpdate>) -> Result<(), EdgeError> {
    for update in updates {
        let record = OrgRecord { grant: update.grant, at: update.at, end_sessions: update.end_sessions };
        GateClient::for_user(env, &update.user_id)?.record_org(&record).await?;
    }
    Ok(())
}

/// Adds each member's open sessions (their gate's count) to the posture (`members[].user_id`
/// gets `active_sessions`).
async fn add_open_sessions(env: &Env, posture: &mut Value) -> Result<(), EdgeError> {
    let Some(members) = posture.get_mut("members").and_then(Value::as_array_mut) else { return Ok(()) };
    for member in members {
        let Some(user_id) = member.get("user_id").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        let open = GateClient::for_user(env, &user_id)?.sessions().await?.len();
        if let Some(object) = member.as_object_mut() {
            object.insert("active_sessions".into(), Value::from(open as u64));
        }
    }
    Ok(())
}

pub async fn handle(
    mut req: Request,
    env: &Env,
    caller: Caller,
    op: OrgOp,
    stepped_up_at: Option<u64>,
) -> Result<Response, EdgeError> {
    let (method, path, status) = op.target();
    let body = match &op {
        // A transfer needs the owner's fresh proof: the session's step-up travels with it.
        OrgOp::Transfer(_) => {
            let mut transfer: OwnershipTransfer = http::read_body(&mut req, &[JSON]).await?;
            transfer.step_up_at = stepped_up_at;
            Some(http::to_origin(&transfer)?)
        }
        // The other bodies are the origin's to read: relayed as they are.
        _ if op.has_body() => {
            let accepted: &[&str] = if method == Method::Patch { &[MERGE_PATCH_JSON, JSON] } else { &[JSON] };
            Some(http::read_json(&mut req, accepted).await?)
        }
        _ => None,
    };
    let answer = forward(env, &caller.actor(), method, &path, body.as_ref()).await?;
    if let OrgOp::Posture(_) = op {
        let mut posture = http::origin_json(&answer)?;
        add_open_sessions(env, &mut posture).await?;
        return http::json(status, &posture, None);
    }
    // Relayed as the origin built it, without the gate updates.
    let Gated { answer: view, gate } = http::origin_as::<Gated<Value>>(&answer)?;
    apply_gate_updates(env, gate).await?;
    if status == 204 {
        return Ok(Response::empty()?.with_status(204));
    }
    let mut response = http::json(status, &view, None)?;
    if let OrgOp::Create = op {
        let id = view
            .get("id")
            .and_then(Value::as_str)
            .ok_or(EdgeError::OriginFailed { status: answer.status })?;
        response.headers_mut().set("location", &format!("/api/v1/orgs/{id}"))?;
    }
    Ok(response)
}
