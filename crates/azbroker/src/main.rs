//! `azbroker`: parses the command line, loads the config, starts logging and runs one subcommand.
//! Wiring only — protocol, cache and upstream logic live in the library crates.

mod cli;
mod config;
mod daemon;
mod paths;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};
use cli::{
    admin_commands, autostart, commands, completions, doctor, key, login_commands, refresh,
    workspace_commands,
};
use config::{Config, ConfigError};
use daemon::{activation, scrub, serve, telemetry};

/// mimalloc in place of the C library's allocator: a cache hit allocates a few dozen small
/// blocks (hyper's head, header maps, the body), and glibc's malloc/free was ~13 % of its
/// instructions (BENCHMARKS.md, "Hot path").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for an invalid configuration (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = telemetry::init(&cli.log_level, cli.log_format);
    let result = run(cli);
    drop(log); // flush every log line before the final message
    match result {
        Ok(code) => code,
        Err(err) => {
            if let Some(cfg) = err.downcast_ref::<ConfigError>() {
                eprintln!("azbroker: {cfg}");
                return ExitCode::from(EXIT_CONFIG);
            }
            eprintln!("azbroker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a short client command on a single-threaded runtime: the only runtime a client command
/// gets, so nothing below it may build another (it would panic); code that needs async awaits.
fn block_on(fut: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(fut)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // These work without (or diagnose) a config file.
    match &cli.command {
        Command::Doctor(args) => return block_on(doctor::run(cli.config.as_deref(), args)),
        Command::Completions(args) => return completions::completions(args.shell),
        Command::Man => return completions::man(),
        _ => {}
    }
    let config = Config::load(cli.config.as_deref())?;
    // The commands a newcomer types first start the daemon when none answers (`cli::autostart`).
    let autostart = !cli.no_autostart;
    match cli.command {
        Command::Serve(args) => {
            autostart::detach_if_autostarted();
            scrub::reexec_if_needed(&config)?;
            // Before any thread exists: it clears LISTEN_FDS for child processes.
            let activated = activation::Activated::from_env()?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(serve::run(config, args, activated))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Env(args) => block_on(async {
            autostart::ensure(&config, autostart).await?;
            commands::env(&config, &args).await
        }),
        Command::Run(args) => block_on(async {
            autostart::ensure(&config, autostart).await?;
            commands::run(&config, &args).await
        }),
        Command::Token(args) => block_on(async {
            autostart::ensure(&config, autostart).await?;
            commands::token(&config, &args).await
        }),
        Command::CheckConfig => commands::check_config(&config),
        Command::Status(args) => block_on(async {
            autostart::ensure(&config, autostart).await?;
            admin_commands::status(&config, &args).await
        }),
        Command::Stop => block_on(admin_commands::stop(&config)),
        Command::Reload => block_on(admin_commands::reload(&config)),
        Command::RotateSecrets => block_on(admin_commands::rotate_secrets(&config)),
        Command::Login(args) => block_on(async {
            autostart::ensure(&config, autostart).await?;
            login_commands::login(&config, &args).await
        }),
        Command::Logout(args) => block_on(login_commands::logout(&config, &args)),
        Command::Tenants(args) => block_on(login_commands::tenants(&config, &args)),
        Command::Workspace(cmd) => block_on(workspace_commands::run(&config, &cmd)),
        Command::Refresh(args) => block_on(refresh::run(&config, &args)),
        Command::Key(cmd) => block_on(key::run(&config, &cmd)),
        Command::Doctor(_) | Command::Completions(_) | Command::Man => unreachable!("handled above"),
    }
}
