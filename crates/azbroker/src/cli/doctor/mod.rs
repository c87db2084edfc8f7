//! `azbroker doctor`: checks what usually goes wrong and prints what to fix — the config file,
//! the state and runtime directories' permissions, whether the listeners and the admin socket
//! answer, the clock against upstream's `Date` header, and the caller's shell variables.
//!
//! It only reads: no file is created or changed, nothing is sent but one request to each
//! listener, one to the admin socket and one to the authority host. Exit status 1 when any
//! check failed, 0 otherwise (warnings included).

mod env_check;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use serde::Serialize;

use crate::cli::admin_client::{self, AdminClient};
use crate::cli::args::DoctorArgs;
use crate::config::Config;
use crate::paths;

/// Skew beyond which tokens look expired or not yet valid to somebody.
const SKEW_FAIL: Duration = Duration::from_secs(300);
const SKEW_WARN: Duration = Duration::from_secs(30);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub level: Level,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &str, message: impl Into<String>) -> Self {
        Self { check: check.into(), level: Level::Ok, message: message.into(), fix: None }
    }

    fn warn(check: &str, message: impl Into<String>, fix: &str) -> Self {
        Self { check: check.into(), level: Level::Warn, message: message.into(), fix: Some(fix.into()) }
    }

    fn fail(check: &str, message: impl Into<String>, fix: &str) -> Self {
        Self { check: check.into(), level: Level::Fail, message: message.into(), fix: Some(fix.into()) }
    }
}

pub async fn run(config_path: Option<&Path>, args: &DoctorArgs) -> Result<ExitCode> {
    let mut findings = Vec::new();
    let config = match Config::load(config_path) {
        Ok(c) => {
            let origin =
                c.origin.as_ref().map_or("none found, built-in defaults".into(), |p| p.display().to_string());
            let msg = format!("{origin}: {} login(s), {} profile(s)", c.logins.len(), c.profiles.len());
            findings.push(if c.profiles.is_empty() {
                Finding::warn("config", msg, "add a login and a profile (see the example config), or try `azbroker serve --local-authority`")
            } else {
                Finding::ok("config", msg)
            });
            for w in crate::config::trust::warnings(&c) {
                findings.push(Finding::warn("config", w, "make the file readable by its owner only"));
            }
            Some(c)
        }
        Err(e) => {
            findings.push(Finding::fail(
                "config",
                e.to_string(),
                "fix the listed problems (`azbroker check-config` shows them too)",
            ));
            None
        }
    };
    match &config {
        Some(config) => {
            findings.extend(directories(config));
            findings.extend(listeners(config).await);
            findings.push(clock(config).await);
        }
        // Without a config, the directories, listeners and authority to check are unknown.
        None => findings.push(Finding::warn(
            "directories, listeners, clock",
            "not checked: the config did not load",
            "fix the config, then run doctor again",
        )),
    }
    let config = config.unwrap_or_else(Config::builtin);
    findings.extend(env_check::check(&|k| std::env::var(k).ok(), &config));

    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print!("{}", render(&findings));
    }
    let failed = findings.iter().any(|f| f.level == Level::Fail);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let tag = match f.level {
            Level::Ok => "[ ok ]",
            Level::Warn => "[warn]",
            Level::Fail => "[FAIL]",
        };
        out.push_str(&format!("{tag} {}: {}\n", f.check, f.message));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("       fix: {fix}\n"));
        }
    }
    let (warn, fail) = (
        findings.iter().filter(|f| f.level == Level::Warn).count(),
        findings.iter().filter(|f| f.level == Level::Fail).count(),
    );
    out.push_str(&format!("{} checks: {fail} failed, {warn} warnings\n", findings.len()));
    out
}

/// The state directory must be private to the daemon's user; so must the files in it and the
/// admin socket. Missing directories are fine before the first start.
fn directories(config: &Config) -> Vec<Finding> {
    let me = paths::current_uid();
    let mut out = Vec::new();
    let mut check = |what: &str, path: &Path, max_mode: u32, missing_ok: &str| {
        let name = format!("{what} {}", path.display());
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(Finding::ok(&name, format!("not created yet ({missing_ok})")));
            }
            Err(e) => out.push(Finding::fail(
                &name,
                format!("cannot inspect: {e}"),
                "check the path and its parents' permissions",
            )),
            Ok(meta) => {
                let mode = meta.mode() & 0o777;
                if mode & !max_mode != 0 {
                    out.push(Finding::fail(
                        &name,
                        format!("mode {mode:04o} lets other users in (at most {max_mode:04o} expected)"),
                        &format!("chmod {max_mode:04o} {}", path.display()),
                    ));
                } else if meta.uid() != me && me != 0 {
                    out.push(Finding::warn(
                        &name,
                        format!("owned by uid {}, not by you (uid {me})", meta.uid()),
                        "run azbroker as the user that owns it, or use another state_dir/runtime_dir",
                    ));
                } else {
                    out.push(Finding::ok(&name, format!("mode {mode:04o}, owner uid {}", meta.uid())));
                }
            }
        }
    };
    check("state dir", &config.server.state_dir, 0o700, "the daemon creates it at 0700");
    for id in azbroker_server::SecretId::ALL {
        let file = crate::daemon::secrets::file(config, *id);
        let hint = if file.configured {
            "your file: keep it readable by the daemon only"
        } else {
            "generated on first use"
        };
        check(id.name(), &file.path, 0o600, hint);
    }
    check("runtime dir", &config.server.runtime_dir, 0o755, "the daemon creates it");
    check("admin socket", &admin_client::socket_path(config), 0o600, "the daemon is not running");
    out
}

