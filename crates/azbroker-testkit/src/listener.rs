//! A TCP listener for `axum::serve` that bounds concurrent connections: each accepted stream
//! holds a semaphore permit until it is dropped, and accepting waits while none is free. With a
//! [`PeerFilter`], a connection it refuses is closed before a byte is read.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::server::PeerFilter;

pub(crate) struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    admit: Option<PeerFilter>,
}

impl BoundedListener {
    pub(crate) fn new(inner: TcpListener, max_connections: usize, admit: Option<PeerFilter>) -> Self {
        BoundedListener { inner, permits: Arc::new(Semaphore::new(max_connections)), admit }
    }

    /// Whether the filter (if any) admits `peer`; a filter that cannot run refuses.
    async fn admits(&self, peer: SocketAddr) -> bool {
        let Some(PeerFilter(filter)) = self.admit.clone() else { return true };
        let Ok(local) = self.inner.local_addr() else { return false };
        tokio::task::spawn_blocking(move || filter(local, peer)).await.unwrap_or(false)
    }
}

impl Listener for BoundedListener {
    type Io = PermitStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring only fails if that invariant breaks; in that
        // case fall back to an unbounded permit rather than stop serving.
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok();
        let (stream, addr) = loop {
            let (stream, addr) = Listener::accept(&mut self.inner).await;
            if self.admits(addr).await {
                break (stream, addr);
            }
            tracing::debug!(peer = %addr, "connection refused by the peer filter");
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, "could not set TCP_NODELAY");
        }
        (PermitStream { stream, _permit: permit }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that gives its permit back when dropped.
pub(crate) struct PermitStream {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for PermitStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PermitStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
