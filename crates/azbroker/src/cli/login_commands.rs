//! `azbroker login`, `logout` and `tenants`: the CLI side of user sign-in. The daemon runs every
//! flow and keeps the refresh token; the CLI starts the flow over the admin socket, shows Entra's
//! instruction (and opens the browser for `--browser`), counts down while it waits, and on Ctrl-C
//! cancels the flow in the daemon before exiting.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use azbroker_core::admin_api::{
    FlowStart, FlowState, FlowStatus, LoginMethod, LoginRequest, LogoutAnswer, TenantsAnswer,
};

use crate::cli::admin_client::AdminClient;
use crate::cli::args::{LoginArgs, LogoutArgs, TenantsArgs};
use crate::config::{Config, LoginKind};

/// Exit status after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;
/// How long one status call waits for a change (the countdown ticks in between).
const TICK: Duration = Duration::from_secs(1);
/// Without a terminal, how often a progress line is printed.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The user login named, or the only one configured.
pub fn user_login(config: &Config, given: Option<&str>) -> Result<String> {
    let users: Vec<&str> = config
        .logins
        .values()
        .filter(|l| matches!(l.kind, LoginKind::User { .. }))
        .map(|l| l.name.as_str())
        .collect();
    match given {
        Some(name) if users.contains(&name) => Ok(name.to_owned()),
        Some(name) if config.logins.keys().any(|k| k.as_str() == name) => {
            bail!(
                "login '{name}' is not a user login (kind = \"user\"); only user logins sign in interactively"
            )
        }
        Some(name) => bail!("login '{name}' is not configured (user logins: {})", list(&users)),
        None => match users.as_slice() {
            [only] => Ok((*only).to_owned()),
            [] => bail!("no user login is configured; add one: [logins.me] kind = \"user\""),
            _ => bail!("several user logins are configured; pick one with --login ({})", list(&users)),
        },
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

pub async fn login(config: &Config, args: &LoginArgs) -> Result<ExitCode> {
    let client = AdminClient::new(config);
    // On a shared machine a user signs in as themselves, to their personal login.
    let personal = client.is_self_service() && args.login.is_none();
    let (name, flows) = if personal {
        (personal_name(), "/v1/self/login".to_owned())
    } else {
        let name = user_login(config, args.login.as_deref())?;
        let flows = format!("/v1/logins/{name}/flows");
        (name, flows)
    };
    let method = if args.browser { LoginMethod::Browser } else { LoginMethod::DeviceCode };
    let request = LoginRequest { tenant: args.tenant.clone(), method };
    let start: FlowStart = match client.post(&flows, &request).await? {
        Ok(start) => start,
        Err(refused) => bail!("the daemon could not start the sign-in: {refused}"),
    };
    match start.method {
        LoginMethod::DeviceCode => {
            println!("{}", start.message.as_deref().unwrap_or("Follow the instructions to sign in."));
        }
        LoginMethod::Browser => {
            let url = start.authorize_url.as_deref().unwrap_or_default();
            if open_browser(url) {
                println!(
                    "Opened a browser to sign in (tenant {}). If nothing appears, open:\n  {url}",
                    start.tenant
                );
            } else {
                println!(
                    "Open this page in a browser on this machine to sign in (tenant {}):\n  {url}",
                    start.tenant
                );
            }
        }
    }
    let _ = std::io::stdout().flush();
    let path = format!("{flows}/{}", start.flow_id);
    let status = tokio::select! {
        s = watch(&client, &path, start.expires_in_secs) => s?,
        _ = tokio::signal::ctrl_c() => {
            clear_line();
            let _ = client.delete::<FlowStatus>(&path).await;
            eprintln!("Sign-in cancelled.");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    clear_line();
    match status.state {
        FlowState::SignedIn => {
            let who = status.account.as_deref().unwrap_or("unknown user");
            println!("Signed in as {who} (login '{name}', tenant {}).", start.tenant);
            Ok(ExitCode::SUCCESS)
        }
        state => {
            let why = status.error.as_deref().unwrap_or("no reason given");
            eprintln!(
                "Sign-in {}: {why}",
                match state {
                    FlowState::Expired => "expired",
                    FlowState::Cancelled => "was cancelled",
                    _ => "failed",
                }
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Polls the flow until it ends, showing the time left.
async fn watch(client: &AdminClient, path: &str, expires_in: u64) -> Result<FlowStatus> {
    let tty = std::io::stderr().is_terminal();
    let deadline = Instant::now() + Duration::from_secs(expires_in);
    let mut last_plain: Option<Instant> = None;
    loop {
        let status: FlowStatus = match client.get(&format!("{path}?wait={}", TICK.as_secs())).await? {
            Ok(status) => status,
            Err(refused) => bail!("the daemon lost the sign-in: {refused}"),
        };
        if status.state.is_final() {
            return Ok(status);
        }
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let text = format!(
            "Waiting for the sign-in to complete... {:02}:{:02} left (Ctrl-C cancels)",
            left / 60,
            left % 60
        );
        if tty {
            eprint!("\r{text}");
            let _ = std::io::stderr().flush();
        } else if last_plain.is_none_or(|t| t.elapsed() >= PLAIN_PROGRESS_EVERY) {
            eprintln!("{text}");
            last_plain = Some(Instant::now());
        }
    }
}

fn clear_line() {
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
}

/// Opens `url` with `$BROWSER` (the first entry of a ':'-separated list; `%s` is replaced by the
/// URL, else it is appended), or `xdg-open` when a display is there. False if nothing was tried.
fn open_browser(url: &str) -> bool {
    let from_env = std::env::var("BROWSER")
        .ok()
        .and_then(|b| b.split(':').find(|s| !s.trim().is_empty()).map(str::to_owned));
    let (program, args): (String, Vec<String>) = match from_env {
        Some(cmd) => {
            let mut words = cmd.split_whitespace().map(str::to_owned);
            let Some(program) = words.next() else { return false };
            let mut args: Vec<String> = words.map(|w| w.replace("%s", url)).collect();
            if !cmd.contains("%s") {
                args.push(url.to_owned());
            }
            (program, args)
        }
        None if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some() => {
            ("xdg-open".to_owned(), vec![url.to_owned()])
        }
        None => return false,
    };
    std::process::Command::new(&program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// How the CLI names a personal login: the user's own name.
fn personal_name() -> String {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "your personal login".to_owned())
}

pub async fn logout(config: &Config, args: &LogoutArgs) -> Result<ExitCode> {
    let client = AdminClient::new(config);
    let (name, path) = match &args.user {
        Some(user) => (format!("personal login of {user}"), format!("/v1/users/{user}/logout")),
        None if client.is_self_service() && args.login.is_none() => {
            (personal_name(), "/v1/self/logout".to_owned())
        }
        None => {
            let name = user_login(config, args.login.as_deref())?;
            let path = format!("/v1/logins/{name}/logout");
            (name, path)
        }
    };
    let answer: LogoutAnswer = match client.post_empty(&path).await? {
        Ok(answer) => answer,
        Err(refused) => bail!("the daemon could not sign out: {refused}"),
    };
    let LogoutAnswer::SignedOut { had_state } = answer;
    if had_state {
        println!("Signed out of login '{name}'; its refresh token and cached tokens are gone.");
    } else {
        println!("Login '{name}' was not signed in.");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tenants(config: &Config, args: &TenantsArgs) -> Result<ExitCode> {
    let client = AdminClient::new(config);
    let path = if client.is_self_service() && args.login.is_none() {
        "/v1/self/tenants".to_owned()
    } else {
        format!("/v1/logins/{}/tenants", user_login(config, args.login.as_deref())?)
    };
    let answer: TenantsAnswer = match client.get(&path).await? {
        Ok(answer) => answer,
        Err(refused) => bail!("{refused}"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer.tenants)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<38} {:<32} {:<12} NAME", "TENANT ID", "DEFAULT DOMAIN", "CATEGORY");
    for t in &answer.tenants {
        let s = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
        println!(
            "{:<38} {:<32} {:<12} {}",
            t.tenant_id,
            s(&t.default_domain),
            s(&t.category),
            s(&t.display_name)
        );
    }
    Ok(ExitCode::SUCCESS)
}
