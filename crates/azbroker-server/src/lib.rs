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
//! This crate talks to upstream only through `azbroker_core::Engine`; it never depends on
//! `azbroker-entra`, never caches tokens itself, and never writes a token or secret into a log
//! line, error message or `Debug` output (tokens are identified by `AccessToken::hash`).

pub mod admin;
mod body;
mod dialect;
mod error;
mod guard;
mod health;
mod metrics;
mod query;
mod routes;
mod select;
mod serve;
mod state;

pub use metrics::render as render_metrics;
pub use routes::router;
pub use serve::serve;
pub use state::{AppState, RuntimeSecrets};

#[cfg(test)]
mod tests;
