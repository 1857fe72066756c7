//! The integration hub's answers and bodies: the catalogue (answered by the edge from the tier
//! templates), a user's connected services, a connection's start (an authorize URL, or a local
//! integration's key), the provider's callback and a disconnection.

use serde::{Deserialize, Serialize};

use crate::integrations::{AuthKind, Category, Grant, Status};
use crate::tier::Tier;

/// The 17 services, with the tiers that may connect each and the caller's own grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntegrationCatalogue {
    pub count: usize,
    pub integrations: Vec<CatalogueEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogueEntry {
    pub service: String,
    pub name: String,
    pub category: Category,
    pub auth: AuthKind,
    pub tiers: Vec<TierGrant>,
    /// The caller's grant: null when their tier may not connect it.
    pub yours: Option<Grant>,
}

/// A tier that may connect a service, how much of it, and the scopes that grant asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierGrant {
    pub tier: Tier,
    pub grant: Grant,
    pub scopes: Vec<String>,
}

/// A user's connected services. Never a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntegrationList {
    pub integrations: Vec<Integration>,
}

/// One connected service (also the export's `integrations` entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Integration {
    pub service: String,
    pub name: Option<String>,
    pub category: Option<Category>,
    pub auth: Option<AuthKind>,
    pub status: Status,
    pub scopes: Vec<String>,
    /// The account's name at the provider, when it said.
    pub account: Option<String>,
    pub connected_at: String,
    pub expires_at: Option<String>,
    pub last_sync_at: Option<String>,
    pub last_error: Option<String>,
    pub retry_at: Option<String>,
}

/// What starting a connection answers: the provider's authorize URL, or a local
/// integration's new key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConnectAnswer {
    Authorize(IntegrationAuthorization),
    Key(LocalIntegrationKey),
}

/// Send the browser to `authorize_url`; the state is single-use, 10 minutes, bound to the user
/// and to the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntegrationAuthorization {
    pub service: String,
    pub authorize_url: String,
    pub state: String,
    /// The browser binding, from the origin to the edge only: the edge moves it into a
    /// `__Host-` cookie and it leaves the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub binding: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: String,
}

/// A local integration's API key for its desktop plug-in: shown once, only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocalIntegrationKey {
    pub service: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^umk_[a-z_]+_[0-9a-f]{32}$"))]
    pub key: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub note: String,
}

/// What the edge forwards from a provider's redirect to the callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    pub state: String,
    /// The authorisation code (OAuth 2.0), or Last.fm's token.
    #[serde(default)]
    pub code: Option<String>,
    /// The provider's error (`access_denied` when the user declined).
    #[serde(default)]
    pub error: Option<String>,
    /// The browser binding from the `__Host-` cookie ("" when the browser sent none).
    #[serde(default)]
    pub binding: String,
}

/// The callback's answer: the service is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntegrationConnected {
    pub service: String,
    pub user_id: String,
    pub status: Status,
    pub scopes: Vec<String>,
    pub account: Option<String>,
    pub connected_at: String,
}

/// A disconnection: the tokens are gone; `revoked_at_provider` says whether the provider
/// revoked them too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntegrationRemoved {
    pub service: String,
    pub removed: bool,
    pub revoked_at_provider: bool,
    pub revoke_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_answer_reads_as_what_it_is_and_the_binding_stays_out_when_taken() {
        let authorize = r#"{"service":"spotify","authorize_url":"https://p/a","state":"s","binding":"b","scopes":["x"],"expires_at":"t"}"#;
        let ConnectAnswer::Authorize(mut a) = serde_json::from_str(authorize).unwrap() else {
            panic!("an authorize answer")
        };
        assert_eq!(a.binding.take().as_deref(), Some("b"));
        assert!(!serde_json::to_string(&a).unwrap().contains("binding"));
        let key =
            r#"{"service":"fl_studio","key":"umk_fl_studio_0","scopes":[],"created_at":"t","note":"n"}"#;
        assert!(matches!(serde_json::from_str(key).unwrap(), ConnectAnswer::Key(_)));
    }
}
