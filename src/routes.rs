//! Request dispatch: method and path to handler. Every handler error becomes a response in
//! `problem.rs`; a wrong method gets 405 with `Allow`, an unknown path 404.

use domain::identity::UserId;
use domain::problem::ProblemKind;
use worker::{Env, Method, Request, Response, Result};

use crate::problem::EdgeError;
use crate::{auth, health, http, openapi, users};

pub async fn dispatch(req: Request, env: Env) -> Result<Response> {
    let path = req.path();
    let method = req.method();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let result = match segments.as_slice() {
        ["health"] => only(&method, &[Method::Get]).map(|()| Route::Health),
        [".well-known", "jwks.json"] => only(&method, &[Method::Get]).map(|()| Route::Jwks),
        ["api", "v1", "openapi.json"] => only(&method, &[Method::Get]).map(|()| Route::OpenApi),
        ["api", "v1", "auth", "login"] => only(&method, &[Method::Post]).map(|()| Route::Login),
        ["api", "v1", "users"] => only(&method, &[Method::Post]).map(|()| Route::CreateUser),
        ["api", "v1", "users", id] => user_id(id).and_then(|id| match method {
            Method::Get => Ok(Route::ReadUser(id)),
            Method::Put | Method::Patch => Ok(Route::UpdateUser(id)),
            _ => Err(not_allowed(&[Method::Get, Method::Put, Method::Patch])),
        }),
        ["api", "v1", "users", id, "upgrade"] => {
            only(&method, &[Method::Post]).and_then(|()| user_id(id)).map(Route::Upgrade)
        }
        ["api", "v1", "users", id, "insights"] => {
            only(&method, &[Method::Get]).and_then(|()| user_id(id)).map(Route::Insights)
        }
        _ => Err(EdgeError::new(ProblemKind::NotFound, format!("no route matches {path}"))),
    };

    let outcome = match result {
        Ok(route) => route.handle(req, &env).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(response) => Ok(response),
        Err(e) => e.into_response(&path),
    }
}

enum Route {
    Health,
    Jwks,
    OpenApi,
    Login,
    CreateUser,
    ReadUser(UserId),
    UpdateUser(UserId),
    Upgrade(UserId),
    Insights(UserId),
}

impl Route {
    async fn handle(self, req: Request, env: &Env) -> std::result::Result<Response, EdgeError> {
        match self {
            Route::Health => Ok(health::handle(env).await?),
            Route::Jwks => http::json(200, &auth::jwks(env)?, None),
            Route::OpenApi => openapi::serve(),
            Route::Login => users::login(req, env).await,
            Route::CreateUser => users::create(req, env).await,
            Route::ReadUser(id) => users::read(req, env, &id).await,
            Route::UpdateUser(id) => users::update(req, env, &id).await,
            Route::Upgrade(id) => users::upgrade(req, env, &id).await,
            Route::Insights(id) => users::insights(req, env, &id).await,
        }
    }
}

fn only(method: &Method, allowed: &[Method]) -> std::result::Result<(), EdgeError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(not_allowed(allowed))
    }
}

fn not_allowed(allowed: &[Method]) -> EdgeError {
    let names: Vec<&str> = allowed.iter().map(|m| m.as_ref()).collect();
    EdgeError::Problem(
        domain::problem::Problem::new(
            ProblemKind::MethodNotAllowed,
            format!("allowed: {}", names.join(", ")),
        )
        .with("allow", names.join(", ")),
    )
}

fn user_id(raw: &str) -> std::result::Result<UserId, EdgeError> {
    raw.parse().map_err(|_| EdgeError::new(ProblemKind::NotFound, format!("no user {raw}")))
}
