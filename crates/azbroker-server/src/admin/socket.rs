//! The admin socket file and its serve loop: bound at mode 0600, a stale file from a crashed
//! daemon replaced, a live one never stolen; served under the token listeners' [`Limits`] (per
//! user and in all, head and request timeouts), so `admin_group` members cannot exhaust the
//! daemon's file descriptors.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::Router;
use azbroker_core::Caller;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::PeerCred;
use crate::conn::{Limits, Server};

/// Binds `path` (mode 0600). A socket file nobody answers on is removed first; if another
/// process answers there, this fails with `AddrInUse` rather than taking the socket over.
pub async fn bind_admin_socket(path: &Path) -> io::Result<UnixListener> {
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) => {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another daemon is answering on {}", path.display()),
                ));
            }
            tokio::fs::remove_file(path).await?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bind under a restrictive umask-independent mode: create, then chmod before anyone can use
    // it for anything (the peer check guards the window in between).
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Lets members of group `gid` connect too (`admin_group`): the socket becomes 0660 with that
/// group. What they may do is still decided per connection by the [`super::PeerPolicy`].
pub fn share_with_group(path: &Path, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
}

/// Lets every local user connect (`self_service` on a shared machine): the socket becomes 0666.
/// What each may do is still decided per connection, by uid, by the [`super::PeerPolicy`].
pub fn open_to_everyone(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

/// Serves `router` on `listener` under `limits` until `shutdown` fires, then lets in-flight
/// requests finish. Every request carries the connection's [`PeerCred`] as `ConnectInfo`; each
/// peer uid's connections count against its own share.
pub async fn serve_unix(
    listener: UnixListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let server = Server::new(router, limits, shutdown);
    server
        .serve_unix(listener, |stream| {
            let cred = PeerCred::of(stream);
            let caller = (cred.uid != u32::MAX).then_some(Caller { uid: cred.uid });
            (caller, cred)
        })
        .await
}