/// Each configured listener answers `/readyz`, and the admin socket answers.
async fn listeners(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let http = reqwest::Client::builder().no_proxy().timeout(PROBE_TIMEOUT).build();
    let Ok(http) = http else {
        out.push(Finding::fail("listeners", "cannot build an HTTP client", "report this as a bug"));
        return out;
    };
    let addrs = config.server.listen.iter().map(|a| (*a, None)).chain(
        config.profiles.values().flat_map(|p| p.listen.iter().map(move |a| (*a, Some(p.name.as_str())))),
    );
    for (addr, profile) in addrs {
        let name = match profile {
            Some(p) => format!("listener {addr} (profile {p})"),
            None => format!("listener {addr}"),
        };
        match http.get(format!("http://{addr}/readyz")).send().await {
            Ok(r) if r.status().is_success() => out.push(Finding::ok(&name, "answers, ready")),
            Ok(r) => out.push(Finding::warn(&name, format!("answers /readyz with {}", r.status()), "wait for start-up to finish, then look at the daemon's log")),
            Err(e) if e.is_connect() => out.push(Finding::fail(
                &name,
                "nothing is listening",
                "start the daemon: `systemctl start azbroker` (or `systemctl --user start azbroker`, or `azbroker serve`)",
            )),
            Err(e) => out.push(Finding::fail(&name, format!("no usable answer: {e}"), "is something else listening on that port? set [server] listen to another one")),
        }
    }
    match AdminClient::new(config).health().await {
        Ok(code) if code.is_success() => out.push(Finding::ok("admin socket", "answers")),
        Ok(code) => {
            out.push(Finding::warn("admin socket", format!("answers {code}"), "look at the daemon's log"))
        }
        Err(e) => out.push(Finding::fail(
            "admin socket",
            format!("{e:#}"),
            "start the daemon, and run this as the daemon's user or root",
        )),
    }
    out
}

/// The local clock against the `Date` header of the authority host in use (the running daemon's,
/// so the local authority's under `--local-authority`; else the config's).
async fn clock(config: &Config) -> Finding {
    const CHECK: &str = "clock";
    let (host, _) = crate::cli::admin_client::endpoints_in_use(config).await;
    let host = &host;
    let http = match reqwest::Client::builder().timeout(PROBE_TIMEOUT).build() {
        Ok(h) => h,
        Err(e) => {
            return Finding::warn(CHECK, format!("cannot build an HTTP client: {e}"), "report this as a bug");
        }
    };
    let sent = SystemTime::now();
    let response = match http.get(host.as_str()).send().await {
        Ok(r) => r,
        Err(e) => {
            return Finding::warn(
                CHECK,
                format!("cannot reach {host} to compare clocks: {e}"),
                "check network access to the authority host (HTTPS_PROXY, firewall)",
            );
        }
    };
    let received = SystemTime::now();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok());
    let Some(remote) = date else {
        return Finding::warn(
            CHECK,
            format!("{host} sent no usable Date header"),
            "nothing to do unless tokens look expired",
        );
    };
    // The server stamped its Date somewhere between send and receive; compare with the midpoint.
    let local = sent + received.duration_since(sent).unwrap_or_default() / 2;
    judge_skew(local, remote, host.as_str())
}

fn judge_skew(local: SystemTime, remote: SystemTime, host: &str) -> Finding {
    const CHECK: &str = "clock";
    let (skew, ahead) = match local.duration_since(remote) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    // HTTP dates have one-second resolution.
    let secs = skew.as_secs();
    let msg = format!("{secs} s {} {host}", if ahead { "ahead of" } else { "behind" });
    let fix = "enable time synchronisation: `timedatectl set-ntp true` (systemd-timesyncd or chrony)";
    if skew > SKEW_FAIL {
        Finding::fail(CHECK, format!("{msg}: tokens will look expired or not yet valid"), fix)
    } else if skew > SKEW_WARN {
        Finding::warn(CHECK, msg, fix)
    } else {
        Finding::ok(CHECK, format!("within {secs} s of {host}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_thresholds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(judge_skew(t, t + Duration::from_secs(1), "h").level, Level::Ok);
        let f = judge_skew(t + Duration::from_secs(90), t, "h");
        assert_eq!(f.level, Level::Warn);
        assert!(f.message.contains("90 s ahead of h"), "{}", f.message);
        let f = judge_skew(t, t + Duration::from_secs(600), "h");
        assert_eq!(f.level, Level::Fail);
        assert!(f.message.contains("600 s behind"), "{}", f.message);
        assert!(f.fix.unwrap().contains("timedatectl"));
    }

    #[test]
    fn report_ends_with_a_tally_and_shows_fixes() {
        let text = render(&[
            Finding::ok("a", "fine"),
            Finding::warn("b", "hmm", "do x"),
            Finding::fail("c", "broken", "do y"),
        ]);
        assert!(
            text.contains(
                "[ ok ] a: fine\n[warn] b: hmm\n       fix: do x\n[FAIL] c: broken\n       fix: do y\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("3 checks: 1 failed, 1 warnings\n"), "{text}");
    }
}
