//! `azbroker key create|list|revoke`: client keys for containers, over the admin socket (the
//! daemon's administrators only). `create` prints the client environment once, key included, in
//! the chosen format; nothing else ever shows a key.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use azbroker_core::admin_api::{KeyCreate, KeyCreated, KeyInfo, KeyList};
use azbroker_core::unix_now;

use crate::cli::admin_client::AdminClient;
use crate::cli::args::EnvFormat;
use crate::cli::args::{KeyCommand, KeyCreateArgs, KeyFormat};
use crate::cli::client_env::render;
use crate::config::Config;

/// The name containers resolve to the host (Docker Desktop, or `--add-host ...:host-gateway`).
const DOCKER_HOST: &str = "host.docker.internal";

pub async fn run(config: &Config, command: &KeyCommand) -> Result<ExitCode> {
    let client = AdminClient::new(config);
    match command {
        KeyCommand::Create(args) => create(&client, args).await,
        KeyCommand::List { json } => {
            let list: KeyList = match client.get("/v1/keys").await? {
                Ok(l) => l,
                Err(refused) => bail!("the daemon did not list its keys: {refused}"),
            };
            if *json {
                println!("{}", serde_json::to_string_pretty(&list.keys)?);
            } else {
                print!("{}", render_list(&list.keys, unix_now()));
            }
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Revoke { name } => {
            let info: KeyInfo = match client.delete(&format!("/v1/keys/{name}")).await? {
                Ok(i) => i,
                Err(refused) => bail!("the daemon did not revoke the key: {refused}"),
            };
            println!("revoked client key '{}' (profile {})", info.name, info.profile);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(client: &AdminClient, args: &KeyCreateArgs) -> Result<ExitCode> {
    let ttl_secs = match &args.ttl {
        None => None,
        Some(raw) if raw.trim() == "0" => Some(0),
        Some(raw) => Some(
            humantime::parse_duration(raw)
                .with_context(|| {
                    format!("--ttl {raw}: not a duration like \"12h\", \"30m\" or 0 (until revoked)")
                })?
                .as_secs()
                .max(1),
        ),
    };
    let request = KeyCreate {
        name: args.name.clone(),
        profile: args.profile.clone(),
        resources: args.resource.clone(),
        ttl_secs,
    };
    let created: KeyCreated = match client.post("/v1/keys", &request).await? {
        Ok(c) => c,
        Err(refused) => bail!("the daemon did not create the key: {refused}"),
    };
    let host = match (&args.host, created.container_listeners.first(), created.listeners.first()) {
        (Some(h), _, _) => h.clone(),
        (None, Some(c), _) => c.clone(),
        (None, None, Some(l)) => {
            eprintln!(
                "note: the daemon has no container_listen address; printing its loopback listener {l} \
                 (containers cannot reach it: add [server] container_listen, or pass --host)"
            );
            l.clone()
        }
        (None, None, None) => {
            bail!("the daemon has no HTTP listener to point clients at; pass --host HOST:PORT")
        }
    };
    print!("{}", render_created(&created, &host, args.format)?);
    eprintln!(
        "client key '{}' for profile '{}' ({}); it is shown only now. Revoke it with: azbroker key revoke {}",
        created.info.name,
        created.info.profile,
        expiry(created.info.expires, unix_now()),
        created.info.name
    );
    Ok(ExitCode::SUCCESS)
}

/// The client environment of a new key in `format`; `host` is `ADDR:PORT`.
pub fn render_created(created: &KeyCreated, host: &str, format: KeyFormat) -> Result<String> {
    let key = created.key.expose().to_owned();
    let vars = |authority: &str| {
        vec![
            ("IDENTITY_ENDPOINT".to_owned(), format!("http://{authority}/msi/token")),
            ("IDENTITY_HEADER".to_owned(), key.clone()),
        ]
    };
    let port = host.rsplit_once(':').map(|(_, p)| p).filter(|p| p.parse::<u16>().is_ok());
    let port = port.with_context(|| format!("--host {host}: expected HOST:PORT"))?;
    let docker = vars(&format!("{DOCKER_HOST}:{port}"));
    let add_host = format!("{DOCKER_HOST}:host-gateway");
    Ok(match format {
        KeyFormat::Sh => render(&vars(host), EnvFormat::Sh),
        KeyFormat::Json => render(&vars(host), EnvFormat::Json),
        KeyFormat::Docker => {
            let mut out = format!("--add-host {add_host}");
            for (k, v) in &docker {
                let _ = write!(out, " -e {k}={v}");
            }
            out.push('\n');
            out
        }
        KeyFormat::Compose => {
            let mut out = format!("    extra_hosts:\n      - \"{add_host}\"\n    environment:\n");
            for (k, v) in &docker {
                let _ = writeln!(out, "      {k}: \"{v}\"");
            }
            out
        }
        KeyFormat::Devcontainer => {
            let env: serde_json::Map<String, serde_json::Value> =
                docker.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            let fragment = serde_json::json!({
                "containerEnv": env,
                "runArgs": [format!("--add-host={add_host}")],
            });
            format!("{}\n", serde_json::to_string_pretty(&fragment)?)
        }
    })
}

fn expiry(expires: Option<u64>, now: u64) -> String {
    match expires {
        None => "until revoked".to_owned(),
        Some(at) if at <= now => "expired".to_owned(),
        Some(at) => {
            format!("expires in {}", humantime::format_duration(std::time::Duration::from_secs(at - now)))
        }
    }
}

/// `key list`: one line per key; never the key.
fn render_list(keys: &[KeyInfo], now: u64) -> String {
    if keys.is_empty() {
        return "no client keys (create one with `azbroker key create NAME --profile PROFILE`)\n".to_owned();
    }
    let mut out = String::new();
    for k in keys {
        let resources = k.resources.as_ref().map_or("any resource".to_owned(), |r| r.join(" "));
        let last = k.last_use.map_or("never used".to_owned(), |t| {
            format!(
                "last used {} ago",
                humantime::format_duration(std::time::Duration::from_secs(now.saturating_sub(t)))
            )
        });
        let state = if k.state == "valid" { expiry(k.expires, now) } else { k.state.clone() };
        let _ = writeln!(
            out,
            "{}  profile {}  {}  {}  {} grant(s), {}",
            k.name, k.profile, resources, state, k.grants, last
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use azbroker_core::Secret;

    fn created() -> KeyCreated {
        KeyCreated {
            key: Secret::new("azbk_abc"),
            info: KeyInfo {
                name: "dev".into(),
                profile: "fab".into(),
                resources: None,
                created: 1,
                expires: None,
                state: "valid".into(),
                last_use: None,
                grants: 0,
            },
            container_listeners: vec!["172.17.0.1:50342".into()],
            listeners: vec![],
        }
    }

    #[test]
    fn formats_print_the_app_service_pair() {
        let c = created();
        let sh = render_created(&c, "172.17.0.1:50342", KeyFormat::Sh).unwrap();
        assert_eq!(
            sh,
            "export IDENTITY_ENDPOINT=http://172.17.0.1:50342/msi/token\nexport IDENTITY_HEADER=azbk_abc\n"
        );
        let json = render_created(&c, "172.17.0.1:50342", KeyFormat::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["IDENTITY_ENDPOINT"], "http://172.17.0.1:50342/msi/token");
        let docker = render_created(&c, "172.17.0.1:50342", KeyFormat::Docker).unwrap();
        assert_eq!(
            docker,
            "--add-host host.docker.internal:host-gateway -e IDENTITY_ENDPOINT=http://host.docker.internal:50342/msi/token -e IDENTITY_HEADER=azbk_abc\n"
        );
        let compose = render_created(&c, "172.17.0.1:50342", KeyFormat::Compose).unwrap();
        assert!(compose.contains("extra_hosts:\n      - \"host.docker.internal:host-gateway\""), "{compose}");
        assert!(compose.contains("IDENTITY_HEADER: \"azbk_abc\""), "{compose}");
        let dev: serde_json::Value =
            serde_json::from_str(&render_created(&c, "172.17.0.1:50342", KeyFormat::Devcontainer).unwrap())
                .unwrap();
        assert_eq!(dev["containerEnv"]["IDENTITY_ENDPOINT"], "http://host.docker.internal:50342/msi/token");
        assert_eq!(dev["runArgs"][0], "--add-host=host.docker.internal:host-gateway");
        assert!(render_created(&c, "nohost", KeyFormat::Docker).is_err());
    }

    #[test]
    fn the_list_never_shows_a_key() {
        let c = created();
        let text = render_list(std::slice::from_ref(&c.info), 10);
        assert!(
            text.contains("dev  profile fab  any resource  until revoked  0 grant(s), never used"),
            "{text}"
        );
        assert!(!text.contains("azbk_"));
    }
}
