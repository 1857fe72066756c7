//! RFC 9457 problem details: the one error shape both services answer with.
//!
//! Every kind of problem has a stable `type` URI (a URN, so clients match on it and never need
//! to dereference it), a fixed title and an HTTP status. Services add a `detail` for the case at
//! hand and, where it helps a client, extension members.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The media type of every error body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The kinds of problem the API answers with. The slug is the stable part of `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    BadRequest,
    ValidationFailed,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PreconditionFailed,
    UnsupportedMediaType,
    PayloadTooLarge,
    RateLimited,
    MfaRequired,
    LoginRefused,
    Internal,
    OriginUnavailable,
    BadGateway,
    /// A sensitive change needs a fresh proof: the password and, with a factor enrolled, a code.
    StepUpRequired,
    /// The service is at capacity (password hashing saturated): retry after `Retry-After`.
    Overloaded,
    /// The account is scheduled for erasure; the problem says how to cancel.
    ErasurePending,
    /// A link that worked once no longer does (an export expired or downloaded its maximum).
    Gone,
    /// A usage report beyond the user's entitlement: the problem names the limit.
    EntitlementExceeded,
}

impl ProblemKind {
    pub fn slug(self) -> &'static str {
        match self {
            Self::BadRequest => "bad-request",
            Self::ValidationFailed => "validation-failed",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition-failed",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge => "payload-too-large",
            Self::RateLimited => "rate-limited",
            Self::MfaRequired => "mfa-required",
            Self::LoginRefused => "login-refused",
            Self::Internal => "internal",
            Self::OriginUnavailable => "origin-unavailable",
            Self::BadGateway => "bad-gateway",
            Self::StepUpRequired => "step-up-required",
            Self::Overloaded => "overloaded",
            Self::ErasurePending => "erasure-pending",
            Self::Gone => "gone",
            Self::EntitlementExceeded => "entitlement-exceeded",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest | Self::ValidationFailed => 400,
            Self::Unauthenticated | Self::MfaRequired | Self::LoginRefused => 401,
            Self::Forbidden | Self::StepUpRequired | Self::ErasurePending | Self::EntitlementExceeded => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::Gone => 410,
            Self::PreconditionFailed => 412,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::BadGateway => 502,
            Self::OriginUnavailable | Self::Overloaded => 503,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "The request is malformed",
            Self::ValidationFailed => "A field failed validation",
            Self::Unauthenticated => "Authentication is required",
            Self::Forbidden => "This action is not allowed",
            Self::NotFound => "No such resource",
            Self::MethodNotAllowed => "Method not allowed on this resource",
            Self::Conflict => "The request conflicts with the current state",
            Self::PreconditionFailed => "The resource has changed",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::PayloadTooLarge => "The request body is too large",
            Self::RateLimited => "Too many requests",
            Self::MfaRequired => "A second factor is required",
            Self::LoginRefused => "The login was refused as too risky",
            Self::Internal => "Internal error",
            Self::OriginUnavailable => "The origin service is unavailable",
            Self::BadGateway => "The origin service answered badly",
            Self::StepUpRequired => "This change needs a fresh proof of identity",
            Self::Overloaded => "The service is at capacity",
            Self::ErasurePending => "The account is scheduled for erasure",
            Self::Gone => "This link no longer works",
            Self::EntitlementExceeded => "The entitlement does not allow this",
        }
    }

    pub fn type_uri(self) -> String {
        format!("{TYPE_PREFIX}{}", self.slug())
    }

    /// The kind whose `type` URI this is, for clients of the origin (the edge) that pass a
    /// problem through.
    pub fn from_type_uri(uri: &str) -> Option<Self> {
        let slug = uri.strip_prefix(TYPE_PREFIX)?;
        ALL.iter().copied().find(|k| k.slug() == slug)
    }
}

/// Every problem `type` starts with this.
pub const TYPE_PREFIX: &str = "urn:problem-type:user-management:";

const ALL: [ProblemKind; 21] = [
    ProblemKind::BadRequest,
    ProblemKind::ValidationFailed,
    ProblemKind::Unauthenticated,
    ProblemKind::Forbidden,
    ProblemKind::NotFound,
    ProblemKind::MethodNotAllowed,
    ProblemKind::Conflict,
    ProblemKind::PreconditionFailed,
    ProblemKind::UnsupportedMediaType,
    ProblemKind::PayloadTooLarge,
    ProblemKind::RateLimited,
    ProblemKind::MfaRequired,
    ProblemKind::LoginRefused,
    ProblemKind::Internal,
    ProblemKind::OriginUnavailable,
    ProblemKind::BadGateway,
    ProblemKind::StepUpRequired,
    ProblemKind::Overloaded,
    ProblemKind::ErasurePending,
    ProblemKind::Gone,
    ProblemKind::EntitlementExceeded,
];

/// A problem details body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extension members (RFC 9457 §3.2), flattened into the body.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_uri: kind.type_uri(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: Some(detail.into()),
            extensions: Map::new(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and JSON values always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// The document's `Problem` schema. Written out rather than derived: the extension members are
/// a flattened map, which a derive would describe as nothing at all; the ones the API uses are
/// named here.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, Type};
        let string = |description: &str| {
            ObjectBuilder::new().schema_type(Type::String).description(Some(description.to_owned()))
        };
        let field_error = ObjectBuilder::new()
            .description(Some("One field that failed its rule"))
            .property("field", string("The field, as a JSON pointer or a dotted path"))
            .required("field")
            .property("kind", string("What is wrong: unknown_field, invalid_value, …"))
            .property("rule", string("The rule the value broke"))
            .property("detail", string("A sentence for a person"))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)));
        ObjectBuilder::new()
            .description(Some("RFC 9457 problem details; extension members vary with the problem"))
            .property("type", string("Stable problem type URI, urn:problem-type:user-management:<slug>"))
            .required("type")
            .property("title", string("The problem type's title"))
            .required("title")
            .property("status", ObjectBuilder::new().schema_type(Type::Integer))
            .required("status")
            .property("detail", string("What happened, for a person"))
            .property("errors", ArrayBuilder::new().items(field_error))
            .property(
                "current_version",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("412: the version the resource has now")),
            )
            .property(
                "retry_after",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .description(Some("429/503: seconds to wait, as in Retry-After")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_serialises_as_rfc9457() {
        let p = Problem::new(ProblemKind::RateLimited, "retry in 3 s").with("retry_after", 3);
        assert_eq!(
            p.to_json(),
            r#"{"type":"urn:problem-type:user-management:rate-limited","title":"Too many requests","status":429,"detail":"retry in 3 s","retry_after":3}"#
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_type_uri() {
        for kind in ALL {
            assert_eq!(ProblemKind::from_type_uri(&kind.type_uri()), Some(kind));
        }
        assert_eq!(ProblemKind::from_type_uri("about:blank"), None);
    }
}
