//! A TLS front for a plain-HTTP test server: accepts HTTPS on a free loopback port with a freshly
//! generated self-signed certificate (for `127.0.0.1` and `localhost`) and relays the bytes to
//! the backend. The testkit's fake ARM sits behind it, because the Azure SDKs refuse to send a
//! bearer token over plain HTTP. The certificate's PEM is written to a file for
//! `REQUESTS_CA_BUNDLE`. Runs on its own runtime thread and stops when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct TlsFront {
    pub addr: SocketAddr,
    /// The self-signed certificate (PEM), to trust.
    pub ca_file: PathBuf,
    _stop: std::sync::mpsc::Sender<()>,
}

impl TlsFront {
    /// Fronts `backend`, writing the certificate to `dir/tls-front.pem`.
    pub fn start(backend: SocketAddr, dir: &Path) -> Result<Self> {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        let ca_file = dir.join("tls-front.pem");
        std::fs::write(&ca_file, cert.cert.pem())?;
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).map_err(anyhow::Error::msg)?;
        let chain: Vec<CertificateDer<'static>> = vec![cert.cert.der().clone()];
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("TLS front certificate")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                let stop = tokio::task::spawn_blocking(move || stop_rx.recv());
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                                let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await else { return };
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                            });
                        }
                    }
                }
            });
        });
        Ok(Self { addr, ca_file, _stop: stop_tx })
    }
}
