//! The caller's shell environment as the Azure SDKs will read it: which managed-identity source
//! each picks (PROTOCOLS.md §2), and every variable that sends clients somewhere other than this
//! broker or changes what they ask for. Pure: takes the variables, returns findings.

use std::net::SocketAddr;

use url::Url;

use super::Finding;
use crate::config::Config;

/// Looks up a variable, treating an empty value as unset (as the SDKs do).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn check(env: Lookup<'_>, config: &Config) -> Vec<Finding> {
    let ours = |raw: &str| points_here(raw, &config.server.listen, config);
    let mut out = Vec::new();
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    let (endpoint, header, thumbprint) =
        (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER"), var("IDENTITY_SERVER_THUMBPRINT"));
    let (msi, msi_secret, imds) = (var("MSI_ENDPOINT"), var("MSI_SECRET"), var("IMDS_ENDPOINT"));

    if let Some(ep) = &endpoint {
        if !ours(ep) {
            out.push(Finding::fail(
                "env IDENTITY_ENDPOINT",
                format!("points at {ep}, not at this broker: every Azure SDK will ask there"),
                "eval \"$(azbroker env)\" (or unset IDENTITY_ENDPOINT IDENTITY_HEADER)",
            ));
        } else if header.is_none() && imds.is_none() {
            out.push(Finding::warn(
                "env IDENTITY_HEADER",
                "IDENTITY_ENDPOINT is set without IDENTITY_HEADER: SDKs ignore the pair (or treat it as Azure Arc)",
                "eval \"$(azbroker env)\" to export both",
            ));
        } else {
            out.push(Finding::ok("env IDENTITY_ENDPOINT", format!("points at this broker ({ep})")));
        }
        if header.is_some() && imds.is_some() {
            out.push(Finding::warn(
                "env IMDS_ENDPOINT",
                "IMDS_ENDPOINT is set too (an Azure Arc leftover); some SDKs then pick Arc",
                "unset IMDS_ENDPOINT",
            ));
        }
    }
    if thumbprint.is_some() && header.is_some() {
        out.push(Finding::warn(
            "env IDENTITY_SERVER_THUMBPRINT",
            "set together with IDENTITY_ENDPOINT/IDENTITY_HEADER: every SDK switches to the Service Fabric protocol (HTTPS with a pinned certificate)",
            "unset IDENTITY_SERVER_THUMBPRINT unless `azbroker env` printed it",
        ));
    }
    if let Some(ep) = &msi {
        if !ours(ep) {
            let why = if endpoint.is_some() {
                "the SDKs prefer IDENTITY_*, but msrestazure/azureml-core use MSI_ENDPOINT and go there"
            } else {
                "SDKs without IDENTITY_* use it (Azure ML with MSI_SECRET, Cloud Shell without)"
            };
            out.push(Finding::warn(
                "env MSI_ENDPOINT",
                format!("points at {ep}, not at this broker; {why}"),
                "unset MSI_ENDPOINT MSI_SECRET (or point them at the broker)",
            ));
        } else if msi_secret.is_none() {
            out.push(Finding::warn(
                "env MSI_SECRET",
                "MSI_ENDPOINT without MSI_SECRET makes SDKs speak the Cloud Shell protocol",
                "export MSI_SECRET too, or unset MSI_ENDPOINT",
            ));
        }
    }
    if let Some(host) = var("AZURE_POD_IDENTITY_AUTHORITY_HOST")
        && !ours(&host)
    {
        out.push(Finding::warn(
            "env AZURE_POD_IDENTITY_AUTHORITY_HOST",
            format!("points at {host}, not at this broker: Python, JS and .NET send IMDS requests there"),
            "eval \"$(azbroker env --dialect imds)\" or unset it",
        ));
    }
    if let Some(id) = var("AZURE_CLIENT_ID") {
        let known = config.profiles.values().any(|p| {
            p.accept_any_client_id
                || p.name.as_str().eq_ignore_ascii_case(&id)
                || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(&id))
        });
        if !known {
            out.push(Finding::warn(
                "env AZURE_CLIENT_ID",
                format!("DefaultAzureCredential sends client_id={id}, which no profile accepts: requests get 400 Identity not found"),
                "add it to a profile's aliases, set accept_any_client_id = true on the default profile, or unset AZURE_CLIENT_ID",
            ));
        }
    }
    for (k, what) in [
        ("AZURE_CLIENT_SECRET", "EnvironmentCredential"),
        ("AZURE_CLIENT_CERTIFICATE_PATH", "EnvironmentCredential"),
        ("AZURE_FEDERATED_TOKEN_FILE", "WorkloadIdentityCredential"),
    ] {
        if var(k).is_some() && var("AZURE_TENANT_ID").is_some() {
            out.push(Finding::warn(
                &format!("env {k}"),
                format!("with AZURE_TENANT_ID set, DefaultAzureCredential uses {what} before managed identity, bypassing the broker"),
                &format!("unset {k} if you mean to use the broker"),
            ));
        }
    }
    let proxied = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"].iter().find_map(|k| var(k));
    if let Some(proxy) = proxied {
        let no_proxy = var("NO_PROXY").or_else(|| var("no_proxy")).unwrap_or_default();
        let bypassed = no_proxy
            .split(',')
            .map(str::trim)
            .any(|h| matches!(h, "*" | "localhost" | "127.0.0.1" | "127.0.0.0/8" | "::1"));
        if !bypassed {
            let shown = if proxy.contains('@') { "(a proxy with credentials)".to_owned() } else { proxy };
            out.push(Finding::warn(
                "env HTTP_PROXY",
                format!("an HTTP proxy is set ({shown}) and NO_PROXY does not exempt 127.0.0.1: some clients send their token requests through it, and the broker refuses proxied requests"),
                "export NO_PROXY=localhost,127.0.0.1 (keep your other entries)",
            ));
        }
    }
    if endpoint.is_none() && msi.is_none() && var("AZURE_POD_IDENTITY_AUTHORITY_HOST").is_none() {
        out.push(Finding::warn(
            "env",
            "no managed-identity variables are set in this shell: clients will not find the broker",
            "eval \"$(azbroker env)\" (or run programs with `azbroker run -- CMD`)",
        ));
    }
    out
}

