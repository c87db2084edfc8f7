//! The configuration file: parsed once into typed values, with every problem reported together.
//!
//! Nothing here binds sockets or talks to upstream; `serve` turns a [`Config`] into listeners,
//! sources and profiles. See `config/azbroker.example.toml` for every key.

pub mod access;
mod dialects;
mod kinds;
mod reader;
pub mod redact;
pub mod self_service;
pub mod trust;
pub(crate) mod workspaces;

pub use dialects::DialectConfig;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use azbroker_core::{EngineConfig, ProfileName, Resource, TenantId};
use azbroker_entra::{CloudName, SecretRef};
use url::Url;

use crate::paths;
pub use access::{GroupRef, Hardening, ProfileAccessConfig, UserRef};
use reader::{Problems, Section};
pub use workspaces::{Workspace, subscription_id as workspaces_subscription_id};

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` for built-in defaults.
    pub origin: Option<PathBuf>,
    pub server: ServerConfig,
    pub cloud: CloudConfig,
    pub refresh: EngineConfig,
    pub logins: BTreeMap<ProfileName, Login>,
    pub profiles: BTreeMap<ProfileName, Profile>,
    /// `[users.NAME] default_profile`: user name or uid (as written) → profile.
    pub user_defaults: BTreeMap<String, ProfileName>,
    /// Azure ML workspaces; each is also a profile of the same name.
    pub workspaces: BTreeMap<ProfileName, Workspace>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub runtime_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Explicit, or the only profile when there is exactly one.
    pub default_profile: Option<ProfileName>,
    /// A file holding the App Service identity header; generated in state_dir when absent.
    pub identity_header_file: Option<PathBuf>,
    /// Longest a client waits on an upstream call before a 503 with `Retry-After` (the call
    /// goes on); copied into the engine's config.
    pub client_wait: Duration,
    /// HTTPS listener, secrets, Arc and link-local settings.
    pub dialects: DialectConfig,
    pub hardening: Hardening,
    /// Shared machines: personal logins and profiles (`self_service`).
    pub self_service: self_service::SelfService,
}

#[derive(Debug, Clone)]
pub struct CloudConfig {
    pub name: CloudName,
    pub authority_host: Url,
    /// Azure Resource Manager (tenant discovery, tenant list).
    pub arm_endpoint: Url,
    pub ca_file: Option<PathBuf>,
}

/// A credential source (`[logins.NAME]`).
#[derive(Debug, Clone)]
pub struct Login {
    pub name: ProfileName,
    pub tenant: TenantId,
    pub kind: LoginKind,
    /// Changes whenever the login's settings change (config reload keeps caches otherwise).
    pub fingerprint: String,
}

#[derive(Debug, Clone)]
pub enum LoginKind {
    /// A person, signed in with `azbroker login` (public client id).
    User {
        client_id: String,
    },
    ServicePrincipal {
        client_id: String,
        secret: SecretRef,
    },
    /// A service principal proving itself with a certificate assertion (PEM cert + key file).
    Certificate {
        client_id: String,
        certificate_file: PathBuf,
        send_chain: bool,
    },
    /// A federated token from a file (re-read on every use) sent as the client assertion.
    WorkloadIdentity {
        client_id: String,
        token_file: PathBuf,
    },
    /// `az account get-access-token`.
    AzureCli {
        command: PathBuf,
        timeout: Duration,
    },
    /// The managed identity of the Azure host the broker runs on (`endpoint`: another IMDS base).
    ManagedIdentity {
        identity: azbroker_entra::managed_identity::Identity,
        endpoint: Option<Url>,
    },
}

impl LoginKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::User { .. } => "user",
            Self::ServicePrincipal { .. } | Self::Certificate { .. } => "service-principal",
            Self::WorkloadIdentity { .. } => "workload-identity",
            Self::AzureCli { .. } => "azure-cli",
            Self::ManagedIdentity { .. } => "managed-identity",
        }
    }
}

/// A profile (`[profiles.NAME]`): a login redeemed in one tenant, plus selection settings.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: ProfileName,
    pub login: ProfileName,
    pub tenant: TenantId,
    pub aliases: Vec<String>,
    pub accept_any_client_id: bool,
    pub prefetch: Vec<Resource>,
    pub listen: Vec<SocketAddr>,
    pub access: ProfileAccessConfig,
}

/// Every problem found in a config file. Exit status 64 (EX_USAGE-like "data error" family).
#[derive(Debug, thiserror::Error)]
#[error("{}", render(.origin, .problems))]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<String>,
}

fn render(origin: &str, problems: &[String]) -> String {
    let mut s = format!("invalid configuration in {origin} ({} problem(s)):", problems.len());
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(p);
    }
    s
}

impl Config {
    /// Loads `path`, or the default location; with no file there, built-in defaults.
    /// An explicitly named file must exist.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (paths::default_config_file(), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse_trusted(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(Self::builtin()),
            Err(e) => Err(ConfigError {
                origin: path.display().to_string(),
                problems: vec![format!("cannot read the file: {e}")],
            }),
        }
    }

    /// Parses the file at `path` and refuses it, listing every problem at once, if it or a file
    /// it names that holds a secret or a command may be changed by another user ([`trust`]).
    fn parse_trusted(text: &str, path: PathBuf) -> Result<Self, ConfigError> {
        let uid = paths::current_uid();
        let mut problems = trust::config_file(&path, uid);
        let origin = path.display().to_string();
        match Self::parse(text, Some(path)) {
            Ok(config) => {
                problems.extend(trust::referenced_files(&config, uid));
                if problems.is_empty() {
                    return Ok(config);
                }
            }
            Err(e) => problems.extend(e.problems),
        }
        Err(ConfigError { origin, problems })
    }

    /// Built-in defaults: the default listener and one `user` login and profile, `me`, against
    /// the `organizations` authority, so the first run needs no setup (`azbroker login`).
    pub fn builtin() -> Self {
        // A constant, valid file; the default user login needs no key of its own.
        let mut config = Self::parse(BUILTIN, None).expect("the built-in configuration is valid");
        config.origin = None;
        config
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str, origin: Option<PathBuf>) -> Result<Self, ConfigError> {
        let origin_name = origin.as_ref().map_or("built-in defaults".to_owned(), |p| p.display().to_string());
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
            origin: origin_name.clone(),
            problems: vec![redact::syntax_error(text, e.message(), e.span())],
        })?;
        let mut p = Problems::default();
        let root = Section::new("", &table);
        root.only(&["server", "cloud", "refresh", "logins", "profiles", "users", "workspaces"], &mut p);
        let mut server = server_section(root.table("server", &mut p), &mut p);
        let cloud = cloud_section(root.table("cloud", &mut p), &mut p);
        let mut refresh = refresh_section(root.table("refresh", &mut p), &mut p);
        refresh.client_wait = server.client_wait;
        let logins = logins_section(root.table("logins", &mut p), &mut p);
        let allow = server.hardening.allow_non_loopback;
        let mut profiles = profiles_section(root.table("profiles", &mut p), &logins, allow, &mut p);
        let workspaces =
            workspaces::section(root.table("workspaces", &mut p), &logins, &mut profiles, &mut p);
        check_aliases(&profiles, &mut p);
        let user_defaults = access::users_section(root.table("users", &mut p), &profiles, &mut p);

        match &server.default_profile {
            Some(d) if !profiles.contains_key(d) => {
                p.push("server.default_profile", format!("'{d}' is not a configured profile"));
            }
            None if profiles.len() == 1 => server.default_profile = profiles.keys().next().cloned(),
            _ => {}
        }
        if !p.0.is_empty() {
            return Err(ConfigError { origin: origin_name, problems: p.0 });
        }
        Ok(Self { origin, server, cloud, refresh, logins, profiles, user_defaults, workspaces })
    }
}

fn default_server() -> ServerConfig {
    ServerConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 50342))],
        runtime_dir: paths::default_runtime_dir(),
        state_dir: paths::default_state_dir(),
        default_profile: None,
        identity_header_file: None,
        client_wait: azbroker_core::DEFAULT_CLIENT_WAIT,
        dialects: DialectConfig::default(),
        hardening: Hardening::default(),
        self_service: self_service::SelfService::default(),
    }
}

/// The configuration used when there is no file at all.
const BUILTIN: &str = "[logins.me]\nkind = \"user\"\n\n[profiles.me]\nlogin = \"me\"\n";

fn default_cloud() -> CloudConfig {
    let name = CloudName::AzureCloud;
    CloudConfig { name, authority_host: cloud_authority(name), arm_endpoint: cloud_arm(name), ca_file: None }
}

fn cloud_authority(name: CloudName) -> Url {
    // The built-in authority hosts are constant, valid https URLs.
    Url::parse(name.authority_host()).expect("built-in authority host is a valid URL")
}

fn cloud_arm(name: CloudName) -> Url {
    // The built-in ARM endpoints are constant, valid https URLs.
    Url::parse(name.arm_endpoint()).expect("built-in ARM endpoint is a valid URL")
}

fn listen_addr(raw: &str, allow_non_loopback: bool) -> Result<SocketAddr, String> {
    let addr: SocketAddr = raw.parse().map_err(|_| "not an IP:port address".to_owned())?;
    if !allow_non_loopback && !addr.ip().is_loopback() {
        return Err(access::NON_LOOPBACK.into());
    }
    Ok(addr)
}

fn server_section(s: Option<Section<'_>>, p: &mut Problems) -> ServerConfig {
    let mut cfg = default_server();
    let Some(s) = s else { return cfg };
    let keys =
        ["listen", "runtime_dir", "state_dir", "default_profile", "identity_header_file", "client_wait"];
    s.only(&[&keys[..], dialects::KEYS, access::SERVER_KEYS, self_service::KEYS].concat(), p);
    cfg.hardening = access::hardening(&s, p);
    cfg.self_service = self_service::parse(&s, p);
    cfg.dialects = dialects::parse(&s, p, cfg.hardening.allow_non_loopback);
    if s.contains("listen") {
        let allow = cfg.hardening.allow_non_loopback;
        cfg.listen = s.parsed_list("listen", p, |raw| listen_addr(raw, allow));
        if cfg.listen.is_empty() && s.str_list("listen", &mut Problems::default()).is_empty() {
            p.push(&format!("{}.listen", s.path), "at least one address is required");
        }
    }
    if let Some(d) = s.str("runtime_dir", p) {
        cfg.runtime_dir = PathBuf::from(d);
    }
    if let Some(d) = s.str("state_dir", p) {
        cfg.state_dir = PathBuf::from(d);
    }
    cfg.default_profile = s.parsed("default_profile", p, ProfileName::parse);
    cfg.identity_header_file = s.str("identity_header_file", p).map(PathBuf::from);
    if let Some(d) = s.parsed("client_wait", p, client_wait) {
        cfg.client_wait = d;
    }
    cfg
}

/// `client_wait`: at least 1 s, and under the engine's own upstream limit (a longer wait would
/// never be reached).
fn client_wait(raw: &str) -> Result<Duration, String> {
    let d = duration(raw)?;
    if d < Duration::from_secs(1) || d > azbroker_core::FETCH_TIMEOUT {
        return Err(format!("must be between 1s and {}s", azbroker_core::FETCH_TIMEOUT.as_secs()));
    }
    Ok(d)
}

fn cloud_section(s: Option<Section<'_>>, p: &mut Problems) -> CloudConfig {
    let mut cfg = default_cloud();
    let Some(s) = s else { return cfg };
    s.only(&["name", "authority_host", "arm_endpoint", "ca_file"], p);
    if let Some(name) = s.parsed("name", p, |raw| raw.parse::<CloudName>()) {
        cfg.name = name;
        cfg.authority_host = cloud_authority(name);
        cfg.arm_endpoint = cloud_arm(name);
    }
    if let Some(u) = s.parsed("authority_host", p, azbroker_entra::parse_authority_host) {
        cfg.authority_host = u;
    }
    // Same rules as the authority: https, or http on loopback only (tokens are sent there).
    if let Some(u) = s.parsed("arm_endpoint", p, azbroker_entra::parse_authority_host) {
        cfg.arm_endpoint = u;
    }
    cfg.ca_file = s.str("ca_file", p).map(PathBuf::from);
    cfg
}

pub(crate) fn duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw).map_err(|e| format!("not a duration like \"15m\" or \"90s\" ({e})"))
}

fn refresh_section(s: Option<Section<'_>>, p: &mut Problems) -> EngineConfig {
    let mut cfg = EngineConfig::default();
    let Some(s) = s else { return cfg };
    s.only(&["margin", "idle_ttl"], p);
    if let Some(d) = s.parsed("margin", p, duration) {
        cfg.margin = d;
    }
    if let Some(d) = s.parsed("idle_ttl", p, duration) {
        cfg.idle_ttl = d;
    }
    cfg
}

fn fingerprint(section: &Section<'_>, extra: &str) -> String {
    let text = format!("{}\n{extra}", toml::to_string(section.raw()).unwrap_or_default());
    azbroker_core::secret::sha256_hex(text.as_bytes())
}

/// Why a config may not name a login or profile `_u<uid>...`.
pub(crate) const RESERVED: &str =
    "names of the form _u<uid> are reserved for the personal logins and profiles of self-service users";

fn logins_section(s: Option<Section<'_>>, p: &mut Problems) -> BTreeMap<ProfileName, Login> {
    let mut out = BTreeMap::new();
    let Some(s) = s else { return out };
    for (name, l) in s.entries(p) {
        let Ok(login_name) = ProfileName::parse(&name) else {
            p.push(&l.path, "login names may contain only letters, digits, '-', '_' and '.'");
            continue;
        };
        if azbroker_core::personal::is_reserved(&name) {
            p.push(&l.path, RESERVED);
            continue;
        }
        let kind_name = l.required_str("kind", p);
        let tenant = l.parsed("tenant", p, TenantId::parse);
        let kind = kind_name.and_then(|k| kinds::parse(k, &l, p));
        let tenant = match (tenant, kind_name) {
            (Some(t), _) => Some(t),
            (None, Some(k)) if kinds::requires_tenant(k) => {
                if !l.contains("tenant") {
                    p.push(&format!("{}.tenant", l.path), "required key is missing");
                }
                None
            }
            // User logins sign in at `organizations` unless told otherwise.
            (None, _) if !l.contains("tenant") => TenantId::parse("organizations").ok(),
            (None, _) => None,
        };
        if let (Some(kind), Some(tenant)) = (kind, tenant) {
            let fingerprint = fingerprint(&l, "");
            out.insert(login_name.clone(), Login { name: login_name, tenant, kind, fingerprint });
        }
    }
    out
}

fn profiles_section(
    s: Option<Section<'_>>,
    logins: &BTreeMap<ProfileName, Login>,
    allow_non_loopback: bool,
    p: &mut Problems,
) -> BTreeMap<ProfileName, Profile> {
    let mut out = BTreeMap::new();
    let Some(s) = s else { return out };
    for (name, ps) in s.entries(p) {
        let keys = ["login", "tenant", "aliases", "accept_any_client_id", "prefetch", "listen"];
        ps.only(&[&keys[..], access::PROFILE_KEYS].concat(), p);
        let access = access::profile_access(&ps, p);
        let Ok(profile_name) = ProfileName::parse(&name) else {
            p.push(&ps.path, "profile names may contain only letters, digits, '-', '_' and '.'");
            continue;
        };
        if azbroker_core::personal::is_reserved(&name) {
            p.push(&ps.path, RESERVED);
            continue;
        }
        let login_name = ps.required_str("login", p);
        let login = login_name.and_then(|l| {
            let found = ProfileName::parse(l).ok().and_then(|n| logins.get(&n));
            if found.is_none() {
                p.push(&format!("{}.login", ps.path), format!("'{l}' is not a configured login"));
            }
            found
        });
        let tenant = ps.parsed("tenant", p, TenantId::parse);
        let aliases: Vec<String> = ps.str_list("aliases", p).into_iter().map(str::to_owned).collect();
        let accept_any_client_id = ps.bool("accept_any_client_id", p).unwrap_or(false);
        let prefetch = ps.parsed_list("prefetch", p, Resource::parse);
        let listen = ps.parsed_list("listen", p, |raw| listen_addr(raw, allow_non_loopback));
        if let Some(login) = login {
            let tenant = tenant.unwrap_or_else(|| login.tenant.clone());
            out.insert(
                profile_name.clone(),
                Profile {
                    name: profile_name,
                    login: login.name.clone(),
                    tenant,
                    aliases,
                    accept_any_client_id,
                    prefetch,
                    listen,
                    access,
                },
            );
        }
    }
    out
}

/// Aliases select profiles, so one alias may name only one profile (compared case-insensitively).
fn check_aliases(profiles: &BTreeMap<ProfileName, Profile>, p: &mut Problems) {
    let mut seen: BTreeMap<String, &ProfileName> = BTreeMap::new();
    for profile in profiles.values() {
        for alias in &profile.aliases {
            match seen.insert(alias.to_ascii_lowercase(), &profile.name) {
                Some(other) if other != &profile.name => p.push(
                    &format!("profiles.{}.aliases", profile.name),
                    format!("'{alias}' is also an alias of profile '{other}'"),
                ),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fuzz;
