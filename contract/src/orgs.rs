//! The orgs operations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Api;
