//! The admin API's contract: every request and answer that crosses the daemon's admin socket, as
//! serde types. The daemon (`azbroker-server`'s admin routes and the binary's hooks) serialises
//! them; the CLI deserialises the very same types. Nothing on either side reads admin JSON by
//! string key.
//!
//! It lives in core because every party sees core: the server crate routes these values, the
//! upstream crate produces login answers and [`AdminError`]s, and the binary writes `status` and
//! reads everything back as the CLI.
//!
//! It knows no HTTP: [`AdminError`] says *what* went wrong; the server crate alone chooses the
//! status code. Of a token it carries only the short hash; the one answer with secrets in it
//! ([`SecretValues`]) redacts them in `Debug`.

mod keys;
mod login;
mod personal;
mod secrets;
mod status;

pub use keys::{DEFAULT_KEY_TTL_SECS, KeyCreate, KeyCreated, KeyInfo, KeyList};
pub use login::{
    FlowStart, FlowState, FlowStatus, LoginMethod, LoginRequest, LoginState, LoginStatus, TenantInfo,
    TenantNeedingSignIn,
};
pub use personal::{PersonalWorkspace, WorkspaceRemoved, WorkspaceRequest};
pub use secrets::SecretValues;
pub use status::{
    AppServiceExports, DaemonInfo, DaemonStatus, Exports, ImdsExports, LoginHealth, SocketInfo, SocketKind,
    SocketOrigin, StartedBy, Status, UpstreamErrorInfo, UpstreamHealth,
};

use serde::{Deserialize, Serialize};

use crate::error::UpstreamError;

/// An admin request the daemon refused, by kind. The server crate maps each kind to one HTTP
/// status (`azbroker_server::admin::status_of`); the body is an [`ErrorBody`] with [`Self::code`]
/// and the `Display` sentence, which never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The request itself is wrong: a body that does not parse, a malformed tenant.
    #[error("{0}")]
    BadRequest(String),
    /// A resource that is not a valid resource identifier.
    #[error("{0}")]
    InvalidResource(String),
    /// A profile that is not configured.
    #[error("{0}")]
    UnknownProfile(String),
    /// A login, flow or endpoint that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The peer may not do this on this socket.
    #[error("{0}")]
    Forbidden(String),
    /// Too many sign-ins are under way at once.
    #[error("{0}")]
    TooManyFlows(String),
    /// This daemon does not offer the operation at all.
    #[error("{0}")]
    Unsupported(String),
    /// The daemon cannot do it now (shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// Rotating the runtime secrets failed; the old values stay in force.
    #[error("{0}")]
    RotateFailed(String),
    /// The loopback listener for a browser sign-in could not be bound.
    #[error("{0}")]
    RedirectListener(String),
    /// The identity provider (or ARM) refused or failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl AdminError {
    /// The stable machine-readable code (`error` in the body).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::InvalidResource(_) => "invalid_resource",
            Self::UnknownProfile(_) => "unknown_profile",
            Self::NotFound(_) => "not_found",
            Self::Forbidden(_) => "forbidden",
            Self::TooManyFlows(_) => "too_many_flows",
            Self::Unsupported(_) => "not_supported",
            Self::Unavailable(_) => "unavailable",
            Self::RotateFailed(_) => "rotate_failed",
            Self::RedirectListener(_) => "redirect_listener",
            Self::Upstream(e) => e.kind(),
        }
    }

    /// The body the daemon answers with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: self.code().to_owned(), error_description: self.to_string() }
    }
}

/// Every refused admin request's body: `{"error": code, "error_description": sentence}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub error_description: String,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error_description)
    }
}

/// A successful reload (`POST /v1/reload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// Profiles configured after the reload.
    pub profiles: usize,
    /// Things that did not take effect (e.g. listener changes, which need a restart).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A rejected reload: every problem found; the running config stays in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("config reload rejected: {}", problems.join("; "))]
pub struct ReloadRejected {
    pub problems: Vec<String>,
}

/// The answer to `POST /v1/reload`, either way: `{"status": "reloaded" | "rejected", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReloadAnswer {
    Reloaded(ReloadOutcome),
    Rejected(ReloadRejected),
}

impl From<Result<ReloadOutcome, ReloadRejected>> for ReloadAnswer {
    fn from(result: Result<ReloadOutcome, ReloadRejected>) -> Self {
        match result {
            Ok(outcome) => Self::Reloaded(outcome),
            Err(rejected) => Self::Rejected(rejected),
        }
    }
}

/// A successful rotation (`POST /v1/rotate-secrets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateOutcome {
    /// Names of the secrets that changed.
    pub rotated: Vec<String>,
    /// Names of the secrets left as they were (e.g. a configured file that did not change).
    #[serde(default)]
    pub unchanged: Vec<String>,
    /// How long the previous values stay valid.
    pub grace_secs: u64,
}

/// The answer to `POST /v1/stop`: the daemon accepted to stop and drains its in-flight requests
/// now; it is gone once its admin socket is (the CLI waits for that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopAnswer {
    /// The stopping daemon's process id.
    pub pid: u32,
}

/// The answer to `POST /v1/logins/{login}/logout`: `{"status": "signed_out", "had_state": ...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LogoutAnswer {
    SignedOut {
        /// The login had a refresh token or cached tokens to forget.
        had_state: bool,
    },
}

/// The answer to `GET /v1/logins/{login}/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantsAnswer {
    pub tenants: Vec<TenantInfo>,
}

/// `POST /v1/refresh`: which cached entries to refresh (both optional; none means all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
}

/// The answer to `POST /v1/refresh`: one line per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshAnswer {
    pub refreshed: Vec<RefreshLine>,
}

/// One refreshed entry: its new token's short hash and lifetime, or the upstream error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshLine {
    pub profile: String,
    pub resource: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests;
