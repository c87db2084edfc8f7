//! The serve loop: accepts connections on one listener, records each peer's address for the
//! guards, and shuts down gracefully (no new connections, in-flight requests finish).
//!
//! It never decides policy and never imposes a drain deadline; the caller owns both the
//! cancellation token and how long it is willing to wait.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves until `shutdown` fires, then finishes in-flight requests (graceful). Uses connect info
/// (peer `SocketAddr`).
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> io::Result<()> {
    // Token responses are small and latency-bound; do not let Nagle hold them back.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::trace!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
