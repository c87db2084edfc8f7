//! The short-lived subcommands: `env`, `run`, `token`, `check-config`.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::cli::args::{EnvArgs, RunArgs, TokenArgs};
use crate::cli::client_env;
use crate::config::Config;

pub async fn env(config: &Config, args: &EnvArgs) -> Result<ExitCode> {
    let vars = client_env::variables(config, args.profile.as_deref(), args.dialect).await?;
    print!("{}", client_env::render(&vars, args.format));
    Ok(ExitCode::SUCCESS)
}

pub async fn run(config: &Config, args: &RunArgs) -> Result<ExitCode> {
    let vars = client_env::variables(config, args.profile.as_deref(), args.dialect).await?;
    let (program, rest) = args.command.split_first().context("no command given")?;
    // exec replaces this process, so signals and the exit status are the command's own.
    let err = std::process::Command::new(program).args(rest).envs(vars).exec();
    bail!("cannot run {program}: {err}")
}

pub async fn token(config: &Config, args: &TokenArgs) -> Result<ExitCode> {
    let base = match crate::cli::personal_commands::personal_base_url(config, args.profile.as_deref()) {
        Some(base) => base,
        None => client_env::base_url(config, args.profile.as_deref()).await?,
    };
    let header = client_env::identity_header(config).await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .context("cannot build an HTTP client")?;
    let response = http
        .get(format!("{base}/msi/token"))
        .query(&[("api-version", "2019-08-01"), ("resource", args.resource.as_str())])
        .header("X-IDENTITY-HEADER", header.expose())
        .send()
        .await
        .with_context(|| format!("cannot reach the daemon at {base} (is `azbroker serve` running?)"))?;
    let status = response.status();
    if !status.is_success() {
        let refusal: AppServiceRefusal =
            response.json().await.context("the daemon sent a non-JSON answer")?;
        bail!("the daemon refused ({status}): {}", refusal.message.as_deref().unwrap_or("no message"));
    }
    let answer: AppServiceToken = response.json().await.context("the daemon sent an unexpected answer")?;
    let out = TokenOutput {
        access_token: &answer.access_token,
        expires_on: answer.expires_on.parse().unwrap_or(0),
        resource: &answer.resource,
        token_type: &answer.token_type,
        profile: args
            .profile
            .clone()
            .or_else(|| config.server.default_profile.as_ref().map(|p| p.to_string())),
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// The App Service dialect's token answer, as far as `token` shows it.
#[derive(Deserialize)]
struct AppServiceToken {
    /// Printed, never logged; no `Debug` on this type.
    access_token: String,
    /// Unix seconds, as a string of digits.
    expires_on: String,
    resource: String,
    token_type: String,
}

/// The App Service dialect's error answer.
#[derive(Deserialize)]
struct AppServiceRefusal {
    #[serde(default)]
    message: Option<String>,
}

/// What `azbroker token` prints (the shape of `az account get-access-token`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenOutput<'a> {
    access_token: &'a str,
    #[serde(rename = "expires_on")]
    expires_on: u64,
    resource: &'a str,
    token_type: &'a str,
    profile: Option<String>,
}

pub fn check_config(config: &Config) -> Result<ExitCode> {
    match &config.origin {
        Some(p) => println!("config: {} (valid)", p.display()),
        None => println!("config: none found; built-in defaults"),
    }
    let listen: Vec<_> = config.server.listen.iter().map(ToString::to_string).collect();
    println!("listen: {}", listen.join(", "));
    let d = &config.server.dialects;
    let tls: Vec<_> = d.tls_listen.iter().map(ToString::to_string).collect();
    println!("https (Service Fabric): {}", if tls.is_empty() { "off".to_owned() } else { tls.join(", ") });
    match &d.arc_group {
        Some((name, gid)) => println!("arc key files: readable by group {name} ({gid})"),
        None => println!("arc key files: readable by the daemon's user only"),
    }
    println!("imds on 169.254.169.254: {}", if d.imds_link_local { "on" } else { "off" });
    println!("authority: {}", config.cloud.authority_host);
    for l in config.logins.values() {
        println!("login {}: {} in {}", l.name, l.kind.as_str(), l.tenant);
    }
    let resolved = crate::daemon::access::resolve(config).map_err(|problems| crate::config::ConfigError {
        origin: config.origin.as_ref().map_or("built-in defaults".into(), |p| p.display().to_string()),
        problems,
    })?;
    for p in config.profiles.values() {
        let default = if config.server.default_profile.as_ref() == Some(&p.name) { " (default)" } else { "" };
        println!("profile {}{default}: login {} in tenant {}", p.name, p.login, p.tenant);
        if let Some(access) = resolved.policy.profile(p.name.as_str()) {
            println!("  {}", crate::daemon::access::describe(access));
        }
    }
    for warning in &resolved.warnings {
        println!("warning: {warning}");
    }
    Ok(ExitCode::SUCCESS)
}
