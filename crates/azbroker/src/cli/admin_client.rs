//! The CLI's side of the admin socket: one HTTP/1.1 request per call over the unix socket in the
//! runtime directory. Requests and answers are the typed values of `azbroker_core::admin_api`,
//! the same ones the daemon serialises; a refusal comes back as [`Refused`] with the daemon's
//! [`ErrorBody`]. Errors say what to do (start the daemon, use the right config, run as the
//! daemon's user).

use std::io::ErrorKind;
use std::path::PathBuf;
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

/// File name of the admin socket inside the runtime directory.
pub const ADMIN_SOCKET: &str = "admin.sock";

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
        Self { path: socket_path(config) }
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
                "permission denied on {path}: only the daemon's own user and root may use its admin socket"
            ),
            _ => anyhow!("cannot connect to {path}: {e}"),
        }
    }
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
