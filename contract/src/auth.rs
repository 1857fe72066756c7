//! The auth operations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Api;
