//! Interactive logins as the admin API carries them: starting a sign-in flow, watching it, the
//! tenants a user can reach, and what `status` shows about each login. Plain data, so the server
//! crate routes it without knowing how flows run upstream.
//!
//! Nothing here ever holds a token or a refresh token.

use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// Sign in at this tenant instead of the login's authority (needed when a tenant demands
    /// its own MFA / conditional-access sign-in).
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub method: LoginMethod,
}

/// A started flow: what to show the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStatus {
    pub name: String,
    pub kind: String,
    /// The authority tenant (user logins) or the login's tenant.
    pub tenant: String,
    pub state: LoginState,
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

/// Where a login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginState {
    /// A user login with a usable refresh token.
    SignedIn,
    /// A user login whose refresh token no longer works (`reason`, `command` say why and how).
    NeedsSignIn,
    /// A user login nobody signed in to yet.
    NotSignedIn,
    /// Any other login: it needs no sign-in.
    Configured,
}

impl LoginState {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignedIn => "signed_in",
            Self::NeedsSignIn => "needs_sign_in",
            Self::NotSignedIn => "not_signed_in",
            Self::Configured => "configured",
        }
    }
}

/// A tenant the signed-in user can reach (ARM `GET /tenants`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub tenant_id: String,
    pub display_name: Option<String>,
    pub default_domain: Option<String>,
    pub category: Option<String>,
}
