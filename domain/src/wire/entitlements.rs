//! Entitlements, metering and service clients: what a user may do now, a service's usage
//! report and its answer, the service clients admins manage, and the token endpoint's check
//! between the edge and the origin.

use serde::{Deserialize, Serialize};

use crate::entitlements::{Entitlements, Resource};
use crate::oauth::{ClientId, Scope};

/// What the user may do now, with whose it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserEntitlements {
    pub user_id: String,
    #[serde(flatten)]
    pub entitlements: Entitlements,
}

/// A usage report as a service sends it (the origin reads it field by field, so that each
/// wrong field is named: `entitlements::parse_report`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReportBody {
    pub resource: Resource,
    /// A signed change: positive to use more, negative to free.
    pub delta: i64,
    /// 1 to 128 visible ASCII characters, unique per report; a retry with the same key within
    /// 24 h gets the first answer and counts once.
    pub idempotency_key: String,
}

/// A counted report: the resource's new state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageAnswer {
    pub user_id: String,
    pub resource: Resource,
    pub delta: i64,
    pub admitted: bool,
    pub used: u64,
    /// Null: unlimited.
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Over the limit after a downgrade: nothing more may be added until back within it.
    pub read_only: bool,
    /// A retry of an earlier report with the same key.
    pub replayed: bool,
}

/// What an admin sends to create a service client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewServiceClient {
    /// 1 to 100 characters, no control characters.
    pub name: String,
    /// `usage:write`, `entitlements:read`.
    pub scopes: Vec<String>,
}

/// A service client; its secret only in the answer that created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceClient {
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^svc_[0-9a-f]{32}$"))]
    pub client_id: ClientId,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Shown once, in the answer that created the client; stored as a keyed hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceClients {
    /// Oldest first.
    pub clients: Vec<ServiceClient>,
}

/// What the edge asks the origin at its token endpoint: are these credentials good, and which
/// of the asked scopes does the client have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCheck {
    pub client_id: ClientId,
    pub client_secret: String,
    /// The scopes asked for; none: every scope the client has.
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
}

/// The origin's answer to a good check: the client and the scope to grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientGranted {
    pub client_id: ClientId,
    /// Space-delimited.
    pub scope: String,
}

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceToken {
    /// An EdDSA JWT, `typ` `service`, `sub` the client id.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    pub scope: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_s_secret_appears_only_when_set() {
        let mut client = ServiceClient {
            client_id: ClientId::from_random([7; 16]),
            name: "billing".into(),
            scopes: vec!["usage:write".into()],
            created_at: "2026-12-04T00:00:00Z".into(),
            revoked_at: None,
            client_secret: None,
        };
        assert!(!serde_json::to_string(&client).unwrap().contains("client_secret"));
        client.client_secret = Some("s".into());
        let json = serde_json::to_value(&client).unwrap();
        assert_eq!(json["client_secret"], "s");
        assert_eq!(serde_json::from_value::<ServiceClient>(json).unwrap(), client);
    }
}
