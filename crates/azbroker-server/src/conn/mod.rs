//! Serving connections: our own accept loops over hyper's HTTP/1 connection builder, so that
//! every bound is ours to set (`axum::serve` exposes none of them).
//!
//! Per connection: the caller's local user is looked up once, right after accept, in the
//! connection's own task and off the runtime threads ([`crate::identity::tcp_owner_off_runtime`];
//! `SO_PEERCRED` on the admin socket), and every request on the connection carries it as a
//! [`Caller`] extension next to the usual `ConnectInfo`; a connection whose owner is unknown
//! carries no `Caller` (policy then refuses it). Bounds: the request head (431 over
//! [`Limits::max_head_bytes`]), header count, body size (413), the time to send a request head
//! (which also ends idle keep-alive connections and slowloris heads), the time to send the body
//! once the server waits for it ([`Limits::body_read_timeout`]), the TLS handshake
//! ([`Limits::handshake_timeout`]), the time to answer (503), and the number of open connections,
//! per listener and per local user ([`registry`]): over a bound the longest-idle connection is
//! closed to make room, and when every candidate is in a request the newcomer gets an immediate
//! 503 with `Retry-After` — the accept loop never waits for a place, and one user can never hold
//! them all.
//!
//! This module decides no policy and builds no dialect body; it never imposes a drain deadline
//! (the caller owns shutdown timing).

mod deadline;
mod registry;

use std::convert::Infallible;
use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use azbroker_core::Caller;
use http::header::CONTENT_LENGTH;
use http::{Request, StatusCode};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::any::Any;
use std::future::Future;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tower::ServiceExt;

use crate::body;
use crate::routes::Routes;
use registry::{Admission, Connections, Owner, Refused};

/// The header count hyper refuses (431) above when it is given no bound of its own.
const HYPER_MAX_HEADERS: usize = 100;
/// The longest a refused connection is given to read its 503 before it is closed.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

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
    /// Time to receive the request body, counted from when the server first waits for it.
    pub body_read_timeout: Duration,
    /// Time to complete a TLS handshake (the HTTPS listener).
    pub handshake_timeout: Duration,
    /// Time from a complete head to the response (body reading and any upstream call included).
    pub request_timeout: Duration,
    /// Open connections per listener; at the bound the longest-idle one is closed for a newcomer.
    pub max_connections: usize,
    /// Open connections of one local user (of one peer address when the user is unknown);
    /// `None`: a quarter of [`Limits::max_connections`].
    pub max_connections_per_user: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            max_connections: 512,
            max_connections_per_user: None,
        }
    }
}

