//! The CLI's side of the admin socket: one HTTP/1.1 request per call over the unix socket in the
//! runtime directory. Requests and answers are the typed values of `azbroker_core::admin_api`,
//! the same ones the daemon serialises; a refusal comes back as [`Refused`] with the daemon's
//! [`ErrorBody`]. Errors say what to do (start the daemon, use the right config, run as the
//! daemon's user).
//!
//! Before sending anything it checks that the socket and its directory belong to the expected
//! daemon — this user's own or root's (a system daemon) — so a socket another local user planted
//! (say in a `/tmp` fallback runtime directory) never sees a request or shows a device code.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use azbroker_core::admin_api::{ErrorBody, ReloadAnswer};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::config::Config;
use crate::paths;

/// File name of the admin socket inside the runtime directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

/// The system daemon's admin socket, which a user's CLI talks to when no daemon of their own runs.
pub const SYSTEM_SOCKET: &str = "/run/azbroker/admin.sock";

/// How long one admin call may take (a login flow polls rather than holding a request open).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub fn socket_path(config: &Config) -> PathBuf {
    config.server.runtime_dir.join(ADMIN_SOCKET)
}

/// An admin request the daemon refused: its status and error body. `Display` is the daemon's
/// sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.body.fmt(f)
    }
}

/// What the daemon answered: the typed answer, or its refusal.
pub type Answer<T> = std::result::Result<T, Refused>;

pub struct AdminClient {
    path: PathBuf,
}

impl AdminClient {
    pub fn new(config: &Config) -> Self {
        Self { path: choose_socket(socket_path(config), Path::new(SYSTEM_SOCKET), paths::current_uid()) }
    }

    /// Whether this CLI is a local user talking to root's daemon (a shared machine): then every
    /// login command acts on the user's own personal login (`/v1/self/...`).
    pub fn is_self_service(&self) -> bool {
        let me = paths::current_uid();
        me != 0 && std::fs::metadata(&self.path).is_ok_and(|m| m.uid() == 0)
    }

    /// A client for the admin socket at `path` (e.g. the system daemon's).
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>> {
        let (status, bytes) = self.call(Method::GET, path, Bytes::new()).await?;
        decode(status, &bytes)
    }

    /// A `POST` with a JSON body.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<Answer<T>> {
        let body = Bytes::from(serde_json::to_vec(body)?);
        let (status, bytes) = self.call(Method::POST, path, body).await?;
        decode(status, &bytes)
    }

    /// A `POST` without a body.
    pub async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>> {
        let (status, bytes) = self.call(Method::POST, path, Bytes::new()).await?;
        decode(status, &bytes)
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>> {
        let (status, bytes) = self.call(Method::DELETE, path, Bytes::new()).await?;
        decode(status, &bytes)
    }

    /// `POST /v1/reload`: the daemon answers with a [`ReloadAnswer`] whether it took the config or
    /// rejected it.
    pub async fn reload(&self) -> Result<ReloadAnswer> {
        let (status, bytes) = self.call(Method::POST, "/v1/reload", Bytes::new()).await?;
        if status == StatusCode::OK || status == StatusCode::BAD_REQUEST {
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("the daemon sent an unexpected reload answer ({status})"));
        }
        match decode::<ReloadAnswer>(status, &bytes)? {
            Ok(answer) => Ok(answer),
            Err(refused) => Err(anyhow!("the daemon answered {status}: {refused}")),
        }
    }

    /// `GET /healthz`: only whether the daemon answers, and with what status.
    pub async fn health(&self) -> Result<StatusCode> {
        Ok(self.call(Method::GET, "/healthz", Bytes::new()).await?.0)
    }

    async fn call(&self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes)> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(method, path, body)).await.map_err(|_| {
            anyhow!("the daemon did not answer on {} within {CALL_TIMEOUT:?}", self.path.display())
        })?
    }

    async fn call_inner(&self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Bytes)> {
        check_owner(&self.path, paths::current_uid())?;
        let stream = UnixStream::connect(&self.path).await.map_err(|e| self.connect_error(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("cannot talk HTTP to the admin socket")?;
        let conn = tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "azbroker-admin")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .context("cannot build the admin request")?;
        let response = sender.send_request(request).await.context("the admin request failed")?;
        let status = response.status();
        let bytes = response.into_body().collect().await.context("cannot read the admin answer")?.to_bytes();
        conn.abort();
        if status == StatusCode::FORBIDDEN {
            let why = serde_json::from_slice::<ErrorBody>(&bytes)
                .map_or_else(|_| "refused".to_owned(), |b| b.error_description);
            return Err(anyhow!("the daemon refused this user: {why}"));
        }
        Ok((status, bytes))
    }

    fn connect_error(&self, e: &std::io::Error) -> anyhow::Error {
        let path = self.path.display();
        match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => anyhow!(
                "no daemon answers on {path} (is `azbroker serve` running with the same config/runtime_dir?)"
            ),
            ErrorKind::PermissionDenied => anyhow!(
                "permission denied on {path}: only the daemon's own user and root may use its admin socket \
                 (on a shared machine the administrator can let every user sign in as themselves with \
                 [server] self_service = true)"
            ),
            _ => anyhow!("cannot connect to {path}: {e}"),
        }
    }
}

