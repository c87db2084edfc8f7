//! The `kind`-specific keys of a `[logins.NAME]` table: `user`, `service-principal` (secret or
//! certificate), `workload-identity`, `azure-cli`. Each parser reports every problem it finds and
//! returns the typed [`LoginKind`] only when the table is complete.

use std::path::PathBuf;
use std::time::Duration;

use azbroker_core::Secret;
use azbroker_entra::managed_identity::Identity;
use azbroker_entra::{AZURE_CLI_CLIENT_ID, SecretRef};
use url::Url;

use super::reader::{Problems, Section};
use super::{LoginKind, duration};

/// Every kind this version knows, for error messages.
pub const KINDS: &str = "user, service-principal, workload-identity, azure-cli, managed-identity";
/// Default time allowed for one `az account get-access-token`.
pub const DEFAULT_CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses the kind-specific keys; `None` after reporting problems.
pub fn parse(kind: &str, l: &Section<'_>, p: &mut Problems) -> Option<LoginKind> {
    match kind {
        "user" => user(l, p),
        "service-principal" => service_principal(l, p),
        "workload-identity" => workload_identity(l, p),
        "azure-cli" => azure_cli(l, p),
        "managed-identity" => managed_identity(l, p),
        other => {
            p.push(&format!("{}.kind", l.path), format!("unknown kind '{other}' (expected one of: {KINDS})"));
            None
        }
    }
}

/// Whether a kind needs `tenant` (the others default to `organizations`).
pub fn requires_tenant(kind: &str) -> bool {
    matches!(kind, "service-principal" | "workload-identity")
}

fn non_empty(l: &Section<'_>, key: &str, p: &mut Problems) -> Option<String> {
    let v = l.str(key, p)?;
    if v.is_empty() {
        p.push(&format!("{}.{key}", l.path), "must not be empty");
        return None;
    }
    Some(v.to_owned())
}

fn user(l: &Section<'_>, p: &mut Problems) -> Option<LoginKind> {
    l.only(&["kind", "tenant", "client_id"], p);
    let client_id =
        if l.contains("client_id") { non_empty(l, "client_id", p)? } else { AZURE_CLI_CLIENT_ID.to_owned() };
    Some(LoginKind::User { client_id })
}

fn service_principal(l: &Section<'_>, p: &mut Problems) -> Option<LoginKind> {
    l.only(
        &[
            "kind",
            "tenant",
            "client_id",
            "client_secret",
            "client_secret_file",
            "certificate_file",
            "send_certificate_chain",
        ],
        p,
    );
    let client_id = l.required_str("client_id", p).map(str::to_owned);
    if client_id.as_deref().is_some_and(str::is_empty) {
        p.push(&format!("{}.client_id", l.path), "must not be empty");
    }
    let send_chain = l.bool("send_certificate_chain", p).unwrap_or(false);
    let secret = l.str("client_secret", p);
    let secret_file = l.str("client_secret_file", p);
    let certificate = l.str("certificate_file", p);
    let given =
        [secret.is_some(), secret_file.is_some(), certificate.is_some()].iter().filter(|b| **b).count();
    if given > 1 {
        p.push(&l.path, "set exactly one of client_secret_file, client_secret and certificate_file");
        return None;
    }
    if send_chain && certificate.is_none() {
        p.push(&format!("{}.send_certificate_chain", l.path), "applies only with certificate_file");
    }
    let client_id = client_id.filter(|c| !c.is_empty())?;
    match (secret, secret_file, certificate) {
        (Some(""), _, _) => {
            p.push(&format!("{}.client_secret", l.path), "must not be empty");
            None
        }
        (Some(s), _, _) => {
            Some(LoginKind::ServicePrincipal { client_id, secret: SecretRef::Inline(Secret::new(s)) })
        }
        (_, Some(f), _) => {
            Some(LoginKind::ServicePrincipal { client_id, secret: SecretRef::File(PathBuf::from(f)) })
        }
        (_, _, Some(f)) => {
            Some(LoginKind::Certificate { client_id, certificate_file: PathBuf::from(f), send_chain })
        }
        (None, None, None) => {
            p.push(
                &l.path,
                "a service principal needs client_secret_file (preferred), client_secret or certificate_file",
            );
            None
        }
    }
}

fn workload_identity(l: &Section<'_>, p: &mut Problems) -> Option<LoginKind> {
    l.only(&["kind", "tenant", "client_id", "token_file"], p);
    let client_id = l.required_str("client_id", p).filter(|c| !c.is_empty()).map(str::to_owned);
    let token_file = l.required_str("token_file", p).map(PathBuf::from);
    Some(LoginKind::WorkloadIdentity { client_id: client_id?, token_file: token_file? })
}

fn azure_cli(l: &Section<'_>, p: &mut Problems) -> Option<LoginKind> {
    l.only(&["kind", "tenant", "command", "timeout"], p);
    let command =
        if l.contains("command") { PathBuf::from(non_empty(l, "command", p)?) } else { PathBuf::from("az") };
    let timeout = l.parsed("timeout", p, duration).unwrap_or(DEFAULT_CLI_TIMEOUT);
    Some(LoginKind::AzureCli { command, timeout })
}

fn managed_identity(l: &Section<'_>, p: &mut Problems) -> Option<LoginKind> {
    l.only(&["kind", "tenant", "client_id", "object_id", "resource_id", "endpoint"], p);
    let ids: Vec<(&str, String)> = ["client_id", "object_id", "resource_id"]
        .into_iter()
        .filter_map(|k| l.str(k, p).map(|v| (k, v.to_owned())))
        .collect();
    let identity = match ids.as_slice() {
        [] => Identity::SystemAssigned,
        [("client_id", v)] => Identity::ClientId(v.clone()),
        [("object_id", v)] => Identity::ObjectId(v.clone()),
        [(_, v)] => Identity::ResourceId(v.clone()),
        _ => {
            p.push(&l.path, "set at most one of client_id, object_id and resource_id");
            return None;
        }
    };
    let endpoint = l.parsed("endpoint", p, |raw| {
        let url = Url::parse(raw).map_err(|e| e.to_string())?;
        match (url.scheme(), url.host_str()) {
            ("http" | "https", Some(_)) => Ok(url),
            _ => Err("expected an http:// or https:// URL".to_owned()),
        }
    });
    if l.contains("endpoint") && endpoint.is_none() {
        return None;
    }
    Some(LoginKind::ManagedIdentity { identity, endpoint })
}