impl Limits {
    /// The connections one user may hold: [`Limits::max_connections_per_user`], at least 1 and
    /// at most [`Limits::max_connections`].
    pub fn per_user(&self) -> usize {
        let max = self.max_connections.max(1);
        self.max_connections_per_user.unwrap_or(max / 4).clamp(1, max)
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
    /// Connections accepted whose owner is being looked up.
    identifying: AtomicUsize,
    /// Refused connections being answered (503) and closed.
    refusing: AtomicUsize,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl<S: Routing> Server<S> {
    pub fn new(router: S, limits: Limits, shutdown: CancellationToken) -> Self {
        let conns = Connections::new(limits.max_connections, limits.per_user());
        let (identifying, refusing) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let tasks = TaskTracker::new();
        Self { inner: Arc::new(Inner { router, limits, conns, identifying, refusing, shutdown, tasks }) }
    }

    /// Accepts plain HTTP on `listener` until shutdown, identifying each connection's local
    /// user; returns once every connection this server serves has finished.
    pub async fn serve_tcp(&self, listener: TcpListener) -> io::Result<()> {
        self.accept_tcp(listener, None).await
    }

    /// [`Server::serve_tcp`] with a TLS handshake (bounded by [`Limits::handshake_timeout`])
    /// before HTTP. The connection is admitted — and counted against its user's share — before
    /// the handshake, and is idle (so the first to make room) until its first request.
    pub(crate) async fn serve_tls(&self, listener: TcpListener, tls: TlsAcceptor) -> io::Result<()> {
        self.accept_tcp(listener, Some(tls)).await
    }

    async fn accept_tcp(&self, listener: TcpListener, tls: Option<TlsAcceptor>) -> io::Result<()> {
        let shutdown = &self.inner.shutdown;
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
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
            let Some(identifying) = self.count(|inner| &inner.identifying) else {
                // A flood of connections still being identified: refuse the newcomer without a
                // task (the answer fits any empty send buffer; nothing waits for it).
                if tls.is_none() {
                    let _ = stream.try_write(&refusal(Refused::Full));
                }
                continue;
            };
            let (server, tls) = (self.clone(), tls.clone());
            self.inner.tasks.spawn(async move {
                // In the connection's own task: the lookup never holds up the accept loop.
                let caller = tcp_caller(&stream, remote).await;
                let owner = caller.map_or(Owner::Unknown(remote.ip()), |c| Owner::Uid(c.uid));
                let admitted = server.inner.conns.admit(owner, &server.inner.shutdown);
                drop(identifying);
                let admission = match admitted {
                    Ok(admission) => admission,
                    Err(why) => {
                        tracing::debug!(peer = %remote, ?owner, ?why, "connection refused: no place free");
                        // A TLS client cannot read a plain answer: it is closed unanswered.
                        if tls.is_none() {
                            server.refuse(stream, why).await;
                        }
                        return;
                    }
                };
                match tls {
                    None => server.serve_admitted(stream, remote, caller, admission).await,
                    Some(tls) => server.handshake(tls, stream, remote, caller, admission).await,
                }
            });
        }
        drop(listener);
        self.drained().await;
        Ok(())
    }

    /// Accepts on a unix socket (the admin socket) until shutdown. `identify` names each
    /// connection's user (`SO_PEERCRED`) and the `ConnectInfo` its requests carry.
    pub(crate) async fn serve_unix<I>(
        &self,
        listener: UnixListener,
        identify: impl Fn(&UnixStream) -> (Option<Caller>, I),
    ) -> io::Result<()>
    where
        I: Clone + Debug + Send + Sync + 'static,
    {
        let shutdown = &self.inner.shutdown;
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (caller, info) = identify(&stream);
            let owner =
                caller.map_or(Owner::Unknown(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), |c| Owner::Uid(c.uid));
            match self.inner.conns.admit(owner, shutdown) {
                Ok(admission) => {
                    self.inner.tasks.spawn(self.clone().serve_admitted(stream, info, caller, admission));
                }
                Err(why) => {
                    tracing::debug!(?owner, ?why, "admin connection refused: no place free");
                    self.inner.tasks.spawn(self.clone().refuse(stream, why));
                }
            }
        }
        drop(listener);
        self.drained().await;
        Ok(())
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

    /// One more connection in the phase `which` counts (identifying, refusing); `None` when that
    /// phase already holds as many as the listener admits connections.
    fn count(&self, which: fn(&Inner<S>) -> &AtomicUsize) -> Option<Counted<S>> {
        let before = which(&self.inner).fetch_add(1, Ordering::SeqCst);
        let counted = Counted { inner: self.inner.clone(), which };
        (before < self.inner.limits.max_connections).then_some(counted)
    }

    /// Answers a refused connection: the [`refusal`], then close, reading what the client sent
    /// meanwhile (so the close does not reset the connection before the client reads the
    /// answer) — for at most [`REFUSAL_TIME`]. Past the bound on refusals in progress, the
    /// answer is only written if it fits the send buffer at once.
    async fn refuse<IO: AsyncRead + AsyncWrite + Unpin>(self, mut io: IO, why: Refused) {
        let Some(_refusing) = self.count(|inner| &inner.refusing) else {
            // One attempt: `timeout` polls the write before it looks at the (zero) deadline.
            let _ = tokio::time::timeout(Duration::ZERO, io.write(&refusal(why))).await;
            return;
        };
        let answer = async {
            io.write_all(&refusal(why)).await?;
            io.shutdown().await?;
            let (mut sink, mut read) = ([0u8; 4096], 0);
            while read < 64 * 1024 {
                match io.read(&mut sink).await? {
                    0 => break,
                    n => read += n,
                }
            }
            Ok::<_, io::Error>(())
        };
        let _ = tokio::time::timeout(REFUSAL_TIME, answer).await;
    }

    /// The TLS handshake of an admitted connection, then its requests. An idle handshake is
    /// ended by the timeout, or sooner when its place is needed.
    async fn handshake(
        self,
        tls: TlsAcceptor,
        stream: TcpStream,
        remote: SocketAddr,
        caller: Option<Caller>,
        admission: Admission,
    ) {
        let handshake = tokio::time::timeout(self.inner.limits.handshake_timeout, tls.accept(stream));
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(peer = %remote, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(peer = %remote, "TLS handshake timed out"),
            },
            () = admission.close.cancelled() => return,
        };
        self.serve_admitted(stream, remote, caller, admission).await;
    }