/// The user's own daemon's socket, else — for a user other than root with no daemon of their own —
/// the system daemon's. Either is still checked by [`check_owner`] before use.
fn choose_socket(own: PathBuf, system: &Path, me: u32) -> PathBuf {
    if me != 0 && !own.exists() && system.exists() { system.to_owned() } else { own }
}

/// The Entra ID authority host and the Resource Manager endpoint the running daemon uses — the
/// embedded local authority's under `--local-authority` — or, when no daemon answers (or it
/// does not say), the config's. Never starts a daemon.
pub async fn endpoints_in_use(config: &Config) -> (url::Url, url::Url) {
    let status: Option<azbroker_core::admin_api::Status> =
        AdminClient::new(config).get("/v1/status").await.ok().and_then(Result::ok);
    let daemon = status.map(|s| s.daemon);
    let pick = |reported: Option<&String>, configured: &url::Url| {
        reported.and_then(|u| url::Url::parse(u).ok()).unwrap_or_else(|| configured.clone())
    };
    (
        pick(daemon.as_ref().and_then(|d| d.authority_host.as_ref()), &config.cloud.authority_host),
        pick(daemon.as_ref().and_then(|d| d.arm_endpoint.as_ref()), &config.cloud.arm_endpoint),
    )
}

/// A success body as `T`, any other as the daemon's refusal.
fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<Answer<T>> {
    if status.is_success() {
        let answer = serde_json::from_slice(bytes)
            .with_context(|| format!("the daemon sent an unexpected answer ({status})"))?;
        return Ok(Ok(answer));
    }
    let body: ErrorBody = serde_json::from_slice(bytes)
        .with_context(|| format!("the daemon sent a non-JSON answer ({status})"))?;
    Ok(Err(Refused { status, body }))
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

    #[test]
    fn a_user_without_a_daemon_of_their_own_talks_to_the_system_daemon() {
        let base = tempfile::tempdir().unwrap();
        let (own, system) = (base.path().join("own.sock"), base.path().join("system.sock"));
        assert_eq!(choose_socket(own.clone(), &system, 1000), own, "no system daemon either");
        std::fs::write(&system, b"").unwrap();
        assert_eq!(choose_socket(own.clone(), &system, 1000), system);
        assert_eq!(choose_socket(own.clone(), &system, 0), own, "root keeps its own");
        std::fs::write(&own, b"").unwrap();
        assert_eq!(choose_socket(own.clone(), &system, 1000), own, "a daemon of their own wins");
    }
}
