//! The admin dashboard at `/admin`, served by the origin: the edge authenticates the caller,
//! refuses anyone but an admin (403), and forwards the request signed as that admin; the
//! origin checks the role again. The answer keeps the origin's strict Content-Security-Policy.

use std::cell::RefCell;
use std::collections::HashMap;

use domain::problem::ProblemKind;
use worker::{Env, Headers, Method, Response};

use crate::auth::Caller;
use crate::http::forward;
use crate::problem::EdgeError;

/// The same policy the origin sets on the page (`origin/src/admin.rs`): its own scripts and
/// styles only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

thread_local! {
    static ASSETS: RefCell<HashMap<&'static str, Vec<u8>>> = RefCell::new(HashMap::new());
}

/// What under `/admin` is asked for.
#[derive(Debug, Clone)]
pub enum AdminPath {
    Page,
    Data,
    Asset(&'static str),
}

impl AdminPath {
    /// The assets the page loads, by name.
    pub fn asset(name: &str) -> Option<Self> {
        ["uplot.js", "uplot.css", "dashboard.js", "dashboard.css"]
            .into_iter()
            .find(|a| *a == name)
            .map(AdminPath::Asset)
    }

    fn origin_path(&self) -> String {
        match self {
            AdminPath::Page => "/admin".to_owned(),
            AdminPath::Data => "/admin/data".to_owned(),
            AdminPath::Asset(name) => format!("/admin/assets/{name}"),
        }
    }

    fn media_type(&self) -> &'static str {
        match self {
            AdminPath::Page => "text/html; charset=utf-8",
            AdminPath::Data => "application/json",
            AdminPath::Asset(name) if name.ends_with(".js") => "text/javascript; charset=utf-8",
            AdminPath::Asset(_) => "text/css; charset=utf-8",
        }
    }
}

pub async fn serve(env: &Env, caller: Caller, what: AdminPath) -> Result<Response, EdgeError> {
    if !matches!(caller.role, domain::identity::Role::Admin) {
        return Err(EdgeError::new(ProblemKind::Forbidden, "the dashboard is for admins"));
    }
    let body = match what {
        // The assets are the origin binary's own files, the same for every admin: the isolate
        // keeps them after the first fetch (the admin check above still runs every time).
        AdminPath::Asset(name) => match ASSETS.with(|a| a.borrow().get(name).cloned()) {
            Some(bytes) => bytes,
            None => {
                let answer = forward(env, &caller.actor(), Method::Get, &what.origin_path(), None).await?;
                ASSETS.with(|a| a.borrow_mut().insert(name, answer.body.clone()));
                answer.body
            }
        },
        _ => forward(env, &caller.actor(), Method::Get, &what.origin_path(), None).await?.body,
    };
    let headers = Headers::new();
    headers.set("content-type", what.media_type())?;
    headers.set("content-security-policy", CONTENT_SECURITY_POLICY)?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("referrer-policy", "no-referrer")?;
    // Assets are the binary's own files: a browser may keep them a few minutes (privately, as
    // they are served to an authenticated admin). The page and its data are always fresh.
    let cache = if matches!(what, AdminPath::Asset(_)) { "private, max-age=300" } else { "no-store" };
    headers.set("cache-control", cache)?;
    Ok(Response::from_bytes(body)?.with_headers(headers))
}
