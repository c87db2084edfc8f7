//! The CLI's side of the admin socket: one HTTP/1.1 request per call over the unix socket in the
//! runtime directory, JSON in and out. Errors say what to do (start the daemon, use the right
//! config, run as the daemon's user).

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::config::Config;

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
