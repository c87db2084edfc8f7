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
//! - [`service_principal`]: [`ServicePrincipalSource`], service principals (secret, certificate,
//!   workload identity).
//! - [`user`]: [`UserLogins`] and [`UserSource`], user logins: one refresh token redeemed in
//!   every tenant, "needs sign-in" marks; `flows`: device-code and browser sign-ins run by the
//!   daemon, logout, the tenant list.
//! - [`store`]: [`LoginStore`], the encrypted, atomically written, locked login store.
//! - [`assertion`]: certificate assertions (PS256, `x5t#S256`) and federated token files for
//!   [`ServicePrincipalSource`]; [`azure_cli`]: [`AzureCliSource`];
//!   [`managed_identity`]: [`ManagedIdentitySource`] (the host's real managed identity, via
//!   `azure_identity`).
//! - [`arm`]: [`ArmClient`], tenant discovery from ARM's challenge and `GET /tenants`.

pub mod arm;
pub mod assertion;
pub mod azure_cli;
pub mod client;
pub mod cloud;
mod error_map;
mod flows;
pub mod managed_identity;
pub mod response;
pub mod service_principal;
pub mod store;
pub mod user;

#[cfg(test)]
mod fuzz_tests;

pub use arm::ArmClient;
pub use azure_cli::AzureCliSource;
pub use client::{ClientCredential, EntraClient, HttpSettings, SetupError};
pub use cloud::{CloudName, parse_authority_host};
pub use managed_identity::ManagedIdentitySource;
pub use response::TokenResponse;
pub use service_principal::{Credential, SecretRef, ServicePrincipalSource};
pub use store::{LoginStore, StoreError, StoreKey};
pub use user::{AZURE_CLI_CLIENT_ID, LoginEvent, UserLogin, UserLogins, UserSource};
