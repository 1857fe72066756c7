//! The admin operations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Api;
