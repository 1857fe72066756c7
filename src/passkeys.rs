//! Passkeys at the edge: the public WebAuthn operations, forwarded over the signed channel to
//! the origin (the relying party, which verifies every ceremony). A passwordless sign-in the
//! origin accepts opens a session exactly as a password login does (`sessions::open_session`).

use domain::identity::{Actor, UserId};
use domain::wire::event::EventKind;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response};

use crate::auth::Caller;
use crate::events::Events;
use crate::http::{self, forward, JSON, MERGE_PATCH_JSON};
use crate::problem::EdgeError;
use crate::sessions::{authorize, forward_login};
use domain::wire::auth::MfaSendRequest;
use domain::wire::passkeys::{
    FactorProof, MfaWebauthnRequest, RegistrationOptionsRequest, RegistrationStart, VouchedProof,
};
use domain::wire::Factor;

/// What a protected passkey route does.
#[derive(Debug, Clone)]
pub enum PasskeyOp {
    List,
    RegistrationOptions,
    Register,
    Rename(String),
    Remove(String),
}

/// `POST /api/v1/auth/passkey/options`: a passwordless ceremony's options.
pub async fn login_options(env: &Env) -> Result<Response, EdgeError> {
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/webauthn/options", None).await?;
    http::relay(200, &answer)
}

/// `POST /api/v1/auth/passkey`: `{ceremony_id, credential}` → tokens and a session.
pub async fn login(req: Request, env: &Env, events: &Events) -> Result<Response, EdgeError> {
    let path = "/internal/auth/webauthn/login";
    forward_login(req, env, events, path, refused, EventKind::PasskeyLogin).await
}

/// Every failed passwordless sign-in is counted, whatever failed.
fn refused(_: &EdgeError) -> Option<(EventKind, Value)> {
    Some((EventKind::LoginFailure, json!({ "method": "passkey" })))
}

/// `POST /api/v1/auth/mfa/webauthn`: `{challenge_id}` → the assertion options of a login's
/// second factor.
pub async fn mfa_options(mut req: Request, env: &Env) -> Result<Response, EdgeError> {
    let body: MfaWebauthnRequest = http::read_body(&mut req, &[JSON]).await?;
    let forwarded =
        http::to_origin(&MfaSendRequest { challenge_id: body.challenge_id, method: Factor::Webauthn })?;
    let answer =
        forward(env, &Actor::Anonymous, Method::Post, "/internal/auth/mfa/webauthn", Some(&forwarded))
            .await?;
    http::relay(200, &answer)
}

/// The account's passkeys: list, register (options, then the answer), rename, remove. Starting
/// a registration and removing one accept the session's recent step-up as their proof.
pub async fn account(
    mut req: Request,
    env: &Env,
    caller: Caller,
    id: UserId,
    op: PasskeyOp,
    stepped_up_at: Option<u64>,
) -> Result<Response, EdgeError> {
    authorize(&caller, &id)?;
    let base = format!("/internal/users/{id}/passkeys");
    let (method, path, status, takes_step_up) = match &op {
        PasskeyOp::List => (Method::Get, base, 200, false),
        PasskeyOp::RegistrationOptions => (Method::Post, format!("{base}/options"), 200, true),
        PasskeyOp::Register => (Method::Post, base, 201, false),
        PasskeyOp::Rename(cid) => (Method::Patch, format!("{base}/{}", encode(cid)), 200, false),
        PasskeyOp::Remove(cid) => (Method::Delete, format!("{base}/{}", encode(cid)), 204, true),
    };
    // The step-up the edge vouches for is the session's, never one a client sent.
    let step_up_at = if takes_step_up { stepped_up_at } else { None };
    let body = match op {
        PasskeyOp::List => None,
        // A removal may come without a body (the session's step-up is its proof).
        PasskeyOp::Remove(_) => {
            let proof: FactorProof = if req.headers().get("content-type")?.is_none() {
                FactorProof::default()
            } else {
                http::read_body(&mut req, &[JSON]).await?
            };
            Some(http::to_origin(&VouchedProof::new(proof, step_up_at))?)
        }
        // A rename is a merge patch of the label; plain JSON is accepted too.
        PasskeyOp::Rename(_) => Some(http::read_json(&mut req, &[JSON, MERGE_PATCH_JSON]).await?),
        PasskeyOp::RegistrationOptions => {
            let request: RegistrationOptionsRequest = http::read_body(&mut req, &[JSON]).await?;
            Some(http::to_origin(&RegistrationStart::new(request, step_up_at))?)
        }
        PasskeyOp::Register => Some(http::read_json(&mut req, &[JSON]).await?),
    };
    let answer = forward(env, &caller.actor(), method, &path, body.as_ref()).await?;
    if status == 204 {
        return Ok(Response::empty()?.with_status(204));
    }
    http::relay(status, &answer)
}

/// A credential id in a path: base64url already, so only a stray byte needs escaping.
fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
