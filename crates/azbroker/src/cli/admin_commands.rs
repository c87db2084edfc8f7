//! The subcommands that ask the running daemon over its admin socket: `status`, `reload`,
//! `rotate-secrets`.
//! Presentation only; the daemon decides everything.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Result, bail};
use azbroker_core::admin_api::{
    Exports, LoginHealth, LoginState, ReloadAnswer, RotateOutcome, SocketInfo, SocketOrigin, Status,
    StopAnswer,
};

use crate::cli::admin_client::AdminClient;
use crate::cli::args::StatusArgs;
use crate::config::Config;

/// Exit status when the daemon rejected a config reload (same family as a bad config at start).
const EXIT_REJECTED: u8 = 64;

pub async fn status(config: &Config, args: &StatusArgs) -> Result<ExitCode> {
    let status: Status = match AdminClient::new(config).get("/v1/status").await? {
        Ok(s) => s,
        Err(refused) => bail!("the daemon answered {}: {refused}", refused.status),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render_status(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `azbroker stop` waits for the daemon to be gone: its drain time and a margin.
const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// `azbroker stop`: asks the daemon to stop (it drains in-flight requests, as on SIGTERM) and
/// waits until its admin socket no longer answers. No daemon running is not an error.
pub async fn stop(config: &Config) -> Result<ExitCode> {
    let admin = AdminClient::new(config);
    if let Err(e) = admin.health().await {
        println!("no daemon is running ({e:#})");
        return Ok(ExitCode::SUCCESS);
    }
    let answer: StopAnswer = match admin.post_empty("/v1/stop").await? {
        Ok(answer) => answer,
        Err(refused) => bail!("the daemon did not stop: {refused}"),
    };
    // Gone means: the admin socket no longer answers and the process has exited.
    let deadline = std::time::Instant::now() + STOP_WITHIN;
    while admin.health().await.is_ok() || is_running(answer.pid) {
        if std::time::Instant::now() >= deadline {
            bail!("the daemon (pid {}) still runs {STOP_WITHIN:?} after it was asked to stop", answer.pid);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    println!("stopped the daemon (pid {})", answer.pid);
    Ok(ExitCode::SUCCESS)
}

/// Whether process `pid` still runs (an exited one waiting to be reaped does not).
fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may itself hold any byte.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

pub async fn reload(config: &Config) -> Result<ExitCode> {
    match AdminClient::new(config).reload().await? {
        ReloadAnswer::Reloaded(outcome) => {
            println!("config reloaded: {} profile(s)", outcome.profiles);
            for w in outcome.warnings {
                println!("  note: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ReloadAnswer::Rejected(rejected) => {
            eprintln!("config reload rejected; the daemon keeps its running config:");
            for p in rejected.problems {
                eprintln!("  - {p}");
            }
            Ok(ExitCode::from(EXIT_REJECTED))
        }
    }
}

pub async fn rotate_secrets(config: &Config) -> Result<ExitCode> {
    let outcome: RotateOutcome = match AdminClient::new(config).post_empty("/v1/rotate-secrets").await? {
        Ok(o) => o,
        Err(refused) => bail!("the daemon did not rotate its secrets: {refused}"),
    };
    let names = |v: &[String]| if v.is_empty() { "none".into() } else { v.join(", ") };
    println!("rotated: {}", names(&outcome.rotated));
    if !outcome.unchanged.is_empty() {
        println!("unchanged (configured files that did not change): {}", names(&outcome.unchanged));
    }
    println!(
        "the previous values keep working for {}; give clients the new values with `azbroker env`",
        secs(outcome.grace_secs)
    );
    Ok(ExitCode::SUCCESS)
}

/// Where the daemon listens (and who made each socket) and what clients export.
fn render_sockets_and_exports(out: &mut String, sockets: &[SocketInfo], exports: Option<&Exports>) {
    for sock in sockets {
        let profile = sock.profile.as_ref().map(|p| format!(" (profile {p})")).unwrap_or_default();
        let origin = match sock.origin {
            SocketOrigin::Auto => "opened for the profile (`azbroker env --profile` prints it)",
            other => other.as_str(),
        };
        let from = if sock.origin == SocketOrigin::Auto { "" } else { "from " };
        let _ = writeln!(out, "  {:<6} {}{profile}, {from}{origin}", sock.kind.as_str(), sock.address);
    }
    if let Some(ex) = exports {
        let _ = writeln!(out, "exports:   {}", ex.command);
        let _ = writeln!(
            out,
            "  IDENTITY_ENDPOINT={}  IDENTITY_HEADER=(see `azbroker env`)",
            ex.app_service.identity_endpoint
        );
        let _ = writeln!(out, "  AZURE_POD_IDENTITY_AUTHORITY_HOST={}", ex.imds.authority_host);
    }
}

/// A login's last upstream error, and whether someone must act.
fn render_login_health(out: &mut String, l: &LoginHealth) {
    if let Some(e) = &l.last_upstream_error {
        let ago = azbroker_core::unix_now().saturating_sub(e.at_unix);
        let _ = writeln!(
            out,
            "  {:<16} {}last upstream error {} ago: {}",
            "",
            if l.needs_attention { "NEEDS ATTENTION - " } else { "" },
            secs(ago),
            e.message
        );
    }
}

fn secs(s: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
}

fn opt_secs(s: Option<u64>) -> String {
    s.map_or_else(|| "-".into(), secs)
}

/// Each login with its state: who is signed in, what needs a sign-in (and the command), the last
/// error.
fn render_logins(out: &mut String, logins: &[LoginHealth]) {
    let _ = writeln!(out, "logins:");
    for health in logins {
        let l = &health.login;
        let state = match (l.state, &l.account) {
            (LoginState::SignedIn, Some(who)) => format!("signed in as {who}"),
            (LoginState::NeedsSignIn, _) => {
                format!("NEEDS SIGN-IN: {}", l.reason.as_deref().unwrap_or("-"))
            }
            (LoginState::NotSignedIn, _) => "not signed in".to_owned(),
            (other, _) => other.as_str().to_owned(),
        };
        let _ = writeln!(out, "  {:<16} {:<18} {:<24} {state}", l.name, l.kind, l.tenant);
        if let Some(cmd) = &l.command {
            let _ = writeln!(out, "  {:<16} run `{cmd}`", "");
        }
        for t in &l.tenants_needing_sign_in {
            let _ = writeln!(
                out,
                "  {:<16} tenant {} NEEDS SIGN-IN: {}; run `{}`",
                "", t.tenant, t.reason, t.command
            );
        }
        if let Some(e) = &l.last_error {
            let _ = writeln!(out, "  {:<16} last error: {e}", "");
        }
        render_login_health(out, health);
    }
}

/// The human view of `GET /v1/status`.
fn render_status(s: &Status) -> String {
    let mut out = String::new();
    let ready = if s.ready { "ready" } else { "starting" };
    let _ = writeln!(
        out,
        "azbroker {} (pid {}), {ready}, up {}",
        s.info.version,
        s.info.pid,
        secs(s.uptime_secs)
    );
    if let Some(cfg) = &s.daemon.config {
        let _ = writeln!(out, "config:    {cfg}");
    }
    if let Some(by) = s.daemon.started_by {
        let _ = writeln!(out, "started:   {}", by.describe());
    }
    if s.daemon.sockets.is_empty() {
        let _ = writeln!(out, "listeners: {}", s.info.listeners.join(", "));
    } else {
        let _ = writeln!(out, "listeners:");
    }
    render_sockets_and_exports(&mut out, &s.daemon.sockets, s.daemon.exports.as_ref());
    let default = s.default_profile.as_deref();
    let profiles: Vec<String> = s
        .profiles
        .iter()
        .map(|p| if Some(p.as_str()) == default { format!("{p} (default)") } else { p.clone() })
        .collect();
    let _ =
        writeln!(out, "profiles:  {}", if profiles.is_empty() { "none".into() } else { profiles.join(", ") });
    if !s.daemon.logins.is_empty() {
        render_logins(&mut out, &s.daemon.logins);
    }
    if s.entries.is_empty() {
        let _ = writeln!(out, "cached tokens: none");
    } else {
        let _ = writeln!(out, "cached tokens:");
        let _ = writeln!(
            out,
            "  {:<16} {:<44} {:<9} {:<12} {:<12} ERROR",
            "PROFILE", "RESOURCE", "TOKEN", "EXPIRES IN", "REFRESH IN"
        );
        for e in &s.entries {
            let _ = writeln!(
                out,
                "  {:<16} {:<44} {:<9} {:<12} {:<12} {}",
                e.profile,
                e.resource,
                e.token_hash.as_deref().unwrap_or("-"),
                opt_secs(e.expires_in_secs),
                opt_secs(e.next_refresh_in_secs),
                e.last_error.as_deref().unwrap_or("")
            );
        }
    }
    let st = &s.stats;
    let _ = writeln!(
        out,
        "requests:  {} hits, {} misses, {} coalesced; upstream: {} calls, {} errors, {} refreshes",
        st.hits, st.misses, st.coalesced, st.upstream_calls, st.upstream_errors, st.refreshes
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_is_told_from_an_absent_or_reaped_one() {
        assert!(is_running(std::process::id()));
        assert!(!is_running(u32::MAX), "no such process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Exited but not reaped yet: a zombie, which no longer runs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while is_running(child.id()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!is_running(child.id()));
        child.wait().unwrap();
    }

    #[test]
    fn status_table_shows_profiles_entries_and_counters() {
        let body = serde_json::json!({
            "version": "0.1.0", "pid": 7, "ready": true, "uptime_secs": 65,
            "config": "/etc/azbroker/config.toml", "listeners": ["127.0.0.1:50342"],
            "profiles": ["contoso", "fabrikam"], "default_profile": "contoso",
            "sockets": [{"kind": "http", "address": "127.0.0.1:50342", "profile": null, "origin": "config"},
                        {"kind": "https", "address": "127.0.0.1:41001", "profile": "fabrikam", "origin": "auto"}],
            "logins": [{"name": "app", "kind": "service-principal", "tenant": "contoso.example", "state": "configured"},
                       {"name": "me", "kind": "user", "tenant": "organizations", "state": "signed_in",
                        "account": "alice@contoso.example", "tenants_needing_sign_in": [
                          {"tenant": "fabrikam.example", "reason": "AADSTS50076: MFA",
                           "command": "azbroker login --login me --tenant fabrikam.example"}]}],
            "entries": [{"profile": "fabrikam", "resource": "https://vault.azure.net", "token_hash": "ab12cd34",
                         "expires_in_secs": 3000, "next_refresh_in_secs": 1200, "idle_secs": 2, "failures": 0,
                         "last_error": null}],
            "stats": {"hits": 5, "misses": 1, "coalesced": 0, "upstream_calls": 1, "upstream_errors": 0, "refreshes": 0}
        });
        let status: Status = serde_json::from_value(body).unwrap();
        let text = render_status(&status);
        assert!(text.contains("azbroker 0.1.0 (pid 7), ready, up 1m 5s"), "{text}");
        assert!(text.contains("profiles:  contoso (default), fabrikam"), "{text}");
        assert!(text.contains("  http   127.0.0.1:50342, from config\n"), "{text}");
        assert!(
            text.contains("  https  127.0.0.1:41001 (profile fabrikam), opened for the profile (`azbroker env --profile` prints it)\n"),
            "{text}"
        );
        assert!(text.contains("app") && text.contains("service-principal"), "{text}");
        assert!(text.contains("signed in as alice@contoso.example"), "{text}");
        assert!(
            text.contains("tenant fabrikam.example NEEDS SIGN-IN: AADSTS50076: MFA; run `azbroker login --login me --tenant fabrikam.example`"),
            "{text}"
        );
        assert!(
            text.contains("https://vault.azure.net") && text.contains("ab12cd34") && text.contains("50m"),
            "{text}"
        );
        assert!(text.contains("5 hits, 1 misses"), "{text}");
    }
}
