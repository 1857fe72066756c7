//! The contract: the request and answer types of every public operation and of every call
//! between the edge and the origin. Both sides (de)serialise these types, never a
//! `serde_json::Value` read by string keys, and the OpenAPI document is generated from them
//! (`contract/`, with this crate's `openapi` feature), so the document says what the code does.
//!
//! One module per area of the API; enums used end to end (`Tier`, `Role`, `Factor`) stay
//! where their rules are (`tier`, `identity`, `security`) and are re-exported here.

pub use crate::identity::Role;
pub use crate::security::Factor;
pub use crate::tier::Tier;

pub mod admin;
pub mod auth;
pub mod entitlements;
pub mod event;
pub mod integrations;
pub mod job;
pub mod orgs;
pub mod passkeys;
pub mod personalization;
pub mod rights;
pub mod users;
