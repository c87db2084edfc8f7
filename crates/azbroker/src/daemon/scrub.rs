//! Keeps the daemon from asking itself for tokens (DEPENDENCIES.md pitfall 5): when the
//! environment `azbroker serve` starts in carries the variables `azbroker env` exports *pointing
//! at this very daemon* (a shell that ran `eval "$(azbroker env)"`, a unit that inherited them),
//! a managed-identity login would find them and call its own listener. The daemon then re-executes
//! itself once with that family of variables removed — `std::env::remove_var` is `unsafe` in a
//! threaded program, re-exec is not. Variables pointing elsewhere (the real App Service endpoint
//! of the host) are left alone.

use std::os::unix::process::CommandExt;

use anyhow::{Result, bail};
use url::Url;

use crate::config::Config;

/// The variables clients of a managed-identity endpoint read.
pub const FAMILY: [&str; 8] = [
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "DEFAULT_IDENTITY_CLIENT_ID",
];
const ENDPOINTS: [&str; 4] =
    ["IDENTITY_ENDPOINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST"];
/// Set in the re-executed process: never re-exec twice, and log what was removed.
pub const MARKER: &str = "AZBROKER_SCRUBBED_ENV";

/// The endpoint variables that point at one of `config`'s listeners.
pub fn self_pointing(config: &Config, lookup: impl Fn(&str) -> Option<String>) -> Vec<&'static str> {
    let ports: Vec<u16> = config
        .server
        .listen
        .iter()
        .chain(config.profiles.values().flat_map(|p| p.listen.iter()))
        .map(std::net::SocketAddr::port)
        .collect();
    ENDPOINTS
        .into_iter()
        .filter(|var| {
            lookup(var).and_then(|v| Url::parse(&v).ok()).is_some_and(|u| {
                let loopback = match u.host() {
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                loopback && u.port_or_known_default().is_some_and(|p| ports.contains(&p))
            })
        })
        .collect()
}

/// Re-executes the daemon without the variable family when some of them point at itself.
/// Returns normally when nothing needs scrubbing (or after the re-exec, in the new process).
pub fn reexec_if_needed(config: &Config) -> Result<()> {
    if let Some(removed) = std::env::var_os(MARKER) {
        tracing::info!(removed = %removed.to_string_lossy(), "removed variables pointing at this daemon from its own environment");
        return Ok(());
    }
    let found = self_pointing(config, |k| std::env::var(k).ok());
    if found.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    for var in FAMILY {
        cmd.env_remove(var);
    }
    cmd.env(MARKER, found.join(","));
    let err = cmd.exec();
    bail!("cannot re-execute the daemon without {}: {err}", found.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_variables_pointing_at_our_listeners_count() {
        let config = Config::parse("[server]\nlisten = [\"127.0.0.1:50342\"]\n", None).unwrap();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        let ours =
            env(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:50342/msi/token"), ("IDENTITY_HEADER", "x")]);
        assert_eq!(self_pointing(&config, ours), vec!["IDENTITY_ENDPOINT"]);
        let local = env(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://localhost:50342")]);
        assert_eq!(self_pointing(&config, local), vec!["AZURE_POD_IDENTITY_AUTHORITY_HOST"]);
        let elsewhere = env(&[
            ("IDENTITY_ENDPOINT", "http://169.254.130.1:8081/msi/token"),
            ("MSI_ENDPOINT", "http://127.0.0.1:9/x"),
        ]);
        assert!(self_pointing(&config, elsewhere).is_empty());
    }
}
