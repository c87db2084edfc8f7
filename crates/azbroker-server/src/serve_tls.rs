//! The HTTPS serve loop (Service Fabric): TLS handshakes run in their own tasks, bounded in number
//! and time, so a slow or hostile client cannot stall others; a finished handshake's stream is
//! served by the same connection code as plain HTTP (`conn::Server`: limits, peer address and
//! caller uid for the guards and the access policy, graceful shutdown).
//!
//! It never decides policy. The certificate and key come from the caller ([`tls_config`]); this
//! module never reads files.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::task::TaskTracker;

use crate::conn::Server;

/// A handshake that has not finished by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 128;

/// A rustls server config (TLS 1.2 and 1.3, aws-lc-rs) for one certificate chain and its key.
pub fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, tokio_rustls::rustls::Error> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `server`'s router over TLS on `listener` until the server's shutdown fires, then lets
/// in-flight requests finish. Each connection's local user is looked up on the TCP socket before
/// the handshake, and the decrypted stream is served by [`Server::serve_io`] under the same
/// bounds as plain HTTP.
pub async fn serve_tls(listener: TcpListener, server: Server, config: Arc<ServerConfig>) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let shutdown = server.shutdown_token();
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let handshakes = TaskTracker::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "TLS listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, server) = (acceptor.clone(), server.clone());
        handshakes.spawn(async move {
            // In the connection's own task: the lookup must not hold up the accept loop.
            let caller = crate::conn::tcp_caller(&tcp, peer).await;
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            drop(permit);
            match handshake {
                Ok(Ok(stream)) => server.serve_io(stream, peer, caller).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    handshakes.close();
    handshakes.wait().await;
    Ok(())
}
