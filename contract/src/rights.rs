//! The rights operations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Api;