    async fn serve_admitted<IO, I>(self, io: IO, info: I, caller: Option<Caller>, admission: Admission)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        I: Clone + Debug + Send + Sync + 'static,
    {
        let limits = &self.inner.limits;
        let admission = Arc::new(admission);
        let close = admission.close.clone();
        let service = {
            let (inner, admission, info) = (self.inner.clone(), admission.clone(), info.clone());
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let (inner, admission, info) = (inner.clone(), admission.clone(), info.clone());
                async move { Ok::<_, Infallible>(handle(&inner, &admission, info, caller, req).await) }
            })
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // A client may shut down its sending side once its request is out and still read
            // the answer; without this hyper takes the EOF for a client gone and drops the answer.
            .half_close(true)
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
            () = close.cancelled() => {
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
            tracing::debug!(error = %e, peer = ?info, "connection ended with an error");
        }
    }
}

/// Counts a connection in one phase (see [`Server::count`]) until it drops.
struct Counted<S> {
    inner: Arc<Inner<S>>,
    which: fn(&Inner<S>) -> &AtomicUsize,
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        (self.which)(&self.inner).fetch_sub(1, Ordering::SeqCst);
    }
}

/// The fast answer to a connection with no place: 503, `Retry-After: 1`, then close.
fn refusal(why: Refused) -> Vec<u8> {
    let description = match why {
        Refused::OwnerFull => {
            "This local user has as many connections open as the broker serves for one user; retry shortly"
        }
        Refused::Full => "The broker is serving as many connections as it can; retry shortly",
    };
    let json = format!(r#"{{"error":"busy","error_description":"{description}"}}"#);
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{json}",
        json.len()
    )
    .into_bytes()
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

async fn handle<S: Routing, I: Clone + Send + Sync + 'static>(
    inner: &Inner<S>,
    admission: &Admission,
    info: I,
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
    let mut req = req.map(|b| {
        axum::body::Body::new(deadline::Deadline::new(
            Limited::new(b, limits.max_body_bytes),
            limits.body_read_timeout,
        ))
    });
    // A TCP connection's peer and user travel with the request's task ([`Connection`]), which
    // spares every request an extension map (three allocations and their frees); other streams
    // (the admin socket's `PeerCred`) carry theirs as extensions.
    match (&info as &dyn Any).downcast_ref::<SocketAddr>() {
        Some(&peer) => {
            answer(limits, CONNECTION.scope(Connection { peer, caller }, inner.router.serve(req))).await
        }
        None => {
            req.extensions_mut().insert(ConnectInfo(info));
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            answer(limits, inner.router.serve(req)).await
        }
    }
}

/// `answer` under [`Limits::request_timeout`]. A cache hit answers on its first poll: no timer is
/// armed for it (a clock read, a timer entry and its drop per request).
async fn answer(
    limits: &Limits,
    answer: impl Future<Output = axum::response::Response>,
) -> axum::response::Response {
    tokio::pin!(answer);
    if let Poll::Ready(response) = std::future::poll_fn(|cx| Poll::Ready(answer.as_mut().poll(cx))).await {
        return response;
    }
    match tokio::time::timeout(limits.request_timeout, answer).await {
        Ok(response) => response,
        Err(_) => body::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "The broker did not answer in time; retry shortly",
        ),
    }
}

/// The TCP connection a request arrived on: its peer and, when the kernel said, its local user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Connection {
    pub(crate) peer: SocketAddr,
    pub(crate) caller: Option<Caller>,
}

tokio::task_local! {
    /// Set for the whole of a request's answer by [`handle`] (TCP streams only).
    static CONNECTION: Connection;
}

/// The request's local user: its connection's, else (a router driven without one: tests, the
/// admin socket) the [`Caller`] extension.
pub(crate) fn caller(ext: &http::Extensions) -> Option<Caller> {
    CONNECTION.try_with(|c| c.caller).unwrap_or_else(|_| ext.get::<Caller>().copied())
}

/// The request's peer address: its connection's, else the connect-info extension (real, or the
/// tests' mock). `None` — refused by the guards — when there is neither.
pub(crate) fn peer(ext: &http::Extensions) -> Option<SocketAddr> {
    CONNECTION.try_with(|c| Some(c.peer)).unwrap_or_else(|_| {
        ext.get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| ext.get::<axum::extract::connect_info::MockConnectInfo<SocketAddr>>().map(|m| m.0))
    })
}
