//! Serving connections: our own accept loop over hyper's HTTP/1 connection builder, so that every
//! bound is ours to set (`axum::serve` exposes none of them).
//!
//! Per connection: the caller's uid is looked up once, right after accept, off the runtime
//! threads ([`crate::identity::tcp_owner_off_runtime`]), and every request on the connection carries it as a
//! [`Caller`] extension next to the usual `ConnectInfo<SocketAddr>`; a connection whose owner is
//! unknown carries no `Caller` (policy then refuses it). Bounds: the request head (431 over
//! [`Limits::max_head_bytes`]), header count, body size (413), the time to send a request head
//! (which also ends idle keep-alive connections and slowloris heads), the time to answer (503),
//! and the number of open connections — at that bound the longest-idle connection is closed to
//! make room, so idle connections can never lock out a real client.
//!
//! [`Server::serve_io`] serves any stream (`AsyncRead + AsyncWrite`), so a TLS listener or an
//! inherited socket gets the same bounds. This module decides no policy and builds no dialect
//! body; it never imposes a drain deadline (the caller owns shutdown timing).

mod registry;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use azbroker_core::Caller;
use http::header::CONTENT_LENGTH;
use http::{Request, StatusCode};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tower::ServiceExt;

use crate::body;
use crate::routes::Routes;
use registry::{Admission, Connections};

/// The header count hyper refuses (431) above when it is given no bound of its own.
const HYPER_MAX_HEADERS: usize = 100;

/// The bounds every connection is served under. The defaults admit every legitimate client (a
/// token request head is well under 1 KiB) while keeping a flood cheap.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Request line + headers; larger heads get 431.
    pub max_head_bytes: usize,
    /// Header fields per request; more get 431.
    pub max_headers: usize,
    /// Request body bytes; more get 413.
    pub max_body_bytes: usize,
    /// Time to receive a complete request head, counted from when the connection is ready for
    /// one (so it also ends idle keep-alive connections).
    pub header_read_timeout: Duration,
    /// Time from a complete head to the response (body reading and any upstream call included).
    pub request_timeout: Duration,
    /// Open connections; at the bound the longest-idle one is closed for a newcomer.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            max_connections: 512,
        }
    }
}

/// Serves `router` on `listener` with default [`Limits`] until `shutdown` fires, then lets
/// in-flight requests finish.
pub async fn serve<S: Routing>(
    listener: TcpListener,
    router: S,
    shutdown: CancellationToken,
) -> io::Result<()> {
    Server::new(router, Limits::default(), shutdown).serve_tcp(listener).await
}

/// What a [`Server`] serves: a listener's [`Routes`] (or, in tests, any axum `Router`).
pub trait Routing: Clone + Send + Sync + 'static {
    /// The response to `req`. [`Routes`] answers in place: its future is part of the
    /// connection's, with no box and no `tower` readiness step per request.
    fn serve(&self, req: axum::extract::Request) -> impl Future<Output = axum::response::Response> + Send;
}

impl Routing for Routes {
    fn serve(&self, req: axum::extract::Request) -> impl Future<Output = axum::response::Response> + Send {
        self.dispatch(req)
    }
}

