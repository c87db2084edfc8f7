//! What a client process needs in its environment to reach the daemon, per dialect, and how to
//! print it for each shell.

use anyhow::{Context, Result, bail};
use azbroker_core::Secret;
use azbroker_core::admin_api::{SecretValues, SocketKind, Status};
use azbroker_server::admin;
use azbroker_server::{DEFAULT_IDENTITY_CLIENT_ID, SecretId};

use crate::cli::admin_client::AdminClient;
use crate::cli::args::{Dialect, EnvFormat};
use crate::config::Config;
use crate::daemon::{secrets, tls_identity, trust_store};

/// A runtime secret a client needs: read (or generated) the way the daemon does, or — when this
/// user may not read the daemon's files (a system daemon, `admin_group`) — asked of the daemon.
/// Async because asking the daemon is: a caller already on a runtime must not start another.
pub async fn secret(config: &Config, id: SecretId) -> Result<Secret> {
    match secrets::load(config, id) {
        Ok(s) => Ok(s),
        Err(e) if is_permission_denied(&e) => from_daemon(config, id)
            .await
            .with_context(|| format!("cannot read the daemon's {} ({e:#}), nor ask the daemon", id.name())),
        Err(e) => Err(e),
    }
}

pub async fn identity_header(config: &Config) -> Result<Secret> {
    secret(config, SecretId::IdentityHeader).await
}

fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    })
}

async fn from_daemon(config: &Config, id: SecretId) -> Result<Secret> {
    let values: SecretValues = match AdminClient::new(config).get("/v1/secrets").await? {
        Ok(values) => values,
        Err(refused) => bail!("the daemon did not hand out its secrets: {refused}"),
    };
    admin::secret_value(&values, id).cloned().with_context(|| format!("the daemon has no {}", id.name()))
}

/// The daemon's first listener, or — for a profile — that profile's own listener (its configured
/// `listen`, else the one the daemon opened for it). Never a `/p/PROFILE` path prefix: clients
/// that rebuild the URL's path (.NET and Java on `AZURE_POD_IDENTITY_AUTHORITY_HOST`) would drop
/// it and silently get the default profile's token.
pub async fn base_url(config: &Config, profile: Option<&str>) -> Result<String> {
    let Some(p) = profile else {
        let Some(addr) = config.server.listen.first() else { bail!("no listener is configured") };
        return Ok(format!("http://{addr}"));
    };
    if let Some(addr) = personal(config, p, SocketKind::Http).await {
        return Ok(format!("http://{addr}"));
    }
    let profile = configured(config, p)?;
    if let Some(addr) = profile.listen.first() {
        return Ok(format!("http://{addr}"));
    }
    Ok(format!("http://{}", own(config, p, SocketKind::Http).await?))
}

/// `https://ADDR` of the daemon's first HTTPS listener, or of the profile's own one. A profile
/// with a configured (HTTP-only) `listen` has none and keeps `/p/PROFILE` there: every Service
/// Fabric client uses `IDENTITY_ENDPOINT` verbatim.
pub async fn tls_base_url(config: &Config, profile: Option<&str>) -> Result<String> {
    let Some(addr) = config.server.dialects.tls_listen.first() else {
        bail!("no HTTPS listener is configured ([server] tls_listen), which Service Fabric needs")
    };
    let Some(p) = profile else { return Ok(format!("https://{addr}")) };
    if let Some(own) = personal(config, p, SocketKind::Https).await {
        return Ok(format!("https://{own}"));
    }
    if !configured(config, p)?.listen.is_empty() {
        return Ok(format!("https://{addr}/p/{p}"));
    }
    Ok(format!("https://{}", own(config, p, SocketKind::Https).await?))
}

fn configured<'c>(config: &'c Config, p: &str) -> Result<&'c crate::config::Profile> {
    config.profiles.values().find(|k| k.name.as_str() == p).with_context(|| {
        let known: Vec<_> = config.profiles.keys().map(|k| k.as_str()).collect();
        let personal = match AdminClient::new(config).is_self_service() {
            true => " and is not one of your personal profiles (`azbroker workspace list`)",
            false => "",
        };
        format!("profile '{p}' is not configured (configured: {}){personal}", known.join(", "))
    })
}

/// On a shared machine (the caller talks to root's daemon as themselves), the address of the
/// listener of `kind` that serves the caller's personal profile `p` — their user name or one of
/// their personal workspaces. Only the daemon knows these, and lists them for their owner alone
/// in that user's status, ahead of the configured profiles' (a personal name comes first, as in a
/// `/p/NAME` prefix). `None` elsewhere, and when the daemon names no such listener.
async fn personal(config: &Config, p: &str, kind: SocketKind) -> Option<String> {
    if !AdminClient::new(config).is_self_service() {
        return None;
    }
    own(config, p, kind).await.ok()
}

