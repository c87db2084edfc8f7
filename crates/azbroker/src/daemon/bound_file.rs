//! `runtime_dir/listeners.json`: the addresses the daemon actually bound (so a config may ask
//! for port 0), written once after every listener is bound and before readiness is announced,
//! atomically with mode 0600, and removed when the daemon stops. Scripts and the end-to-end tests
//! read it instead of guessing free ports.
//!
//! It holds addresses and the admin socket's path only, never a secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Result;
use azbroker_core::ProfileName;
use azbroker_core::admin_api::SocketKind;
use serde::Serialize;

use crate::config::Config;
use crate::daemon::state;
use crate::daemon::status_info::Origin;

/// The file's name inside `runtime_dir`.
pub(crate) const FILE_NAME: &str = "listeners.json";

/// The written file; dropping it removes the file.
pub(crate) struct BoundFile {
    path: PathBuf,
}

impl Drop for BoundFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes the file for the token listeners (`tokens`: address and profile, `None` for the
/// general ones), the extra listeners (`extras`: address and kind, e.g. `https`) and the admin
/// socket.
pub(crate) fn write(
    config: &Config,
    tokens: &[(SocketAddr, Option<ProfileName>, Origin)],
    extras: &[(SocketAddr, SocketKind)],
    admin: &Path,
) -> Result<BoundFile> {
    let listeners = tokens
        .iter()
        .map(|(address, profile, _)| Listener { kind: "http", address: *address, profile: profile.as_ref() })
        .chain(extras.iter().map(|(address, kind)| Listener {
            kind: kind.as_str(),
            address: *address,
            profile: None,
        }))
        .collect();
    let file = Contents { pid: std::process::id(), listeners, admin_socket: admin };
    let path = config.server.runtime_dir.join(FILE_NAME);
    let mut json = serde_json::to_vec_pretty(&file)?;
    json.push(b'\n');
    state::write_private(&path, &json)?;
    Ok(BoundFile { path })
}

#[derive(Serialize)]
struct Contents<'a> {
    pid: u32,
    listeners: Vec<Listener<'a>>,
    admin_socket: &'a Path,
}

#[derive(Serialize)]
struct Listener<'a> {
    /// `http` (a token listener), `https` (Service Fabric), `imds-link-local`.
    kind: &'a str,
    address: SocketAddr,
    profile: Option<&'a ProfileName>,
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn written_private_with_every_address_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::builtin();
        config.server.runtime_dir = dir.path().to_path_buf();
        let profile = ProfileName::parse("work").unwrap();
        let tokens = [
            ("127.0.0.1:41000".parse().unwrap(), None, Origin::Config),
            ("[::1]:41001".parse().unwrap(), Some(profile), Origin::Systemd),
        ];
        let extras = [("127.0.0.1:41002".parse().unwrap(), SocketKind::Https)];
        let file = write(&config, &tokens, &extras, &dir.path().join("admin.sock")).unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let listeners = json["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 3);
        assert_eq!(listeners[0]["address"], "127.0.0.1:41000");
        assert_eq!(listeners[0]["profile"], serde_json::Value::Null);
        assert_eq!(listeners[1]["profile"], "work");
        assert_eq!(listeners[2]["kind"], "https");
        assert_eq!(json["admin_socket"], dir.path().join("admin.sock").display().to_string());
        drop(file);
        assert!(!path.exists());
    }
}
