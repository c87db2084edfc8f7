//! `GET /v1/status`: the running daemon, its profiles, cache entries and counters (from the
//! server crate), plus what only the binary knows (config origin, logins with their health,
//! per-profile upstream health, sockets, client exports) as one [`DaemonStatus`].
//!
//! Never a secret: tokens appear as short hashes, the identity header is named, not shown.

use serde::{Deserialize, Serialize};

use super::login::LoginStatus;
use crate::engine::{EntryStatus, StatsSnapshot};
use crate::metrics::{LastError, ProfileMetrics};

/// The whole status answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(flatten)]
    pub info: DaemonInfo,
    pub ready: bool,
    pub uptime_secs: u64,
    pub profiles: Vec<String>,
    pub default_profile: Option<String>,
    pub entries: Vec<EntryStatus>,
    pub stats: StatsSnapshot,
    #[serde(flatten)]
    pub daemon: DaemonStatus,
}

/// Static facts about the running daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    /// Token listener addresses, e.g. `127.0.0.1:50342`.
    pub listeners: Vec<String>,
}

/// What the binary adds to the status: computed at each call from the config in force, the
/// logins and the engine's metrics; sockets and exports are fixed at start, except the
/// per-profile listeners ([`SocketOrigin::Auto`]), listed as open at the time of the call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// The config file in force; absent on built-in defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default)]
    pub logins: Vec<LoginHealth>,
    #[serde(default)]
    pub upstream: Vec<UpstreamHealth>,
    #[serde(default)]
    pub sockets: Vec<SocketInfo>,
    /// What clients export to reach the first general listener; `null` when there is none.
    #[serde(default)]
    pub exports: Option<Exports>,
    /// Who started the daemon (socket activation, a CLI command's autostart, by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<StartedBy>,
    /// The Entra ID authority host in use (the local authority's with `--local-authority`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// The Resource Manager endpoint in use for tenant discovery (the local authority's own ARM
    /// with `--local-authority`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm_endpoint: Option<String>,
}

/// Who started the running daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartedBy {
    /// The service manager, on the first connection to a socket it holds (socket activation).
    Systemd,
    /// A CLI command that found no daemon (`azbroker login`, `token`, `env`, `run`, `status`).
    Autostart,
    /// Someone ran `azbroker serve` (or a unit without socket activation).
    Manual,
}

impl StartedBy {
    /// What `azbroker status` says.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Systemd => "socket activation (systemd)",
            Self::Autostart => "autostarted by the CLI (stop it with `azbroker stop`)",
            Self::Manual => "started by hand (`azbroker serve`)",
        }
    }
}

/// A login with its state and the health of its profiles upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginHealth {
    #[serde(flatten)]
    pub login: LoginStatus,
    /// The profiles that use this login.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// The engine's latest upstream failure among those profiles (`last_error` is the login's
    /// own sign-in error).
    #[serde(default)]
    pub last_upstream_error: Option<UpstreamErrorInfo>,
    /// A person must act (sign in again, fix the secret).
    #[serde(default)]
    pub needs_attention: bool,
}

/// One profile's upstream calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamHealth {
    pub profile: String,
    pub requests: u64,
    pub errors: u64,
    pub last_success_unix: Option<u64>,
    pub last_error: Option<UpstreamErrorInfo>,
    pub needs_attention: bool,
}

impl From<&ProfileMetrics> for UpstreamHealth {
    fn from(m: &ProfileMetrics) -> Self {
        Self {
            profile: m.profile.to_string(),
            requests: m.upstream_requests,
            errors: m.upstream_errors.iter().map(|(_, n)| n).sum(),
            last_success_unix: m.last_success_unix,
            last_error: m.last_error.as_ref().map(Into::into),
            needs_attention: m.needs_attention,
        }
    }
}

/// An upstream failure as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamErrorInfo {
    /// `UpstreamError::kind`, e.g. `invalid_grant`.
    pub kind: String,
    pub message: String,
    /// Wall-clock time of the failure, Unix seconds.
    pub at_unix: u64,
    pub needs_attention: bool,
}

impl From<&LastError> for UpstreamErrorInfo {
    fn from(e: &LastError) -> Self {
        Self {
            kind: e.kind.to_owned(),
            message: e.message.clone(),
            at_unix: e.at_unix,
            needs_attention: e.needs_attention,
        }
    }
}

/// A socket the daemon serves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketInfo {
    pub kind: SocketKind,
    /// `IP:PORT`, or the admin socket's path.
    pub address: String,
    /// The profile a per-profile listener serves.
    #[serde(default)]
    pub profile: Option<String>,
    pub origin: SocketOrigin,
}

impl DaemonStatus {
    /// The listener the daemon opened for `profile` ([`SocketOrigin::Auto`]) of `kind`, as
    /// `IP:PORT`.
    pub fn profile_listener(&self, profile: &str, kind: SocketKind) -> Option<&str> {
        self.sockets
            .iter()
            .find(|s| {
                s.origin == SocketOrigin::Auto && s.kind == kind && s.profile.as_deref() == Some(profile)
            })
            .map(|s| s.address.as_str())
    }
}

/// What a socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SocketKind {
    /// Token requests over plain HTTP (every dialect but Service Fabric).
    Http,
    /// Token requests over HTTPS (Service Fabric).
    Https,
    /// IMDS on the link-local address.
    ImdsLinkLocal,
    /// This admin API.
    Admin,
    /// Token requests from containers, with a client key (`container_listen`).
    Container,
}

impl SocketKind {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::ImdsLinkLocal => "imds-link-local",
            Self::Admin => "admin",
            Self::Container => "container",
        }
    }
}

/// Where a listening socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketOrigin {
    /// Bound by the daemon from the config.
    Config,
    /// Passed by the service manager (socket activation).
    Systemd,
    /// Opened by the daemon for a profile without a `listen` of its own (what `azbroker env
    /// --profile P` prints); its port is kept in `state_dir/profile-listeners`, and reloads open
    /// and close such listeners.
    Auto,
}

impl SocketOrigin {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Systemd => "systemd",
            Self::Auto => "auto",
        }
    }
}

/// What a client exports, per dialect, for the first general listener (what `azbroker env`
/// prints). The identity header's value is withheld.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exports {
    /// The command that prints the real values.
    pub command: String,
    #[serde(rename = "app-service")]
    pub app_service: AppServiceExports,
    pub imds: ImdsExports,
    /// How to reach one profile.
    pub per_profile: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppServiceExports {
    #[serde(rename = "IDENTITY_ENDPOINT")]
    pub identity_endpoint: String,
    /// Names where the value is; never the value.
    #[serde(rename = "IDENTITY_HEADER")]
    pub identity_header: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImdsExports {
    #[serde(rename = "AZURE_POD_IDENTITY_AUTHORITY_HOST")]
    pub authority_host: String,
}
