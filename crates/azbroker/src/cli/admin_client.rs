//! The CLI's side of the admin socket: one HTTP/1.1 request per call over the unix socket in the
//! runtime directory, JSON in and out. Errors say what to do (start the daemon, use the right
//! config, run as the daemon's user).
//!
//! Before sending anything it checks that the socket and its directory belong to the expected
//! daemon — this user's own or root's (a system daemon) — so a socket another local user planted
//! (say in a `/tmp` fallback runtime directory) never sees a request or shows a device code.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::config::Config;
use crate::paths;

/// File name of the admin socket inside the runtime directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// How long one admin call may take (a login flow polls rather than holding a request open).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub fn socket_path(config: &Config) -> PathBuf {
    config.server.runtime_dir.join(ADMIN_SOCKET)
}

pub struct AdminClient {
    path: PathBuf,
}

impl AdminClient {
    pub fn new(config: &Config) -> Self {
        Self { path: socket_path(config) }
    }

    pub async fn get(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<(StatusCode, Value)> {
        self.call(Method::POST, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Result<(StatusCode, Value)> {
        self.call(Method::DELETE, path, None).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<(StatusCode, Value)> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(method, path, body)).await.map_err(|_| {
            anyhow!("the daemon did not answer on {} within {CALL_TIMEOUT:?}", self.path.display())
        })?
    }

    async fn call_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        check_owner(&self.path, paths::current_uid())?;
        let stream = UnixStream::connect(&self.path).await.map_err(|e| self.connect_error(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("cannot talk HTTP to the admin socket")?;
        let conn = tokio::spawn(conn);
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "azbroker-admin")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))
            .context("cannot build the admin request")?;
        let response = sender.send_request(request).await.context("the admin request failed")?;
        let status = response.status();
        let bytes = response.into_body().collect().await.context("cannot read the admin answer")?.to_bytes();
        conn.abort();
        let value: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("the daemon sent a non-JSON answer ({status})"))?;
        if status == StatusCode::FORBIDDEN {
            let why = value.get("error_description").and_then(Value::as_str).unwrap_or("refused");
            return Err(anyhow!("the daemon refused this user: {why}"));
        }
        Ok((status, value))
    }

    fn connect_error(&self, e: &std::io::Error) -> anyhow::Error {
        let path = self.path.display();
        match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => anyhow!(
                "no daemon answers on {path} (is `azbroker serve` running with the same config/runtime_dir?)"
            ),
            ErrorKind::PermissionDenied => anyhow!(
                "permission denied on {path}: only the daemon's own user and root may use its admin socket"
            ),
            _ => anyhow!("cannot connect to {path}: {e}"),
        }
    }
}

/// Refuses a socket, or socket directory, that is a symbolic link or belongs to neither `me` nor
/// root, and a directory others may write (a root-owned sticky one aside). What cannot be looked
/// at (absent, no permission) is left to `connect`, whose error says what to do.
fn check_owner(socket: &Path, me: u32) -> Result<()> {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    for (path, what) in [(dir, "its directory"), (socket, "the socket")] {
        let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
        let refuse = |why: String| {
            anyhow!(
                "refusing to use the admin socket {}: {what} {} {why}; another local user may have put it \
                 there to pose as the daemon. Remove it and restart `azbroker serve`, or set XDG_RUNTIME_DIR or \
                 runtime_dir to a directory of your own",
                socket.display(),
                path.display()
            )
        };
        if meta.file_type().is_symlink() {
            return Err(refuse("is a symbolic link".into()));
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(refuse(format!("belongs to uid {}, not to you (uid {me}) or root", meta.uid())));
        }
        let sticky_root = meta.uid() == 0 && meta.mode() & 0o1000 != 0;
        if meta.is_dir() && meta.mode() & 0o022 != 0 && !sticky_root {
            return Err(refuse(format!("may be written by other users (mode {:04o})", meta.mode() & 0o7777)));
        }
        if path == socket && !meta.file_type().is_socket() {
            return Err(refuse("is not a socket".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_socket_or_directory_of_another_user_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let run = base.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let socket = run.join(ADMIN_SOCKET);
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let me = paths::current_uid();
        check_owner(&socket, me).unwrap();
        // Judged as another user, a socket that is neither theirs nor root's is refused.
        if me != 0 {
            let err = check_owner(&socket, me + 1).unwrap_err().to_string();
            assert!(err.contains(&format!("belongs to uid {me}")), "{err}");
        }
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_owner(&socket, me).unwrap_err().to_string();
        assert!(err.contains("mode 0777") && err.contains(&run.display().to_string()), "{err}");
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        let err = check_owner(&link.join(ADMIN_SOCKET), me).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(check_owner(&base.path().join("absent/admin.sock"), me).is_ok(), "connect reports it");
    }
}