/// The `IP:PORT` of the listener of `kind` the running daemon opened for profile `p`, as its
/// status lists it: asked over the admin socket, so that a user who may talk to the daemon but not
/// read its state directory (`admin_group`) gets it too. No daemon, no address: the port is only
/// known for sure while it listens.
async fn own(config: &Config, p: &str, kind: SocketKind) -> Result<String> {
    let status: Status = match AdminClient::new(config).get("/v1/status").await.with_context(|| {
        format!("profile '{p}' is reached on a listener the daemon opens for it; start the daemon (`azbroker serve`)")
    })? {
        Ok(status) => status,
        Err(refused) => bail!("the daemon did not answer its status ({}): {refused}", refused.status),
    };
    let Some(addr) = status.daemon.profile_listener(p, kind) else {
        bail!(
            "the daemon has no {} listener for profile '{p}': reload it if the profile is new (azbroker reload)",
            kind.as_str()
        )
    };
    Ok(addr.to_owned())
}

/// The variables for one dialect, in a stable order.
pub async fn variables(
    config: &Config,
    profile: Option<&str>,
    dialect: Dialect,
) -> Result<Vec<(String, String)>> {
    let base = base_url(config, profile).await?;
    let var = |k: &str, v: String| (k.to_owned(), v);
    Ok(match dialect {
        Dialect::AppService => vec![
            var("IDENTITY_ENDPOINT", format!("{base}/msi/token")),
            var("IDENTITY_HEADER", identity_header(config).await?.expose().to_owned()),
        ],
        Dialect::AzureMl => vec![
            var("MSI_ENDPOINT", format!("{base}/MSI/auth")),
            var("MSI_SECRET", secret(config, SecretId::MsiSecret).await?.expose().to_owned()),
            var("DEFAULT_IDENTITY_CLIENT_ID", DEFAULT_IDENTITY_CLIENT_ID.to_owned()),
        ],
        Dialect::CloudShell => vec![var("MSI_ENDPOINT", format!("{base}/oauth2/token"))],
        Dialect::Imds => vec![var("AZURE_POD_IDENTITY_AUTHORITY_HOST", base)],
        Dialect::Arc => vec![
            var("IDENTITY_ENDPOINT", format!("{base}/arc/metadata/identity/oauth2/token")),
            var("IMDS_ENDPOINT", base.clone()),
        ],
        Dialect::ServiceFabric => {
            let tls = tls_base_url(config, profile).await?;
            let identity = tls_identity::load_or_create(config)?;
            vec![
                var("IDENTITY_ENDPOINT", format!("{tls}/msi/token")),
                var("IDENTITY_HEADER", identity_header(config).await?.expose().to_owned()),
                var("IDENTITY_SERVER_THUMBPRINT", identity.thumbprint.clone()),
                var("NODE_EXTRA_CA_CERTS", tls_identity::public_cert_path(config).display().to_string()),
                var("JAVA_TOOL_OPTIONS", java_tool_options(config)),
            ]
        }
        Dialect::Azd => vec![
            var("AZD_AUTH_ENDPOINT", base),
            var("AZD_AUTH_KEY", secret(config, SecretId::NativeKey).await?.expose().to_owned()),
        ],
        Dialect::All => {
            let mut all = Box::pin(variables(config, profile, Dialect::AppService)).await?;
            all.extend(Box::pin(variables(config, profile, Dialect::AzureMl)).await?);
            all
        }
    })
}

/// `JAVA_TOOL_OPTIONS` adopting the daemon's Java trust store, keeping the caller's own options
/// (ours last: the JVM keeps the last value of a repeated `-D`).
fn java_tool_options(config: &Config) -> String {
    let theirs = std::env::var("JAVA_TOOL_OPTIONS").ok();
    trust_store::merge_java_options(theirs.as_deref(), &trust_store::java_options(&trust_store::path(config)))
}

/// Renders variables for a shell or file format.
pub fn render(vars: &[(String, String)], format: EnvFormat) -> String {
    match format {
        EnvFormat::Sh => vars.iter().map(|(k, v)| format!("export {k}={}\n", sh_quote(v))).collect(),
        EnvFormat::Fish => vars.iter().map(|(k, v)| format!("set -gx {k} {};\n", sh_quote(v))).collect(),
        EnvFormat::Powershell => {
            vars.iter().map(|(k, v)| format!("$env:{k} = '{}'\n", v.replace('\'', "''"))).collect()
        }
        EnvFormat::Dotenv => vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect(),
        EnvFormat::Json => {
            let map: serde_json::Map<String, serde_json::Value> =
                vars.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            format!("{}\n", serde_json::Value::Object(map))
        }
    }
}

/// Quotes for POSIX sh and fish only when needed.
fn sh_quote(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let vars = vec![("A".to_owned(), "http://x/y".to_owned()), ("B".to_owned(), "it's".to_owned())];
        assert_eq!(render(&vars, EnvFormat::Sh), "export A=http://x/y\nexport B='it'\\''s'\n");
        assert_eq!(render(&vars, EnvFormat::Fish), "set -gx A http://x/y;\nset -gx B 'it'\\''s';\n");
        assert_eq!(render(&vars, EnvFormat::Powershell), "$env:A = 'http://x/y'\n$env:B = 'it''s'\n");
        assert_eq!(render(&vars, EnvFormat::Dotenv), "A=http://x/y\nB=it's\n");
        assert_eq!(render(&vars, EnvFormat::Json), "{\"A\":\"http://x/y\",\"B\":\"it's\"}\n");
    }
}
