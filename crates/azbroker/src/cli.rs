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
    /// Make the running daemon re-read its config file (like SIGHUP, but reports the outcome).
    Reload,
    /// Make the running daemon fetch fresh tokens now (e.g. after a role assignment changed).
    Refresh(RefreshArgs),
    /// Check the setup (config, directories, listeners, clock, your shell's variables) and say what to fix.
    Doctor(DoctorArgs),
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
    /// AZURE_POD_IDENTITY_AUTHORITY_HOST (Python, JS and .NET only).
    Imds,
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
