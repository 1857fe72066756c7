//! The origin's router in process (`tower::ServiceExt::oneshot`), over a real SQLite store in a
//! temporary directory: what the signed gate, the extractors and the problem answers do,
//! without an edge or a socket. The end-to-end suite covers the same paths through the edge.

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use domain::signing::{
    SignedRequest, SignedResponse, HEADER_ACTOR, HEADER_NONCE, HEADER_RESPONSE_SIGNATURE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::testing::TestOrigin;

struct Answer {
    status: StatusCode,
    content_type: String,
    signature: Option<String>,
    body: Value,
    raw: Vec<u8>,
}

async fn call(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header("content-type").unwrap_or_default();
    let signature = header(HEADER_RESPONSE_SIGNATURE);
    let raw = to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer { status, content_type, signature, body, raw }
}

/// A request to the internal API signed as the edge signs it, with `nonce`.
fn signed(
    origin: &TestOrigin,
    method: Method,
    path: &str,
    actor: &str,
    body: &[u8],
    nonce: &str,
) -> Request<Body> {
    let now = origin.state.clock.now();
    let signature = SignedRequest { method: method.as_str(), path_and_query: path, actor, body }.sign(
        &origin.state.config.shared_secret,
        now,
        nonce,
    );
    Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header(HEADER_TIMESTAMP, signature.timestamp.0.to_string())
        .header(HEADER_NONCE, &signature.nonce)
        .header(HEADER_SIGNATURE, &signature.signature)
        .header(HEADER_ACTOR, actor)
        .body(Body::from(body.to_vec()))
        .unwrap()
}

fn fresh_nonce() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

async fn setup() -> (TestOrigin, Router) {
    let origin = TestOrigin::start().await;
    let app = crate::routes::router(origin.state.clone());
    (origin, app)
}

fn assert_problem(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{}", String::from_utf8_lossy(&answer.raw));
    assert_eq!(answer.content_type, "application/problem+json");
    assert_eq!(answer.body["status"], json!(status.as_u16()));
    assert!(answer.body["type"].is_string() && answer.body["title"].is_string(), "{}", answer.body);
}

#[tokio::test]
async fn the_health_probe_is_the_one_unsigned_route() {
    let (_origin, app) = setup().await;
    let answer = call(&app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["status"], "ok");
}

#[tokio::test]
async fn an_unsigned_caller_cannot_tell_which_internal_routes_exist() {
    let (_origin, app) = setup().await;
    let existing = call(&app, Request::get("/internal/ping").body(Body::empty()).unwrap()).await;
    let missing = call(&app, Request::get("/internal/no-such-route").body(Body::empty()).unwrap()).await;
    assert_problem(&existing, StatusCode::UNAUTHORIZED);
    assert_eq!(existing.status, missing.status);
    assert_eq!(existing.body["type"], missing.body["type"]);
}

#[tokio::test]
async fn every_answer_is_signed_for_its_request_and_a_nonce_works_once() {
    let (origin, app) = setup().await;
    let nonce = fresh_nonce();
    let answer = call(&app, signed(&origin, Method::GET, "/internal/ping", "system", b"", &nonce)).await;
    assert_eq!(answer.status, StatusCode::OK);
    SignedResponse { status: 200, request_nonce: &nonce, body: &answer.raw }
        .verify(&origin.state.config.shared_secret, answer.signature.as_deref())
        .expect("the answer's signature verifies for the request's nonce");
    // The same signature on another nonce does not verify.
    assert!(SignedResponse { status: 200, request_nonce: "another", body: &answer.raw }
        .verify(&origin.state.config.shared_secret, answer.signature.as_deref())
        .is_err());

    let replay = call(&app, signed(&origin, Method::GET, "/internal/ping", "system", b"", &nonce)).await;
    assert_problem(&replay, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let (origin, app) = setup().await;
    let body = br#"{"email":"a@example.com","password":"correct horse battery staple"}"#;
    let mut request = signed(&origin, Method::POST, "/internal/users", "anonymous", body, &fresh_nonce());
    *request.body_mut() =
        Body::from(&br#"{"email":"b@example.com","password":"correct horse battery staple"}"#[..]);
    assert_problem(&call(&app, request).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bad_body_is_a_400_that_names_what_is_wrong_and_stores_nothing() {
    let (origin, app) = setup().await;
    let email = "router-test@example.com";
    for (body, names) in [
        (json!({ "email": 5, "password": "correct horse battery staple" }).to_string(), "email"),
        (json!({ "email": email }).to_string(), "password"),
        (r#"{"email": "#.to_owned(), "EOF"),
        (
            json!({ "email": email, "password": "correct horse battery staple", "tier": "platinum" })
                .to_string(),
            "platinum",
        ),
    ] {
        let answer = call(
            &app,
            signed(&origin, Method::POST, "/internal/users", "anonymous", body.as_bytes(), &fresh_nonce()),
        )
        .await;
        assert_problem(&answer, StatusCode::BAD_REQUEST);
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(names), "{detail:?} should name {names:?}");
    }
    // Nothing was kept: the address is still free.
    let body = json!({ "email": email, "password": "correct horse battery staple" }).to_string();
    let created = call(
        &app,
        signed(&origin, Method::POST, "/internal/users", "anonymous", body.as_bytes(), &fresh_nonce()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["email"], email);
}

#[tokio::test]
async fn unknown_ids_are_404_and_a_user_reads_only_their_own_profile() {
    let (origin, app) = setup().await;
    let body =
        json!({ "email": "owner@example.com", "password": "correct horse battery staple" }).to_string();
    let created = call(
        &app,
        signed(&origin, Method::POST, "/internal/users", "anonymous", body.as_bytes(), &fresh_nonce()),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let own = call(
        &app,
        signed(
            &origin,
            Method::GET,
            &format!("/internal/users/{id}"),
            &format!("user:{id}:user"),
            b"",
            &fresh_nonce(),
        ),
    )
    .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["id"], json!(id));

    let stranger = "usr_00000000000000000000000000000000";
    let other = call(
        &app,
        signed(
            &origin,
            Method::GET,
            &format!("/internal/users/{id}"),
            &format!("user:{stranger}:user"),
            b"",
            &fresh_nonce(),
        ),
    )
    .await;
    assert_problem(&other, StatusCode::FORBIDDEN);

    let missing = call(
        &app,
        signed(&origin, Method::GET, &format!("/internal/users/{stranger}"), "system", b"", &fresh_nonce()),
    )
    .await;
    assert_problem(&missing, StatusCode::NOT_FOUND);
    let garbage =
        call(&app, signed(&origin, Method::GET, "/internal/users/not-an-id", "system", b"", &fresh_nonce()))
            .await;
    assert_problem(&garbage, StatusCode::NOT_FOUND);
    let no_route =
        call(&app, signed(&origin, Method::GET, "/internal/nothing/here", "system", b"", &fresh_nonce()))
            .await;
    assert_problem(&no_route, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let (origin, app) = setup().await;
    let body = vec![b' '; crate::signed::MAX_BODY_BYTES + 1];
    let answer =
        call(&app, signed(&origin, Method::POST, "/internal/users", "anonymous", &body, &fresh_nonce()))
            .await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE);
}
