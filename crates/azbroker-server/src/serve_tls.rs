//! The HTTPS listener (Service Fabric): the plain listener's accept loop with a TLS handshake in
//! front of HTTP (`conn::Server`): the connection is identified and admitted under the same
//! bounds — per listener and per local user — before its handshake, which is bounded in time and
//! counts as idle, so idle handshakes make room for real clients and never stop the accept loop.
//!
//! It never decides policy. The certificate and key come from the caller ([`tls_config`]); this
//! module never reads files.

use std::io;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::conn::Server;

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
/// the handshake; the decrypted stream is served under the same bounds as plain HTTP.
pub async fn serve_tls(listener: TcpListener, server: Server, config: Arc<ServerConfig>) -> io::Result<()> {
    server.serve_tls(listener, TlsAcceptor::from(config)).await
}
