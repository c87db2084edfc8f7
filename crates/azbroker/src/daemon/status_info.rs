//! The daemon's extra fields in `GET /v1/status`: every socket it serves on (and where each came
//! from), the variables clients export to reach it, and each login's last upstream error.
//!
//! Never a secret: the identity header is named, not shown (`azbroker env` prints it).

use std::net::SocketAddr;
use std::path::Path;

use azbroker_core::{ProfileMetrics, ProfileName};
use serde_json::{Map, Value, json};

use crate::config::Config;

/// Where a listening socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Bound by the daemon from the config.
    Config,
    /// Passed by the service manager (socket activation).
    Systemd,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Systemd => "systemd",
        }
    }
}

/// `sockets` (token listeners and the admin socket) and `exports`.
pub fn fixed_fields(
    config: &Config,
    listeners: &[(SocketAddr, Option<ProfileName>, Origin)],
    extra: &[(SocketAddr, &str)],
    admin: (&Path, Origin),
) -> Map<String, Value> {
    let mut sockets: Vec<Value> = listeners
        .iter()
        .map(|(addr, profile, origin)| {
            json!({
                "kind": "http",
                "address": addr.to_string(),
                "profile": profile.as_ref().map(ProfileName::as_str),
                "origin": origin.as_str(),
            })
        })
        .collect();
    // The HTTPS and link-local listeners are always the daemon's own.
    sockets.extend(extra.iter().map(
        |(addr, kind)| json!({"kind": kind, "address": addr.to_string(), "origin": Origin::Config.as_str()}),
    ));
    sockets
        .push(json!({"kind": "admin", "address": admin.0.display().to_string(), "origin": admin.1.as_str()}));
    let mut m = Map::new();
    m.insert("sockets".into(), sockets.into());
    m.insert("exports".into(), exports(config, listeners));
    m
}

/// What a client exports, per dialect, for the first general listener (the one `azbroker env`
/// uses). The identity header's value is withheld.
fn exports(config: &Config, listeners: &[(SocketAddr, Option<ProfileName>, Origin)]) -> Value {
    let base = config
        .server
        .listen
        .first()
        .copied()
        .or_else(|| listeners.iter().find(|(_, p, _)| p.is_none()).map(|(a, ..)| *a))
        .map(|a| format!("http://{a}"));
    let Some(base) = base else { return json!({}) };
    json!({
        "command": "eval \"$(azbroker env)\"   (or: azbroker env --profile NAME)",
        "app-service": {
            "IDENTITY_ENDPOINT": format!("{base}/msi/token"),
            "IDENTITY_HEADER": "(secret; printed by `azbroker env`)",
        },
        "imds": { "AZURE_POD_IDENTITY_AUTHORITY_HOST": base },
        "per_profile": "each profile has a listener of its own (its `listen`, or one the daemon opens and records in state_dir/profile-listeners); `azbroker env --profile NAME` prints it",
    })
}

/// Adds each login's profiles, last upstream error and whether it needs attention to the
/// `logins` array (from the config snapshot), and a per-profile `upstream` summary.
pub fn add_health(
    fields: &mut Map<String, Value>,
    config_profiles: &[(String, String)],
    metrics: &[ProfileMetrics],
) {
    if let Some(Value::Array(logins)) = fields.get_mut("logins") {
        for login in logins.iter_mut() {
            let Some(name) = login.get("name").and_then(Value::as_str).map(str::to_owned) else { continue };
            let profiles: Vec<&str> =
                config_profiles.iter().filter(|(_, l)| *l == name).map(|(p, _)| p.as_str()).collect();
            let mine: Vec<&ProfileMetrics> =
                metrics.iter().filter(|m| profiles.contains(&m.profile.as_str())).collect();
            let last_error = mine.iter().filter_map(|m| m.last_error.as_ref()).max_by_key(|e| e.at_unix);
            if let Value::Object(obj) = login {
                obj.insert("profiles".into(), json!(profiles));
                // `last_error` is the login's own (sign-in) error; this one is the engine's.
                obj.insert("last_upstream_error".into(), json!(last_error));
                obj.insert("needs_attention".into(), json!(mine.iter().any(|m| m.needs_attention)));
            }
        }
    }
    let upstream: Vec<Value> = metrics
        .iter()
        .map(|m| {
            json!({
                "profile": m.profile.as_str(),
                "requests": m.upstream_requests,
                "errors": m.upstream_errors.iter().map(|(_, n)| n).sum::<u64>(),
                "last_success_unix": m.last_success_unix,
                "last_error": m.last_error,
                "needs_attention": m.needs_attention,
            })
        })
        .collect();
    fields.insert("upstream".into(), upstream.into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_name_the_header_without_its_value() {
        let c = Config::parse("[server]\nlisten = [\"127.0.0.1:50999\"]\n", None).unwrap();
        let addr: SocketAddr = "127.0.0.1:50999".parse().unwrap();
        let m = fixed_fields(
            &c,
            &[(addr, None, Origin::Systemd)],
            &[("127.0.0.1:50343".parse().unwrap(), "https")],
            (Path::new("/run/azbroker/admin.sock"), Origin::Config),
        );
        assert_eq!(m["exports"]["app-service"]["IDENTITY_ENDPOINT"], "http://127.0.0.1:50999/msi/token");
        assert!(m["exports"]["app-service"]["IDENTITY_HEADER"].as_str().unwrap().contains("azbroker env"));
        assert_eq!(m["sockets"][0]["origin"], "systemd");
        assert_eq!(
            (m["sockets"][1]["kind"].as_str(), m["sockets"][1]["address"].as_str()),
            (Some("https"), Some("127.0.0.1:50343"))
        );
        assert_eq!(m["sockets"][2]["kind"], "admin");
    }
}
