//! The logic the edge and the origin share. This crate does no I/O and never reads a clock or a
//! random source: time and randomness come in as arguments, so every rule here is tested
//! natively and deterministically, and the same code runs inside the Worker on wasm32.

pub mod analytics;
pub mod coppa;
pub mod delivery;
pub mod email;
pub mod entitlements;
pub mod federated;
pub mod identity;
pub mod integrations;
pub mod listening;
pub mod messages;
pub mod net;
pub mod oauth;
pub mod observe;
pub mod org;
pub mod passkey;
pub mod password;
pub mod personalization;
pub mod phone;
pub mod problem;
pub mod profile;
pub mod rate_limit;
pub mod retention;
pub mod rights;
pub mod risk;
pub mod security;
pub mod session;
pub mod signing;
pub mod sms_quota;
pub mod softlock;
pub mod tier;
pub mod time;
pub mod token;
pub mod totp;
pub mod wire;
