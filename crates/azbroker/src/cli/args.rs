//! The command line: every subcommand and flag, declared with clap. No behaviour here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "azbroker", version, about = "A local credential broker for Microsoft Entra ID", long_about = None)]
pub struct Cli {
    /// Config file (default: $XDG_CONFIG_HOME/azbroker/config.toml, or /etc/azbroker/config.toml as root).
    #[arg(long, global = true, env = "AZBROKER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `azbroker_core=debug` (RUST_LOG also works).
    #[arg(long, global = true, default_value = "info", value_name = "FILTER")]
    pub log_level: String,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Never start the daemon in the background when none answers (also AZBROKER_NO_AUTOSTART=1).
    #[arg(long, global = true, env = "AZBROKER_NO_AUTOSTART", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_autostart: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Serve(ServeArgs),
    /// Print the environment variables a client needs to reach the daemon.
    Env(EnvArgs),
    /// Run a command with those environment variables set.
    Run(RunArgs),
    /// Print a token for a resource (asks the running daemon).
    Token(TokenArgs),
    /// Validate the config file and print a summary.
    CheckConfig,
    /// Show the running daemon's profiles, cached tokens and counters (asks the admin socket).
    Status(StatusArgs),
    /// Stop the running daemon (gracefully, over its admin socket).
    Stop,
    /// Make the running daemon re-read its config file (like SIGHUP, but reports the outcome).
    Reload,
    /// Give the running daemon new runtime secrets (identity header, ...); the old values keep
    /// working for `server.rotate_grace`, then clients need the new `azbroker env`.
    RotateSecrets,
    /// Sign a user login in (the daemon runs the flow and keeps the refresh token).
    Login(LoginArgs),
    /// Forget a user login's refresh token and its cached tokens.
    Logout(LogoutArgs),
    /// List the tenants a user login can reach.
    Tenants(TenantsArgs),
    /// Azure ML workspaces: add (discovering the tenant), list, print config.json.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Make the running daemon fetch fresh tokens now (e.g. after a role assignment changed).
    Refresh(RefreshArgs),
    /// Check the setup (config, directories, listeners, clock, your shell's variables) and say what to fix.
    Doctor(DoctorArgs),
    /// Client keys for containers: create (prints the client environment once), list, revoke.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print a shell completion script (e.g. `azbroker completions bash > /etc/bash_completion.d/azbroker`).
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `azbroker man | man -l -`.
    Man,
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Only this profile's cached tokens.
    #[arg(long)]
    pub profile: Option<String>,
    /// Only tokens for this resource (with --profile: fetched even if not cached yet).
    #[arg(long)]
    pub resource: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user login (default: the only `kind = "user"` login).
    #[arg(long)]
    pub login: Option<String>,
    /// Sign in at this tenant (when a tenant demands its own MFA or conditional-access sign-in).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Sign in with a code typed at a web page, from any device (the default).
    #[arg(long, conflicts_with = "browser")]
    pub device_code: bool,
    /// Sign in with a browser on this machine (authorization code + PKCE, loopback redirect).
    #[arg(long)]
    pub browser: bool,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[arg(long)]
    pub login: Option<String>,
    /// Administrators of a shared machine: sign this local user (name or uid) out of their
    /// personal login.
    #[arg(long, conflicts_with = "login")]
    pub user: Option<String>,
}

