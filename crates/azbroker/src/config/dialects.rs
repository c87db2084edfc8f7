//! The `[server]` keys of the dialects beyond the plain HTTP listener: the Service Fabric HTTPS
//! listener and its certificate, the Azure ML and native-API secrets, the Arc key-file group, and
//! the IMDS-on-169.254.169.254 mode. Parsed into typed values with every problem reported.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::reader::{Problems, Section};

/// The keys this module owns, for `[server]`'s unknown-key check.
pub const KEYS: &[&str] = &[
    "tls_listen",
    "tls_cert_file",
    "tls_key_file",
    "msi_secret_file",
    "native_key_file",
    "arc_group",
    "imds_link_local",
    "force_link_local",
    "container_listen",
];

#[derive(Debug, Clone)]
pub struct DialectConfig {
    /// HTTPS listeners (Service Fabric). Empty: no HTTPS listener.
    pub tls_listen: Vec<SocketAddr>,
    /// A certificate chain and key (PEM) to use instead of the generated self-signed pair.
    pub tls_cert: Option<(PathBuf, PathBuf)>,
    /// Files holding `MSI_SECRET` / `AZD_AUTH_KEY`; generated in state_dir when absent.
    pub msi_secret_file: Option<PathBuf>,
    pub native_key_file: Option<PathBuf>,
    /// The group (name, gid) that may read Arc key files, besides the daemon's user.
    pub arc_group: Option<(String, u32)>,
    /// Serve IMDS on 169.254.169.254:80 (adds the address to `lo`).
    pub imds_link_local: bool,
    /// Start the link-local mode even when something already answers on 169.254.169.254:80.
    pub force_link_local: bool,
    /// Container-facing listeners (a bridge's gateway address): served only with a client key.
    pub container_listen: Vec<SocketAddr>,
}

impl Default for DialectConfig {
    fn default() -> Self {
        Self {
            tls_listen: vec![SocketAddr::from(([127, 0, 0, 1], 50343))],
            tls_cert: None,
            msi_secret_file: None,
            native_key_file: None,
            arc_group: None,
            imds_link_local: false,
            force_link_local: false,
            container_listen: Vec::new(),
        }
    }
}

/// Reads the dialect keys of `[server]`.
/// `allow_non_loopback`: the `[server]` key of that name (non-loopback listeners need it).
pub fn parse(s: &Section<'_>, p: &mut Problems, allow_non_loopback: bool) -> DialectConfig {
    let mut cfg = DialectConfig::default();
    if s.contains("tls_listen") {
        cfg.tls_listen = s.parsed_list("tls_listen", p, |raw| super::listen_addr(raw, allow_non_loopback));
    }
    match (s.str("tls_cert_file", p), s.str("tls_key_file", p)) {
        (Some(c), Some(k)) => cfg.tls_cert = Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => {}
        _ => p.push(&s.path, "set both tls_cert_file and tls_key_file, or neither"),
    }
    cfg.msi_secret_file = s.str("msi_secret_file", p).map(PathBuf::from);
    cfg.native_key_file = s.str("native_key_file", p).map(PathBuf::from);
    cfg.arc_group = s.parsed("arc_group", p, |name| {
        group_id(name).map(|gid| (name.to_owned(), gid)).ok_or("no such group in /etc/group")
    });
    cfg.imds_link_local = s.bool("imds_link_local", p).unwrap_or(false);
    cfg.force_link_local = s.bool("force_link_local", p).unwrap_or(false);
    cfg.container_listen = s.parsed_list("container_listen", p, container_addr);
    cfg
}

/// A `container_listen` address: any local address but the unspecified one (which would serve
/// every network this machine is on). Needs no `allow_non_loopback`: only client keys are served.
fn container_addr(raw: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = raw.parse().map_err(|_| "not an IP:port address".to_owned())?;
    if addr.ip().is_unspecified() {
        return Err("must be one local address (a container bridge's gateway, e.g. docker0's 172.17.0.1), \
                    not the unspecified address"
            .to_owned());
    }
    Ok(addr)
}

/// The gid of group `name` (or a numeric gid as given), from `/etc/group`.
pub fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then(|| fields.nth(1)?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_resolve_by_name_or_number() {
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("4242"), Some(4242));
        assert_eq!(group_id("no-such-group-azbroker"), None);
    }
}
