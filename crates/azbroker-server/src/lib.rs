//! Serving: the HTTP endpoints that Azure's managed-identity hosts expose, backed by the token
//! engine of `azbroker-core`.
//!
//! One request, end to end ([`router`]): the path is canonicalised when it needs to be (an optional
//! `/p/{profile}` prefix, case, one trailing slash); every route first applies the connection
//! guards (loopback peer, loopback `Host`); a token route hands the request to its dialect, which
//! parses it, picks a profile through core's `Directory`, asks the `Engine` for a token and writes
//! the exact body that dialect's clients parse. Each dialect maps every error to its own body shape
//! in one place.
//!
//! Dialects (`dialect/`): IMDS, App Service, Azure ML (GET with `secret`; the secret-less POST of
//! azureml-core is Cloud Shell's), Cloud Shell, Azure Arc (401 challenge with key files, see
//! [`ArcKeys`]), Service Fabric (only on the HTTPS router, [`serve_tls`]) and the native,
//! tenant-aware API (azd's external-authentication shape).
//!
//! This crate talks to upstream only through `azbroker_core::Engine`; it never depends on
//! `azbroker-entra`, never caches tokens itself, and never writes a token or secret into a log
//! line, error message or `Debug` output (tokens are identified by `AccessToken::hash`).

pub mod admin;
mod arc_keys;
mod authorize;
mod body;
pub mod conn;
mod denial_log;
mod dialect;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod guard;
mod health;
pub mod identity;
mod keys;
mod metrics;
mod query;
mod ratelimit;
pub mod redirect;
mod routes;
mod runtime;
mod secrets;
mod select;
mod serve_tls;
mod state;

pub use arc_keys::{ARC_TOKENS_DIR, ArcKeys, KEY_TTL, SWEEP_EVERY as ARC_SWEEP_EVERY};
pub use authorize::GroupResolver;
pub use azbroker_core::Caller;
pub use conn::{Limits, Routing, Server, serve};
pub use dialect::azure_ml::DEFAULT_IDENTITY_CLIENT_ID;
pub use dialect::{AUDIT_TARGET, AuditRecord, AuditWriter, set_audit_writer};
pub use metrics::render as render_metrics;
pub use ratelimit::RateLimit;
pub use routes::{Routes, container_router, link_local_router, router, service_fabric_router};
pub use runtime::{Runtime, RuntimeError, RuntimeSpec};
pub use secrets::{RuntimeSecrets, SecretId};
pub use serve_tls::{serve_tls, tls_config};
pub use state::AppState;

#[cfg(test)]
mod tests;
