//! Request dispatch: method and path to handler. Handlers return `worker::Result<Response>`;
//! a runtime error that escapes one becomes a generic 500 problem here, logged once.

use domain::problem::ProblemKind;
use worker::{console_error, Env, Method, Request, Response, Result};

use crate::{health, problem};

pub async fn dispatch(req: Request, env: Env) -> Result<Response> {
    let path = req.path();
    let method = req.method();
    let result = match (method, path.as_str()) {
        (Method::Get, "/health") => health::handle(&env).await,
        (_, "/health") => {
            problem::respond_kind(ProblemKind::MethodNotAllowed, "use GET on /health")
        }
        _ => problem::respond_kind(ProblemKind::NotFound, format!("no route matches {path}")),
    };
    result.or_else(|e| {
        console_error!("unhandled edge error on {path}: {e}");
        problem::respond_kind(
            ProblemKind::Internal,
            "the edge could not complete the request",
        )
    })
}
