//! What every area shares: the problem responses the edge answers for any operation (a bad body,
//! a missing token, a quota, an unreachable origin), the security schemes and the rate-limit
//! headers. An operation names a response here with `response = common::NotFound` and so on.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A response whose body is a `Problem`.
pub fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"))))
            .build(),
    )
}

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::Integer))
        .description(Some(description))
        .build()
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers), on every answer
/// to a limited request.
pub fn with_rate_limit_headers(response: ResponseBuilder) -> ResponseBuilder {
    response
        .header(
            "RateLimit-Policy",
            string_header(
                "draft-ietf-httpapi-ratelimit-headers: \"<policy>\";q=<quota>;w=<window seconds> (absent for unlimited tiers)",
            ),
        )
        .header("RateLimit", string_header("\"<policy>\";r=<remaining>;t=<seconds until remaining grows>"))
}

macro_rules! problem_response {
    ($name:ident, $description:expr) => {
        problem_response!($name, $description, |r| r);
    };
    ($name:ident, $description:expr, $extra:expr) => {
        #[doc = $description]
        pub struct $name;

        impl<'s> utoipa::ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                let extra: fn(ResponseBuilder) -> ResponseBuilder = $extra;
                (stringify!($name), RefOr::T(extra(problem($description)).build()))
            }
        }
    };
}

problem_response!(BadRequest, "The body is not valid JSON, or a field is unknown, missing or out of range");
problem_response!(Unauthenticated, "Missing, expired or invalid access token (or credentials)");
problem_response!(Forbidden, "The caller may not act on this resource");
problem_response!(NotFound, "No such user or resource (also for an id that is not well formed)");
problem_response!(PayloadTooLarge, "The body is larger than the edge accepts");
problem_response!(UnsupportedMediaType, "The body is not `application/json`");
problem_response!(
    TooManyRequests,
    "A rate limit or softlock refused the request; `Retry-After` says when to retry",
    |r| r.header("Retry-After", integer_header("Seconds to wait before retrying"))
);
problem_response!(BadGateway, "The origin service failed to complete the request");
problem_response!(
    ServiceUnavailable,
    "The origin service is unavailable or saturated; `Retry-After` says when to retry when known",
    |r| r.header("Retry-After", integer_header("Seconds to wait before retrying"))
);

/// `bearerAuth` (an access token) and `clientBasic` (a service client on the token endpoint).
pub fn security_schemes() -> Vec<(&'static str, SecurityScheme)> {
    vec![
        (
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT (EdDSA)").build(),
            ),
        ),
        (
            "clientBasic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A service client's id and secret (RFC 6749 §2.3.1), on the token endpoint only",
                    ))
                    .build(),
            ),
        ),
    ]
}
