//! The upstream side of azbroker: our own Entra ID v2 client (on reqwest + rustls) and the
//! [`azbroker_core::TokenSource`] implementations built on it.
//!
//! This crate talks to Entra ID and nothing else local: it knows no HTTP server framework and never
//! imports `azbroker-server`. It does not cache tokens either — caching, single-flight and refresh
//! are the engine's job (`azbroker-core`). Secrets (client secrets, assertions, tokens) travel as
//! [`azbroker_core::Secret`] and never appear in logs, errors or `Debug` output.
//!
//! - [`cloud`]: national clouds and authority-host validation.
//! - [`client`]: [`EntraClient`], the token endpoint grants, HTTP settings.
//! - [`response`]: [`TokenResponse`], the parsed success body.
//! - [`service_principal`]: [`ServicePrincipalSource`], client-secret service principals.

pub mod client;
pub mod cloud;
mod error_map;
pub mod response;
pub mod service_principal;

#[cfg(test)]
mod fuzz_tests;

pub use client::{ClientCredential, EntraClient, HttpSettings, SetupError};
pub use cloud::{CloudName, parse_authority_host};
pub use response::TokenResponse;
pub use service_principal::{SecretRef, ServicePrincipalSource};
