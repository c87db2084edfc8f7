//! The Service Fabric dialect on its own router, and the real TLS serve loop.

use std::time::Duration;

use http::StatusCode;

use super::*;
use crate::service_fabric_router;

const Q: &str = "api-version=2019-07-01-preview&resource=https://vault.azure.net";

fn sf_app(st: AppState) -> Router {
    service_fabric_router(st, None).into_router().layer(MockConnectInfo(SocketAddr::from(LOOPBACK_PEER)))
}

fn sf(query: &str) -> http::request::Builder {
    get(&format!("/msi/token?{query}")).header("Secret", IDENTITY_HEADER)
}

#[tokio::test]
async fn success_body_and_error_shape() {
    let app = sf_app(state());
    let r = send(&app, sf(Q)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.keys(), ["access_token", "expires_on", "resource", "token_type"]);
    assert!(r.json["expires_on"].is_u64());
    let r = send(&app, get(&format!("/msi/token?{Q}"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["error"]["code"], "SecretHeaderNotFound");
    assert_eq!(r.json["error"]["correlationId"].as_str().unwrap().len(), 36);
    let r = send(&app, sf("api-version=2019-07-01-preview")).await;
    assert_eq!(
        (r.status, r.json["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ArgumentNullOrEmpty"))
    );
    let r = send(&app, sf(&format!("{Q}&principalId=nobody"))).await;
    assert_eq!(r.json["error"]["code"], "ManagedIdentityNotFound");
    // MSAL.NET's api-version and extra parameters are accepted.
    let r = send(&app, sf("api-version=2020-05-01&resource=https://vault.azure.net&xms_cc=cp1")).await;
    assert_eq!(r.status, StatusCode::OK);
    // Only Service Fabric lives on this listener.
    let r = send(&app, get(&format!("/metadata/identity/oauth2/token?{Q}")).header("Metadata", "true")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn token_sha256_to_refresh_gets_a_different_token() {
    let st = state();
    revocation_gets_a_different_token(&st, &sf_app(st.clone()), sf).await;
}

/// Token revocation as MSAL sends it (Service Fabric and App Service): the token named by
/// `token_sha256_to_refresh` is replaced by a fresh one from upstream (with or without `xms_cc`);
/// an unrelated hash gets the cached token; a malformed one is 400. `request(query)` builds the
/// dialect's request for `query`.
pub(super) async fn revocation_gets_a_different_token(
    st: &AppState,
    app: &Router,
    request: impl Fn(&str) -> http::request::Builder,
) {
    const Q: &str = "api-version=2019-08-01&resource=https://vault.azure.net";
    let first = send(app, request(Q)).await;
    let cached = send(app, request(&format!("{Q}&xms_cc=cp1"))).await;
    assert_eq!(first.str("access_token"), cached.str("access_token"), "xms_cc alone changes nothing");
    let hash = azbroker_core::secret::sha256_hex(first.str("access_token").as_bytes());
    let calls = st.engine().stats().upstream_calls;
    let fresh = send(app, request(&format!("{Q}&token_sha256_to_refresh={hash}&xms_cc=cp1,cp2"))).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.json);
    assert_ne!(fresh.str("access_token"), first.str("access_token"));
    assert_eq!(st.engine().stats().upstream_calls, calls + 1);
    // The new token is cached; naming an unrelated hash does not refresh again.
    let other = "0".repeat(64);
    let r = send(app, request(&format!("{Q}&token_sha256_to_refresh={other}"))).await;
    assert_eq!(r.str("access_token"), fresh.str("access_token"));
    let upper = azbroker_core::secret::sha256_hex(fresh.str("access_token").as_bytes()).to_ascii_uppercase();
    let r = send(app, request(&format!("{Q}&token_sha256_to_refresh={upper}"))).await;
    assert_ne!(r.str("access_token"), fresh.str("access_token"), "the hash is compared case-insensitively");
    let r = send(app, request(&format!("{Q}&token_sha256_to_refresh=nothex"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tls_loop_serves_and_stops() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = self_signed();
    let config = crate::tls_config(vec![key.0.clone()], key.1).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let server =
        crate::Server::new(service_fabric_router(state(), None), crate::Limits::default(), cancel.clone());
    let server = tokio::spawn(crate::serve_tls(listener, server, config));
    // A plain-HTTP client is not served (the handshake fails) and does not stop the listener.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}

/// A throwaway self-signed certificate for localhost.
fn self_signed() -> (
    tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key =
        tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    (cert.cert.der().clone(), key)
}
