//! The Service Fabric HTTPS listener's certificate: configured (`[server] tls_cert_file` and
//! `tls_key_file`), or a self-signed one generated once and kept with its key in the state
//! directory (0600), so the thumbprint clients pin (`IDENTITY_SERVER_THUMBPRINT`, the SHA-1 of the
//! leaf's DER) survives restarts. `serve` publishes a world-readable copy of the public
//! certificate in the runtime directory for `NODE_EXTRA_CA_CERTS` (Node does not pin; it verifies),
//! and beside it a Java trust store holding it and the system's CA roots (`JAVA_TOOL_OPTIONS`:
//! MSAL4J does not pin either; see [`trust_store`]).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;
use crate::daemon::owned_dir::OwnedDir;
use crate::daemon::{state, trust_store};

/// In the state directory: the generated certificate and its private key.
pub const CERT_FILE: &str = "service-fabric.crt";
pub const KEY_FILE: &str = "service-fabric.key";

/// A certificate chain, its key and the leaf's thumbprint.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Upper-case hex SHA-1 of the leaf certificate's DER (40 characters).
    pub thumbprint: String,
    cert_pem: Vec<u8>,
}

/// The configured identity, or the generated one (created on first use).
pub fn load_or_create(config: &Config) -> Result<TlsIdentity> {
    if let Some((cert, key)) = &config.server.dialects.tls_cert {
        return read(cert, key);
    }
    let dir = &config.server.state_dir;
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if cert.exists() && key.exists() {
        return read(&cert, &key);
    }
    state::ensure_private_dir(dir)?;
    let (cert_pem, key_pem) = generate(&config.server.dialects.tls_listen)?;
    // Key first: a certificate without its key on disk would be unusable after a crash.
    state::write_private(&key, key_pem.as_bytes())?;
    state::write_private(&cert, cert_pem.as_bytes())?;
    read(&cert, &key)
}

/// Where the public certificate copy lives (`NODE_EXTRA_CA_CERTS`).
pub fn public_cert_path(config: &Config) -> PathBuf {
    config.server.runtime_dir.join(CERT_FILE)
}

/// Writes the public certificate (only) to the runtime directory, world-readable, and the Java
/// trust store made of the leaf and the system's CA roots (rebuilt at every start, so it follows
/// a changed certificate or a changed system bundle). Returns both paths.
pub fn publish(config: &Config, identity: &TlsIdentity) -> Result<(PathBuf, PathBuf)> {
    let dir = OwnedDir::existing(&config.server.runtime_dir)?;
    let cert = dir.write(CERT_FILE, &identity.cert_pem, 0o644)?;
    let roots = trust_store::system_roots();
    let store = trust_store::pkcs12(&identity.chain[0], &roots);
    let store = dir.write(trust_store::FILE, &store, 0o644)?;
    tracing::debug!(path = %store.display(), system_roots = roots.len(), "Java trust store written");
    Ok((cert, store))
}

fn read(cert: &Path, key: &Path) -> Result<TlsIdentity> {
    let cert_pem = fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    let Some(leaf) = chain.first() else { bail!("{} holds no certificate", cert.display()) };
    let key_pem = fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("{} is not a PEM private key", key.display()))?;
    let thumbprint = thumbprint(leaf.as_ref());
    Ok(TlsIdentity { chain, key, thumbprint, cert_pem })
}

/// Upper-case hex SHA-1 of `der`, as Service Fabric clients compare it.
pub fn thumbprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
}

/// A self-signed certificate for localhost, the loopback addresses and every HTTPS listener.
fn generate(listen: &[SocketAddr]) -> Result<(String, String)> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    for addr in listen {
        let ip = addr.ip().to_string();
        if !names.contains(&ip) {
            names.push(ip);
        }
    }
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "azbroker Service Fabric endpoint");
    let key = rcgen::KeyPair::generate().context("cannot generate a key pair")?;
    let cert = params.self_signed(&key).context("cannot sign the certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_pinned_by_sha1() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::builtin();
        config.server.state_dir = dir.path().join("state");
        config.server.runtime_dir = dir.path().join("run");
        let a = load_or_create(&config).unwrap();
        let b = load_or_create(&config).unwrap();
        assert_eq!(a.thumbprint, b.thumbprint, "kept across loads");
        assert_eq!(a.thumbprint.len(), 40);
        assert!(a.thumbprint.bytes().all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
        use std::os::unix::fs::MetadataExt;
        for f in [CERT_FILE, KEY_FILE] {
            assert_eq!(fs::metadata(config.server.state_dir.join(f)).unwrap().mode() & 0o777, 0o600, "{f}");
        }
        fs::create_dir_all(&config.server.runtime_dir).unwrap();
        let (public, store) = publish(&config, &a).unwrap();
        assert_eq!(fs::metadata(&public).unwrap().mode() & 0o777, 0o644);
        let text = fs::read_to_string(&public).unwrap();
        assert!(text.contains("BEGIN CERTIFICATE") && !text.contains("PRIVATE KEY"));
        assert_eq!((public.clone(), store.clone()), (public_cert_path(&config), trust_store::path(&config)));
        assert_eq!(fs::metadata(&store).unwrap().mode() & 0o777, 0o644);
        // The store: our certificate under its alias and every system root, all trusted by Java.
        let entries = trust_store::tests::parse(&fs::read(&store).unwrap());
        let roots = trust_store::system_roots();
        assert_eq!(entries.len(), 1 + roots.len());
        assert!(roots.len() > 10, "the system's roots are in it");
        assert_eq!(
            (entries[0].alias.as_str(), entries[0].der.as_slice()),
            (trust_store::OWN_ALIAS, a.chain[0].as_ref())
        );
        assert!(entries.iter().all(|e| e.trusted));
        for (entry, root) in entries[1..].iter().zip(&roots) {
            assert_eq!(entry.der, root.as_ref());
        }
        // Rewritten (not followed) when published again, e.g. after the certificate changed.
        let elsewhere = dir.path().join("elsewhere");
        fs::remove_file(&store).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &store).unwrap();
        publish(&config, &a).unwrap();
        assert!(!elsewhere.exists() && !fs::symlink_metadata(&store).unwrap().file_type().is_symlink());
        assert_eq!(thumbprint(a.chain[0].as_ref()), a.thumbprint);
    }

    #[test]
    fn configured_files_are_used_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = generate(&[]).unwrap();
        let (cert, key) = (dir.path().join("my.crt"), dir.path().join("my.key"));
        fs::write(&cert, &cert_pem).unwrap();
        fs::write(&key, &key_pem).unwrap();
        let mut config = Config::builtin();
        config.server.state_dir = dir.path().join("state");
        config.server.dialects.tls_cert = Some((cert.clone(), key.clone()));
        let id = load_or_create(&config).unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        assert_eq!(id.thumbprint, thumbprint(der.as_ref()));
        assert!(!config.server.state_dir.join(CERT_FILE).exists(), "nothing generated");
        fs::write(&key, "not a key").unwrap();
        let err = load_or_create(&config).err().unwrap();
        assert!(format!("{err:#}").contains("my.key"), "{err:#}");
    }
}
