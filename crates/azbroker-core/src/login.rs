//! Interactive logins as the admin API carries them between the CLI and the daemon: starting a
//! sign-in flow, watching it, and what `status` shows about each login. Plain data (serde), so
//! the server crate can route it without knowing how flows run upstream, plus the
//! [`RedirectListener`] seam through which the upstream crate receives a browser's loopback
//! redirect without importing an HTTP server.
//!
//! Nothing here ever holds a token or a refresh token.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::source::BoxFuture;

/// How a person signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoginMethod {
    /// Device code: a code to type at a URL, from any device (PROTOCOLS.md §12.2).
    #[default]
    DeviceCode,
    /// Authorization code + PKCE with a loopback redirect, in a browser on this machine.
    Browser,
}

/// `POST /v1/logins/{login}/flows`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoginRequest {
    /// Sign in at this tenant instead of the login's authority (needed when a tenant demands
    /// its own MFA / conditional-access sign-in).
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub method: LoginMethod,
}

/// A started flow: what to show the person.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowStart {
    pub flow_id: String,
    pub method: LoginMethod,
    /// The tenant the sign-in happens at.
    pub tenant: String,
    /// Entra's own instruction, with the code (device code).
    pub message: Option<String>,
    pub user_code: Option<String>,
    pub verification_uri: Option<String>,
    /// The page to open (browser).
    pub authorize_url: Option<String>,
    pub expires_in_secs: u64,
}

/// Where a flow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowState {
    Pending,
    SignedIn,
    Failed,
    Cancelled,
    Expired,
}

impl FlowState {
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

/// `GET /v1/logins/{login}/flows/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowStatus {
    pub state: FlowState,
    pub expires_in_secs: u64,
    /// Who signed in (user name), once signed in.
    pub account: Option<String>,
    /// Why it failed (Entra's description), never a secret.
    pub error: Option<String>,
}

/// One tenant of a login that needs an interactive sign-in there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantNeedingSignIn {
    pub tenant: String,
    pub reason: String,
    /// The exact command that fixes it.
    pub command: String,
}

/// A login as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginStatus {
    pub name: String,
    pub kind: String,
    /// The authority tenant (user logins) or the login's tenant.
    pub tenant: String,
    /// `signed_in`, `needs_sign_in`, `not_signed_in` (user logins) or `configured` (others).
    pub state: String,
    /// The signed-in user name.
    pub account: Option<String>,
    /// Why the whole login needs sign-in.
    pub reason: Option<String>,
    /// The command that fixes the whole login.
    pub command: Option<String>,
    #[serde(default)]
    pub tenants_needing_sign_in: Vec<TenantNeedingSignIn>,
    pub last_error: Option<String>,
}

/// A tenant the signed-in user can reach (ARM `GET /tenants`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantInfo {
    pub tenant_id: String,
    pub display_name: Option<String>,
    pub default_domain: Option<String>,
    pub category: Option<String>,
}

/// An admin request the daemon refused: HTTP status, a stable code, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AdminError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self { status, code: code.to_owned(), message: message.into() }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }
}

/// The query parameters a browser brought to the loopback redirect (`code`, `state`, or `error`,
/// `error_description`).
pub type CallbackParams = HashMap<String, String>;

/// A bound loopback redirect: the URI to register with the authorize request, and the first
/// callback that arrives. Dropping `callback` closes the listener.
pub struct Redirect {
    pub redirect_uri: String,
    pub callback: BoxFuture<'static, Result<CallbackParams, String>>,
}

/// Binds loopback redirect listeners for browser sign-ins (implemented by the server crate).
pub trait RedirectListener: Send + Sync + 'static {
    fn listen(&self) -> BoxFuture<'static, Result<Redirect, String>>;
}
