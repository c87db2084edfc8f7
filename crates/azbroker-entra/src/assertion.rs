//! Client assertions for service principals that prove themselves with a JWT instead of a
//! secret (PROTOCOLS.md §12.4), used by `ServicePrincipalSource`:
//!
//! * [`certificate_assertion`]: a PEM file with the certificate (chain) and its RSA private key;
//!   each fetch signs a fresh assertion — PS256, `x5t#S256` = base64url(SHA-256 of the certificate),
//!   `aud` = the tenant's token endpoint, `iss` = `sub` = the client id, a random `jti`, valid
//!   for 10 minutes — and optionally sends the chain as `x5c` (subject-name/issuer auth);
//! * [`read_token_file`]: a federated token file (Kubernetes, GitHub OIDC, ...) re-read
//!   on every fetch, because its issuer rotates it.
//!
//! The files are re-read on every fetch, so rotation needs no restart; their contents never
//! appear in an error or a log line.

use std::path::Path;

use aws_lc_rs::{digest, rand, signature};
use azbroker_core::{Secret, UpstreamError, unix_now};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::user::random_string;

/// Lifetime of a signed assertion (MSAL uses the same).
const ASSERTION_LIFETIME_SECS: u64 = 600;

/// The signed client assertion for a request to `audience` (the tenant's token endpoint), from
/// the PEM file at `path` (read now).
pub async fn certificate_assertion(
    path: &Path,
    client_id: &str,
    audience: &str,
    send_chain: bool,
) -> Result<Secret, UpstreamError> {
    let shown = path.display().to_string();
    let pem =
        Zeroizing::new(tokio::fs::read(path).await.map_err(|e| {
            UpstreamError::Config(format!("cannot read certificate_file {shown}: {}", e.kind()))
        })?);
    sign_assertion(&pem, client_id, audience, send_chain)
        .map_err(|why| UpstreamError::Config(format!("certificate_file {shown}: {why}")))
}

/// Builds and signs the assertion JWT from a PEM holding the certificate(s) and the key.
pub fn sign_assertion(
    pem: &[u8],
    client_id: &str,
    audience: &str,
    send_chain: bool,
) -> Result<Secret, String> {
    let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|_| "the PEM certificate blocks are malformed".to_owned())?;
    let Some(leaf) = certs.first() else {
        return Err("no '-----BEGIN CERTIFICATE-----' block found".into());
    };
    let key =
        PrivateKeyDer::from_pem_slice(pem).map_err(|_| "no usable private key block found".to_owned())?;
    let pair = match &key {
        PrivateKeyDer::Pkcs8(k) => signature::RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(k) => signature::RsaKeyPair::from_der(k.secret_pkcs1_der()),
        _ => return Err("the private key is not an RSA key (PKCS#8 or PKCS#1)".into()),
    }
    .map_err(|_| "the private key is not a usable RSA key".to_owned())?;
    let mut header = serde_json::json!({
        "alg": "PS256",
        "typ": "JWT",
        "x5t#S256": URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, leaf.as_ref())),
    });
    if send_chain {
        header["x5c"] = certs.iter().map(|c| STANDARD.encode(c.as_ref())).collect::<Vec<_>>().into();
    }
    let now = unix_now();
    let claims = serde_json::json!({
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": random_string(16).expose(),
        "iat": now,
        "nbf": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(&signature::RSA_PSS_SHA256, &rand::SystemRandom::new(), input.as_bytes(), &mut sig)
        .map_err(|_| "signing the assertion failed".to_owned())?;
    Ok(Secret::new(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))))
}

/// The federated token in `path` (read now, trimmed).
pub async fn read_token_file(path: &Path) -> Result<Secret, UpstreamError> {
    let shown = path.display();
    let bytes = Zeroizing::new(
        tokio::fs::read(path)
            .await
            .map_err(|e| UpstreamError::Config(format!("cannot read token_file {shown}: {}", e.kind())))?,
    );
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| UpstreamError::Config(format!("token_file {shown} is not text")))?
        .trim();
    if text.is_empty() {
        return Err(UpstreamError::Config(format!("token_file {shown} is empty")));
    }
    Ok(Secret::new(text))
}
