//! A client of the public API for the tests: each call returns the status, the headers the
//! tests look at, and the JSON body, so assertions read like the behaviour they check.

use anyhow::{Context, Result};
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};

use crate::http::client;

/// One answer of the API.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub etag: Option<String>,
    pub source: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `type` slug of a problem answer (`rate-limited` for `urn:…:rate-limited`).
    pub fn problem_slug(&self) -> &str {
        self.body.get("type").and_then(Value::as_str).and_then(|t| t.rsplit(':').next()).unwrap_or_default()
    }

    pub fn str(&self, key: &str) -> String {
        self.body.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
    }
}

/// Sends a request to the edge and checks the answer against the OpenAPI document
/// (`crate::contract`): an answer the document does not describe is an error.
pub fn send(request: RequestBuilder) -> Result<Answer> {
    let (client, request) = request.build_split();
    let request = request.context("building the request")?;
    let method = request.method().as_str().to_owned();
    let path = request.url().path().to_owned();
    let response = client.execute(request).context("calling the edge")?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header("content-type").unwrap_or_default();
    let etag = header("etag");
    let source = header("x-profile-source");
    let text = response.text()?;
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    let answer = Answer { status, content_type, etag, source, headers, body };
    crate::contract::check(&method, &path, &answer)?;
    Ok(answer)
}

/// The public API at `base` (the edge's URL).
#[derive(Clone)]
pub struct Api {
    pub base: String,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Self {
        Self { base: base.into() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Result<Answer> {
        let mut request = client().get(self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        send(request)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Answer> {
        let mut request = client().post(self.url(path)).json(body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        send(request)
    }

    pub fn put(&self, path: &str, token: &str, body: &Value, if_match: Option<&str>) -> Result<Answer> {
        let mut request = client().put(self.url(path)).bearer_auth(token).json(body);
        if let Some(m) = if_match {
            request = request.header("if-match", m);
        }
        send(request)
    }

    pub fn patch(&self, path: &str, token: &str, body: &Value) -> Result<Answer> {
        send(
            client()
                .patch(self.url(path))
                .bearer_auth(token)
                .header("content-type", "application/merge-patch+json")
                .body(body.to_string()),
        )
    }

    /// A DELETE with a JSON body (the current password, for factor removal).
    pub fn delete_with(&self, path: &str, token: &str, body: &Value) -> Result<Answer> {
        send(client().delete(self.url(path)).bearer_auth(token).json(body))
    }

    pub fn signup(&self, email: &str, password: &str, profile: Value) -> Result<Answer> {
        self.post("/api/v1/users", None, &json!({ "email": email, "password": password, "profile": profile }))
    }

    /// Logs in and returns the access token; fails unless the answer is 200.
    pub fn login(&self, email: &str, password: &str) -> Result<String> {
        let answer =
            self.post("/api/v1/auth/login", None, &json!({ "email": email, "password": password }))?;
        anyhow::ensure!(answer.status == 200, "login of {email} answered {}: {}", answer.status, answer.body);
        Ok(answer.str("access_token"))
    }
}

/// A fresh email address for a test, so tests sharing a stack never collide.
pub fn unique_email(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    format!("{prefix}-{}@example.com", hex::encode(bytes))
}

/// A password that passes the policy for any test email.
pub const GOOD_PASSWORD: &str = "mot de passe sécurisé 2024!";

/// Sends `n` GETs of `path` with `in_flight` at a time; the answers in completion order.
pub fn burst(api: &Api, path: &str, token: &str, n: usize, in_flight: usize) -> Result<Vec<Answer>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let answers = Mutex::new(Vec::with_capacity(n));
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..in_flight {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::SeqCst) < n {
                    match api.get(path, Some(token)) {
                        Ok(a) => answers.lock().unwrap_or_else(|e| e.into_inner()).push(a),
                        Err(e) => *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e),
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(answers.into_inner().unwrap_or_else(|e| e.into_inner()))
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    /// `r` of the `RateLimit` field.
    pub fn remaining(&self) -> Option<u64> {
        self.header("ratelimit")?.split(';').find_map(|p| p.trim().strip_prefix("r=")?.parse().ok())
    }
}