/// True when `raw` (a URL) names one of the broker's loopback listeners.
fn points_here(raw: &str, general: &[SocketAddr], config: &Config) -> bool {
    let Ok(url) = Url::parse(raw) else { return false };
    let Some(port) = url.port_or_known_default() else { return false };
    let host_is_loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    host_is_loopback
        && (general
            .iter()
            .chain(config.profiles.values().flat_map(|p| p.listen.iter()))
            .any(|a| a.port() == port)
            || crate::daemon::profile_listeners::recorded_ports(config).contains(&port))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cli::doctor::Level;

    fn config() -> Config {
        Config::parse(
            "[server]\nlisten = [\"127.0.0.1:50342\"]\n[logins.a]\nkind = \"service-principal\"\ntenant = \"t.example\"\n\
             client_id = \"c\"\nclient_secret = \"s\"\n[profiles.p]\nlogin = \"a\"\naliases = [\"known-id\"]\n",
            None,
        )
        .unwrap()
    }

    fn run(vars: &[(&str, &str)]) -> Vec<Finding> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        check(&move |k: &str| map.get(k).cloned(), &config())
    }

    fn levels(f: &[Finding], check: &str) -> Vec<Level> {
        f.iter().filter(|x| x.check == check).map(|x| x.level).collect()
    }

    #[test]
    fn our_own_exports_are_fine() {
        let f = run(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:50342/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("NO_PROXY", "x"),
        ]);
        assert!(f.iter().all(|x| x.level == Level::Ok), "{f:?}");
    }

    #[test]
    fn endpoints_elsewhere_and_leftovers_are_reported_with_a_fix() {
        let f = run(&[
            ("IDENTITY_ENDPOINT", "http://169.254.169.254/metadata/identity/oauth2/token"),
            ("IDENTITY_HEADER", "h"),
            ("IDENTITY_SERVER_THUMBPRINT", "AB"),
            ("MSI_ENDPOINT", "http://localhost:8081/msi/auth"),
            ("AZURE_CLIENT_ID", "someone-else"),
            ("AZURE_CLIENT_SECRET", "x"),
            ("AZURE_TENANT_ID", "t"),
            ("HTTP_PROXY", "http://user:pw@proxy:3128"),
        ]);
        assert_eq!(levels(&f, "env IDENTITY_ENDPOINT"), [Level::Fail]);
        for check in [
            "env IDENTITY_SERVER_THUMBPRINT",
            "env MSI_ENDPOINT",
            "env AZURE_CLIENT_ID",
            "env AZURE_CLIENT_SECRET",
            "env HTTP_PROXY",
        ] {
            assert_eq!(levels(&f, check), [Level::Warn], "{check}: {f:?}");
        }
        assert!(f.iter().all(|x| x.level == Level::Ok || x.fix.is_some()), "every problem says what to do");
        let text = format!("{f:?}");
        assert!(!text.contains("user:pw"), "a proxy password is never printed");
    }

    #[test]
    fn known_client_ids_and_exempted_proxies_pass() {
        let f = run(&[
            ("IDENTITY_ENDPOINT", "http://localhost:50342/p/p/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("AZURE_CLIENT_ID", "KNOWN-ID"),
            ("HTTP_PROXY", "http://proxy:3128"),
            ("NO_PROXY", "corp.example, 127.0.0.1"),
        ]);
        assert!(f.iter().all(|x| x.level == Level::Ok), "{f:?}");
    }

    #[test]
    fn an_empty_shell_is_told_how_to_export() {
        let f = run(&[]);
        assert_eq!(f.len(), 1);
        assert!(f[0].fix.as_deref().unwrap().contains("azbroker env"));
    }
}
