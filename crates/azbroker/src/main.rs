//! `azbroker`: parses the command line, loads the config, starts logging and runs one subcommand.
//! Wiring only — protocol, cache and upstream logic live in the library crates.

mod cli;
mod client_env;
mod commands;
mod config;
mod paths;
mod serve;
mod sources;
mod state;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use config::{Config, ConfigError};

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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(serve::run(config, args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Env(args) => commands::env(&config, &args),
        Command::Run(args) => commands::run(&config, &args),
        Command::Token(args) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(commands::token(&config, &args))
        }
        Command::CheckConfig => commands::check_config(&config),
    }
}
