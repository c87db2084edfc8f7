//! The subcommands that ask the running daemon over its admin socket: `status`, `reload`,
//! `rotate-secrets`.
//! Presentation only; the daemon decides everything.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Result, bail};
use hyper::StatusCode;
use serde_json::Value;

use crate::cli::admin_client::AdminClient;
use crate::cli::args::StatusArgs;
use crate::config::Config;

/// Exit status when the daemon rejected a config reload (same family as a bad config at start).
const EXIT_REJECTED: u8 = 64;

pub async fn status(config: &Config, args: &StatusArgs) -> Result<ExitCode> {
    let (code, body) = AdminClient::new(config).get("/v1/status").await?;
    if code != StatusCode::OK {
        bail!("the daemon answered {code}: {body}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{}", render_status(&body));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reload(config: &Config) -> Result<ExitCode> {
    let (code, body) = AdminClient::new(config).post("/v1/reload", None).await?;
    let list = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    if code == StatusCode::OK {
        println!("config reloaded: {} profile(s)", body["profiles"]);
        for w in list("warnings") {
            println!("  note: {w}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("config reload rejected; the daemon keeps its running config:");
    for p in list("problems") {
        eprintln!("  - {p}");
    }
    Ok(ExitCode::from(EXIT_REJECTED))
}

pub async fn rotate_secrets(config: &Config) -> Result<ExitCode> {
    let (code, body) = AdminClient::new(config).post("/v1/rotate-secrets", None).await?;
    if code != StatusCode::OK {
        let why = body["error_description"].as_str().unwrap_or("no reason given");
        bail!("the daemon did not rotate its secrets: {why}");
    }
    let names = |key: &str| -> String {
        let v: Vec<&str> = body[key].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if v.is_empty() { "none".into() } else { v.join(", ") }
    };
    println!("rotated: {}", names("rotated"));
    if body["unchanged"].as_array().is_some_and(|a| !a.is_empty()) {
        println!("unchanged (configured files that did not change): {}", names("unchanged"));
    }
    println!(
        "the previous values keep working for {}; give clients the new values with `azbroker env`",
        secs(&body["grace_secs"])
    );
    Ok(ExitCode::SUCCESS)
}

/// Where the daemon listens (and who made each socket) and what clients export.
fn render_sockets_and_exports(out: &mut String, s: &Value) {
    for sock in s["sockets"].as_array().into_iter().flatten() {
        let profile = sock["profile"].as_str().map(|p| format!(" (profile {p})")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<6} {}{profile}, from {}",
            text(sock, "kind"),
            text(sock, "address"),
            text(sock, "origin")
        );
    }
    let ex = &s["exports"];
    if let Some(endpoint) = ex["app-service"]["IDENTITY_ENDPOINT"].as_str() {
        let _ = writeln!(out, "exports:   {}", text(ex, "command"));
        let _ = writeln!(out, "  IDENTITY_ENDPOINT={endpoint}  IDENTITY_HEADER=(see `azbroker env`)");
        let _ = writeln!(
            out,
            "  AZURE_POD_IDENTITY_AUTHORITY_HOST={}",
            text(&ex["imds"], "AZURE_POD_IDENTITY_AUTHORITY_HOST")
        );
    }
}

/// A login's last upstream error, and whether someone must act.
fn render_login_health(out: &mut String, l: &Value) {
    let attention = l["needs_attention"].as_bool() == Some(true);
    if let Some(e) = l["last_upstream_error"].as_object() {
        let age = e.get("at_unix").and_then(Value::as_u64).map(|at| {
            let secs = azbroker_core::unix_now().saturating_sub(at);
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        });
        let _ = writeln!(
            out,
            "  {:<16} {}last upstream error {} ago: {}",
            "",
            if attention { "NEEDS ATTENTION - " } else { "" },
            age.as_deref().unwrap_or("?"),
            e.get("message").and_then(Value::as_str).unwrap_or("-")
        );
    }
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

fn secs(v: &Value) -> String {
    match v.as_u64() {
        Some(s) => humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
        None => "-".into(),
    }
}

/// Each login with its state: who is signed in, what needs a sign-in (and the command), the last
/// error.
fn render_logins(out: &mut String, logins: &[Value]) {
    let _ = writeln!(out, "logins:");
    for l in logins {
        let state = match (text(l, "state"), l["account"].as_str()) {
            ("signed_in", Some(who)) => format!("signed in as {who}"),
            ("needs_sign_in", _) => format!("NEEDS SIGN-IN: {}", text(l, "reason")),
            ("not_signed_in", _) => "not signed in".to_owned(),
            (other, _) => other.to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<16} {:<18} {:<24} {state}",
            text(l, "name"),
            text(l, "kind"),
            text(l, "tenant")
        );
        if let Some(cmd) = l["command"].as_str() {
            let _ = writeln!(out, "  {:<16} run `{cmd}`", "");
        }
        for t in l["tenants_needing_sign_in"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<16} tenant {} NEEDS SIGN-IN: {}; run `{}`",
                "",
                text(t, "tenant"),
                text(t, "reason"),
                text(t, "command")
            );
        }
        if let Some(e) = l["last_error"].as_str() {
            let _ = writeln!(out, "  {:<16} last error: {e}", "");
        }
        render_login_health(out, l);
    }
}

/// The human view of `GET /v1/status`.
fn render_status(s: &Value) -> String {
    let mut out = String::new();
    let ready = if s["ready"].as_bool() == Some(true) { "ready" } else { "starting" };
    let _ = writeln!(
        out,
        "azbroker {} (pid {}), {ready}, up {}",
        text(s, "version"),
        s["pid"],
        secs(&s["uptime_secs"])
    );
    if let Some(cfg) = s["config"].as_str() {
        let _ = writeln!(out, "config:    {cfg}");
    }
    let listeners: Vec<&str> =
        s["listeners"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if s["sockets"].is_array() {
        let _ = writeln!(out, "listeners:");
    } else {
        let _ = writeln!(out, "listeners: {}", listeners.join(", "));
    }
    render_sockets_and_exports(&mut out, s);
    let default = s["default_profile"].as_str();
    let profiles: Vec<String> = s["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|p| if Some(p) == default { format!("{p} (default)") } else { p.to_owned() })
        .collect();
    let _ =
        writeln!(out, "profiles:  {}", if profiles.is_empty() { "none".into() } else { profiles.join(", ") });
    if let Some(logins) = s["logins"].as_array() {
        render_logins(&mut out, logins);
    }
    let entries = s["entries"].as_array().map(Vec::as_slice).unwrap_or_default();
    if entries.is_empty() {
        let _ = writeln!(out, "cached tokens: none");
    } else {
        let _ = writeln!(out, "cached tokens:");
        let _ = writeln!(
            out,
            "  {:<16} {:<44} {:<9} {:<12} {:<12} ERROR",
            "PROFILE", "RESOURCE", "TOKEN", "EXPIRES IN", "REFRESH IN"
        );
        for e in entries {
            let _ = writeln!(
                out,
                "  {:<16} {:<44} {:<9} {:<12} {:<12} {}",
                text(e, "profile"),
                text(e, "resource"),
                text(e, "token_hash"),
                secs(&e["expires_in_secs"]),
                secs(&e["next_refresh_in_secs"]),
                e["last_error"].as_str().unwrap_or("")
            );
        }
    }
    let st = &s["stats"];
    let _ = writeln!(
        out,
        "requests:  {} hits, {} misses, {} coalesced; upstream: {} calls, {} errors, {} refreshes",
        st["hits"],
        st["misses"],
        st["coalesced"],
        st["upstream_calls"],
        st["upstream_errors"],
        st["refreshes"]
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_shows_profiles_entries_and_counters() {
        let body = serde_json::json!({
            "version": "0.1.0", "pid": 7, "ready": true, "uptime_secs": 65,
            "config": "/etc/azbroker/config.toml", "listeners": ["127.0.0.1:50342"],
            "profiles": ["contoso", "fabrikam"], "default_profile": "contoso",
            "logins": [{"name": "app", "kind": "service-principal", "tenant": "contoso.example", "state": "configured"},
                       {"name": "me", "kind": "user", "tenant": "organizations", "state": "signed_in",
                        "account": "alice@contoso.example", "tenants_needing_sign_in": [
                          {"tenant": "fabrikam.example", "reason": "AADSTS50076: MFA",
                           "command": "azbroker login --login me --tenant fabrikam.example"}]}],
            "entries": [{"profile": "fabrikam", "resource": "https://vault.azure.net", "token_hash": "ab12cd34",
                         "expires_in_secs": 3000, "next_refresh_in_secs": 1200, "last_error": null}],
            "stats": {"hits": 5, "misses": 1, "coalesced": 0, "upstream_calls": 1, "upstream_errors": 0, "refreshes": 0}
        });
        let text = render_status(&body);
        assert!(text.contains("azbroker 0.1.0 (pid 7), ready, up 1m 5s"), "{text}");
        assert!(text.contains("profiles:  contoso (default), fabrikam"), "{text}");
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