impl Routing for axum::Router {
    fn serve(&self, req: axum::extract::Request) -> impl Future<Output = axum::response::Response> + Send {
        let router = self.clone();
        async move {
            match router.oneshot(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    }
}

/// One route table served on any number of listeners and streams under one set of [`Limits`] and
/// one connection bound.
pub struct Server<S = Routes> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Server<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<S> {
    router: S,
    limits: Limits,
    conns: Arc<Connections>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl<S: Routing> Server<S> {
    pub fn new(router: S, limits: Limits, shutdown: CancellationToken) -> Self {
        let conns = Connections::new(limits.max_connections);
        Self { inner: Arc::new(Inner { router, limits, conns, shutdown, tasks: TaskTracker::new() }) }
    }

    /// Accepts on `listener` until shutdown, identifying each connection's local user; returns
    /// once every connection this server serves has finished.
    pub async fn serve_tcp(&self, listener: TcpListener) -> io::Result<()> {
        let shutdown = &self.inner.shutdown;
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let admission = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.inner.conns.admit(shutdown) => a,
            };
            let server = self.clone();
            self.inner.tasks.spawn(async move {
                let caller = tcp_caller(&stream, remote).await;
                server.serve_admitted(stream, remote, caller, admission).await;
            });
        }
        drop(listener);
        self.drained().await;
        Ok(())
    }

    /// Serves one already-accepted stream (TLS, inherited sockets) under this server's bounds.
    /// `caller` is the connection's local user as the caller determined it (see
    /// [`crate::identity`]); `None` means unknown.
    pub async fn serve_io<IO>(&self, io: IO, remote: SocketAddr, caller: Option<Caller>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let admission = self.inner.conns.admit(&self.inner.shutdown).await;
        let server = self.clone();
        let _ = self.inner.tasks.spawn(server.serve_admitted(io, remote, caller, admission)).await;
    }

    /// Waits until every connection served so far has finished (after shutdown).
    pub async fn drained(&self) {
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.tasks.reopen();
    }

    /// The token whose cancellation stops this server (and every listener it serves).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.inner.conns.open()
    }

    async fn serve_admitted<IO>(
        self,
        io: IO,
        remote: SocketAddr,
        caller: Option<Caller>,
        admission: Admission,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.inner.limits;
        let admission = Arc::new(admission);
        let close = admission.close.clone();
        let service = {
            let (inner, admission) = (self.inner.clone(), admission.clone());
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let (inner, admission) = (inner.clone(), admission.clone());
                async move { Ok::<_, Infallible>(handle(&inner, &admission, remote, caller, req).await) }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_head_bytes)
            .max_buf_size((limits.max_head_bytes * 2).max(8192));
        // Under hyper's own bound the header count is checked in `handle`: handing hyper a bound
        // makes it fill two index arrays of that size on every request.
        if limits.max_headers > HYPER_MAX_HEADERS {
            builder.max_headers(limits.max_headers);
        }
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = close.cancelled() => {
                if !self.inner.shutdown.is_cancelled() && admission.is_idle() {
                    // Evicted while idle: nothing to finish, close now.
                    return;
                }
                // Shutdown (or a request that just started) finishes what is in flight; the
                // caller owns the drain deadline.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, peer = %remote, "connection ended with an error");
        }
    }
}

/// The connection's local user, looked up once (on the blocking pool); logged when unknown.
pub(crate) async fn tcp_caller(stream: &TcpStream, remote: SocketAddr) -> Option<Caller> {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::trace!(error = %e, "cannot set TCP_NODELAY");
    }
    let local = stream.local_addr().ok()?;
    match crate::identity::tcp_owner_off_runtime(local, remote).await {
        Ok(uid) => Some(Caller { uid }),
        Err(e) => {
            tracing::debug!(peer = %remote, error = %e, "cannot determine the connection's local user");
            None
        }
    }
}

async fn handle<S: Routing>(
    inner: &Inner<S>,
    admission: &Admission,
    remote: SocketAddr,
    caller: Option<Caller>,
    req: Request<Incoming>,
) -> axum::response::Response {
    let _busy = admission.busy();
    let limits = &inner.limits;
    if req.headers().len() > limits.max_headers {
        return body::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "invalid_request",
            "The request has too many header fields",
        );
    }
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return body::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "The request body is too large",
        );
    }
    let mut req = req.map(|b| axum::body::Body::new(Limited::new(b, limits.max_body_bytes)));
    req.extensions_mut().insert(ConnectInfo(remote));
    if let Some(caller) = caller {
        req.extensions_mut().insert(caller);
    }
    match tokio::time::timeout(limits.request_timeout, inner.router.serve(req)).await {
        Ok(response) => response,
        Err(_) => body::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The broker did not answer in time; retry shortly",
        ),
    }
}