#[derive(Debug, Args)]
pub struct TenantsArgs {
    #[arg(long)]
    pub login: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Add a workspace to the config file (tenant discovered from the subscription) and reload.
    Add(WorkspaceAddArgs),
    /// List the configured workspaces.
    List,
    /// Print the config.json that azureml's Workspace.from_config() reads.
    Config {
        /// The workspace name.
        name: String,
    },
    /// Remove one of your personal workspaces (shared machines; configured workspaces are
    /// removed from the config file).
    Remove {
        /// The workspace name.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct WorkspaceAddArgs {
    /// Name of the workspace entry (also usable as a profile name).
    #[arg(long)]
    pub name: String,
    /// The login that gets its tokens (default: the only user login).
    #[arg(long)]
    pub login: Option<String>,
    /// Subscription id (GUID).
    #[arg(long)]
    pub subscription: String,
    #[arg(long)]
    pub resource_group: String,
    /// The Azure ML workspace name.
    #[arg(long)]
    pub workspace: String,
    /// The tenant, when known (skips discovery).
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the daemon's answer as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Embed a local fake Entra ID authority: tokens are signed by a key generated at start and
    /// are NOT valid in Azure. For demos, offline development and CI.
    #[arg(long)]
    pub local_authority: bool,

    /// Reload the config whenever its file changes (watches the file's directory).
    #[arg(long)]
    pub watch_config: bool,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    /// IDENTITY_ENDPOINT + IDENTITY_HEADER (every Azure SDK, az login --identity).
    AppService,
    /// MSI_ENDPOINT + MSI_SECRET + DEFAULT_IDENTITY_CLIENT_ID (Azure ML compute instance; also azureml-core).
    AzureMl,
    /// MSI_ENDPOINT alone (Cloud Shell: azure-identity, JS, .NET, Go, azureml-core).
    CloudShell,
    /// AZURE_POD_IDENTITY_AUTHORITY_HOST (Python, JS and .NET only).
    Imds,
    /// IDENTITY_ENDPOINT + IMDS_ENDPOINT (Azure Arc; key files in /var/opt/azcmagent/tokens).
    Arc,
    /// IDENTITY_ENDPOINT (https) + IDENTITY_HEADER + IDENTITY_SERVER_THUMBPRINT (+ NODE_EXTRA_CA_CERTS, JAVA_TOOL_OPTIONS).
    ServiceFabric,
    /// AZD_AUTH_ENDPOINT + AZD_AUTH_KEY (the native, tenant-aware API).
    Azd,
    /// The App Service pair plus the Azure ML trio: every SDK and azureml-core together.
    All,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Mint a key bound to one profile (and resources) and print the client environment with it.
    Create(KeyCreateArgs),
    /// List the keys: name, profile, resources, expiry, last use, grants (never the key).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key; it stops working at once.
    Revoke { name: String },
}

#[derive(Debug, Args)]
pub struct KeyCreateArgs {
    /// A name for the key (shown by `key list` and in audit lines).
    pub name: String,
    /// The profile the key gets tokens of (and no other).
    #[arg(long)]
    pub profile: String,
    /// A resource the key may get tokens for (repeatable; default: the profile's allowed_resources, else any).
    #[arg(long)]
    pub resource: Vec<String>,
    /// Lifetime, e.g. 12h (the default), 30m, 7d; 0 = until revoked.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = KeyFormat::Sh)]
    pub format: KeyFormat,
    /// The daemon's address as containers reach it (default: the first container_listen address).
    #[arg(long, value_name = "HOST:PORT")]
    pub host: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyFormat {
    /// `export IDENTITY_ENDPOINT=... IDENTITY_HEADER=...` lines.
    Sh,
    /// `docker run` flags.
    Docker,
    /// A compose service's `extra_hosts` and `environment`.
    Compose,
    /// A devcontainer.json fragment (`containerEnv`, `runArgs`).
    Devcontainer,
    /// The variables as a JSON object.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvFormat {
    Sh,
    Fish,
    Powershell,
    Dotenv,
    Json,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Profile to select (default: the daemon's default profile).
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long, value_enum, default_value_t = Dialect::AppService)]
    pub dialect: Dialect,
    #[arg(long, value_enum, default_value_t = EnvFormat::Sh)]
    pub format: EnvFormat,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long, value_enum, default_value_t = Dialect::AppService)]
    pub dialect: Dialect,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(long)]
    pub profile: Option<String>,
    /// The resource (App ID URI), e.g. https://management.azure.com/
    #[arg(long)]
    pub resource: String,
}
