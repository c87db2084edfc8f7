//! The daemon's part of `GET /v1/status` ([`DaemonStatus`]): every socket it serves on (and where
//! each came from), the variables clients export to reach it, and each login's health.
//!
//! Never a secret: the identity header is named, not shown (`azbroker env` prints it).

use std::net::SocketAddr;
use std::path::Path;

use azbroker_core::admin_api::{
    AppServiceExports, Exports, ImdsExports, LoginHealth, LoginStatus, SocketInfo, SocketKind, StartedBy,
    UpstreamErrorInfo, UpstreamHealth,
};
use azbroker_core::{ProfileMetrics, ProfileName};

use crate::config::Config;

pub use azbroker_core::admin_api::SocketOrigin as Origin;

/// What is fixed at start: the sockets (token listeners and the admin socket), the exports, who
/// started the daemon and the upstream endpoints in use.
#[derive(Debug, Clone)]
pub struct Fixed {
    pub sockets: Vec<SocketInfo>,
    pub exports: Option<Exports>,
    pub started_by: StartedBy,
    pub authority_host: String,
    pub arm_endpoint: String,
}

/// Who started this daemon: systemd when it handed over a socket, the CLI's autostart when it
/// said so in the environment it gave the daemon, else someone by hand.
pub fn started_by(activated: bool) -> StartedBy {
    if activated {
        StartedBy::Systemd
    } else if crate::cli::autostart::is_autostarted() {
        StartedBy::Autostart
    } else {
        StartedBy::Manual
    }
}

/// The sockets and exports, fixed at start.
pub fn fixed_fields(
    config: &Config,
    listeners: &[(SocketAddr, Option<ProfileName>, Origin)],
    extra: &[(SocketAddr, SocketKind)],
    admin: (&Path, Origin),
    upstream: (&url::Url, &url::Url),
) -> Fixed {
    let activated = admin.1 == Origin::Systemd || listeners.iter().any(|(.., o)| *o == Origin::Systemd);
    let mut sockets: Vec<SocketInfo> = listeners
        .iter()
        .map(|(addr, profile, origin)| SocketInfo {
            kind: SocketKind::Http,
            address: addr.to_string(),
            profile: profile.as_ref().map(ToString::to_string),
            origin: *origin,
        })
        .collect();
    // The HTTPS and link-local listeners are always the daemon's own.
    sockets.extend(extra.iter().map(|(addr, kind)| SocketInfo {
        kind: *kind,
        address: addr.to_string(),
        profile: None,
        origin: Origin::Config,
    }));
    sockets.push(SocketInfo {
        kind: SocketKind::Admin,
        address: admin.0.display().to_string(),
        profile: None,
        origin: admin.1,
    });
    Fixed {
        sockets,
        exports: exports(config, listeners),
        started_by: started_by(activated),
        authority_host: upstream.0.to_string(),
        arm_endpoint: upstream.1.to_string(),
    }
}

/// What a client exports, per dialect, for the first general listener (the one `azbroker env`
/// uses). The identity header's value is withheld.
fn exports(config: &Config, listeners: &[(SocketAddr, Option<ProfileName>, Origin)]) -> Option<Exports> {
    let first_bound = listeners.iter().find(|(_, p, _)| p.is_none()).map(|(a, ..)| *a);
    // A configured port 0 means "any": the address clients need is the one actually bound.
    let base = match config.server.listen.first().copied() {
        Some(configured) if configured.port() != 0 => Some(configured),
        configured => first_bound.or(configured),
    }
    .map(|a| format!("http://{a}"))?;
    Some(Exports {
        command: "eval \"$(azbroker env)\"   (or: azbroker env --profile NAME)".to_owned(),
        app_service: AppServiceExports {
            identity_endpoint: format!("{base}/msi/token"),
            identity_header: "(secret; printed by `azbroker env`)".to_owned(),
        },
        per_profile: "each profile has a listener of its own (its `listen`, or one the daemon opens for it: the sockets of origin `auto`); `azbroker env --profile NAME` prints it".to_owned(),
        imds: ImdsExports { authority_host: base },
    })
}

/// Each login with its profiles (from the config snapshot, `(profile, login)` pairs), their
/// latest upstream error and whether someone must act.
pub fn logins_health(
    logins: Vec<LoginStatus>,
    config_profiles: &[(String, String)],
    metrics: &[ProfileMetrics],
) -> Vec<LoginHealth> {
    logins
        .into_iter()
        .map(|login| {
            let profiles: Vec<String> =
                config_profiles.iter().filter(|(_, l)| *l == login.name).map(|(p, _)| p.clone()).collect();
            let mine: Vec<&ProfileMetrics> =
                metrics.iter().filter(|m| profiles.iter().any(|p| p == m.profile.as_str())).collect();
            let last_upstream_error = mine
                .iter()
                .filter_map(|m| m.last_error.as_ref())
                .max_by_key(|e| e.at_unix)
                .map(UpstreamErrorInfo::from);
            LoginHealth {
                needs_attention: mine.iter().any(|m| m.needs_attention),
                login,
                profiles,
                last_upstream_error,
            }
        })
        .collect()
}

/// Per-profile upstream summary.
pub fn upstream(metrics: &[ProfileMetrics]) -> Vec<UpstreamHealth> {
    metrics.iter().map(UpstreamHealth::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_name_the_header_without_its_value() {
        let c = Config::parse("[server]\nlisten = [\"127.0.0.1:50999\"]\n", None).unwrap();
        let addr: SocketAddr = "127.0.0.1:50999".parse().unwrap();
        let f = fixed_fields(
            &c,
            &[(addr, None, Origin::Systemd)],
            &[("127.0.0.1:50343".parse().unwrap(), SocketKind::Https)],
            (Path::new("/run/azbroker/admin.sock"), Origin::Config),
            (&c.cloud.authority_host, &c.cloud.arm_endpoint),
        );
        assert_eq!(f.started_by, StartedBy::Systemd, "a socket from systemd means socket activation");
        let exports = f.exports.unwrap();
        assert_eq!(exports.app_service.identity_endpoint, "http://127.0.0.1:50999/msi/token");
        assert!(exports.app_service.identity_header.contains("azbroker env"));
        assert_eq!(f.sockets[0].origin, Origin::Systemd);
        assert_eq!(
            (f.sockets[1].kind, f.sockets[1].address.as_str()),
            (SocketKind::Https, "127.0.0.1:50343")
        );
        assert_eq!(f.sockets[2].kind, SocketKind::Admin);
    }
}
