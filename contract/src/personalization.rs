//! The personalization operations.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi()]
pub struct Api;
