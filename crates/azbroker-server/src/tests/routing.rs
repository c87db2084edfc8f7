//! Guards, the route table's JSON 404/405, health endpoints, listener profiles and reloads.

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::json;

use super::*;

const IMDS_URI: &str =
    "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";
const APP_SERVICE_URI: &str = "/msi/token?api-version=2019-08-01&resource=https://vault.azure.net";

fn app_from(peer: &str) -> Router {
    router(state(), None).into_router().layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()))
}

#[tokio::test]
async fn non_loopback_peers_are_403_in_the_dialects_shape() {
    for peer in ["10.0.0.5:1234", "169.254.169.254:80", "[fe80::1]:1", "[::ffff:10.0.0.1]:1"] {
        let app = app_from(peer);
        let r = send(&app, get(IMDS_URI).header("Metadata", "true")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{peer}");
        assert_eq!(r.str("error"), "forbidden");
        let r = send(&app, get(APP_SERVICE_URI).header("X-IDENTITY-HEADER", IDENTITY_HEADER)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.json["statusCode"], 403);
        for path in ["/healthz", "/readyz", "/nothing", "/p/contoso/MSI/token/"] {
            assert_eq!(send(&app, get(path)).await.status, StatusCode::FORBIDDEN, "{path}");
        }
        let wrong_method = Request::post("/healthz").header("Host", "localhost");
        assert_eq!(send(&app, wrong_method).await.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn loopback_peers_of_every_family_are_served() {
    for peer in ["127.0.0.1:1", "127.9.9.9:2", "[::1]:3", "[::ffff:127.0.0.1]:4"] {
        let r = send(&app_from(peer), get(IMDS_URI).header("Metadata", "true")).await;
        assert_eq!(r.status, StatusCode::OK, "{peer}");
    }
}

#[tokio::test]
async fn a_router_without_connect_info_fails_closed() {
    let r = send(&router(state(), None).into_router(), get("/healthz")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn host_must_name_this_machine() {
    let app = app(state());
    for host in ["evil.example", "evil.example:50342", "127.0.0.1.nip.io", "10.0.0.1:50342", "localhost:x"] {
        let req = Request::get(IMDS_URI).header("Host", host).header("Metadata", "true");
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{host}");
        assert!(r.str("error_description").contains("Host"), "{host}");
    }
    for host in
        ["localhost", "localhost:50342", "127.0.0.1", "[::1]:50342", "169.254.169.254", "169.254.169.254:80"]
    {
        let req = Request::get(IMDS_URI).header("Host", host).header("Metadata", "true");
        assert_eq!(send(&app, req).await.status, StatusCode::OK, "{host}");
    }
    let no_host = Request::get(IMDS_URI).header("Metadata", "true");
    assert_eq!(send(&app, no_host).await.status, StatusCode::OK, "HTTP/1.0 clients send no Host");
    let two = get(IMDS_URI).header("Host", "evil.example").header("Metadata", "true");
    assert_eq!(send(&app, two).await.status, StatusCode::BAD_REQUEST);
    let absolute = Request::get(format!("http://evil.example{IMDS_URI}")).header("Metadata", "true");
    assert_eq!(send(&app, absolute).await.status, StatusCode::BAD_REQUEST);
    let r = send(&app, Request::get(APP_SERVICE_URI).header("Host", "evil.example")).await;
    assert_eq!(r.json["statusCode"], 400, "guards answer in the App Service shape on its path");
}

#[tokio::test]
async fn unknown_paths_are_json_404() {
    let app = app(state());
    for path in [
        "/",
        "/metadata/identity/getplatformmetadata?cred-api-version=2.0",
        "/metadata/instance",
        "/p/contoso/nothing",
        "/msi/token/extra",
    ] {
        let r = send(&app, get(path).header("Metadata", "true")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.str("error"), "not_found");
    }
}

#[tokio::test]
async fn wrong_methods_are_json_405() {
    let app = app(state());
    for (method, path) in [("POST", IMDS_URI), ("DELETE", APP_SERVICE_URI), ("PUT", "/healthz")] {
        let req = Request::builder().method(method).uri(path).header("Host", "localhost");
        let r = send(&app, req.header("Metadata", "true")).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(r.str("error"), "method_not_allowed");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let st = state();
    let app = app(st.clone());
    let r = send(&app, get("/healthz")).await;
    assert_eq!((r.status, r.json), (StatusCode::OK, json!({"status":"ok"})));
    let r = send(&app, get("/readyz")).await;
    assert_eq!((r.status, r.json), (StatusCode::SERVICE_UNAVAILABLE, json!({"status":"starting"})));
    st.set_ready(true);
    let r = send(&app, get("/readyz/")).await;
    assert_eq!((r.status, r.json), (StatusCode::OK, json!({"status":"ready"})));
    st.set_ready(false);
    assert_eq!(send(&app, get("/readyz")).await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn listener_profile_is_the_fallback() {
    let app = router(state(), Some(ProfileName::parse("fabrikam").unwrap()))
        .into_router()
        .layer(MockConnectInfo(SocketAddr::from(LOOPBACK_PEER)));
    let r = send(&app, get(IMDS_URI).header("Metadata", "true")).await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."));
    let prefixed = format!("/p/contoso{IMDS_URI}");
    let r = send(&app, get(&prefixed).header("Metadata", "true")).await;
    assert!(r.str("access_token").starts_with("fake.contoso.example."), "the path prefix wins");
}

#[tokio::test]
async fn reloaded_directory_applies_to_the_next_request() {
    let st = state();
    let app = app(st.clone());
    let r = send(&app, get(IMDS_URI).header("Metadata", "true")).await;
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
    st.set_directory(directory("fabrikam", false));
    let r = send(&app, get(IMDS_URI).header("Metadata", "true")).await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."));
}

#[tokio::test]
async fn no_profile_configured_is_a_clear_400() {
    let st = state_with(azbroker_core::Directory::default());
    let r = send(&app(st), get(IMDS_URI).header("Metadata", "true")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.str("error_description").contains("no profile is configured"));
}

#[tokio::test]
async fn link_local_peer_is_local_only_on_the_link_local_listener() {
    let peer: SocketAddr = "169.254.169.254:40000".parse().unwrap();
    let link_local = crate::link_local_router(state()).into_router().layer(MockConnectInfo(peer));
    let req = Request::get(IMDS_URI).header("Host", "169.254.169.254").header("Metadata", "true");
    let r = send(&link_local, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let elsewhere: SocketAddr = "10.1.2.3:40000".parse().unwrap();
    let link_local = crate::link_local_router(state()).into_router().layer(MockConnectInfo(elsewhere));
    assert_eq!(
        send(&link_local, get(IMDS_URI).header("Metadata", "true")).await.status,
        StatusCode::FORBIDDEN
    );
    let plain = app_from("169.254.169.254:40000");
    assert_eq!(send(&plain, get(IMDS_URI).header("Metadata", "true")).await.status, StatusCode::FORBIDDEN);
}

/// MSAL4J sends `host + "/" + "/metadata/..."`; repeated slashes and `.` segments are served as
/// if collapsed, after a `/p/NAME` prefix too, in every dialect.
#[tokio::test]
async fn repeated_slashes_and_dot_segments_are_served_as_collapsed() {
    let app = app(state());
    let q = "api-version=2018-02-01&resource=https://vault.azure.net";
    for (path, tenant) in [
        ("//metadata/identity/oauth2/token", "contoso"),
        ("/metadata//identity/./oauth2//token/", "contoso"),
        ("/p/fabrikam//metadata/identity/oauth2/token", "fabrikam"),
        ("//p/fabrikam/.//metadata/identity/oauth2/token", "fabrikam"),
    ] {
        let r = send(&app, get(&format!("{path}?{q}")).header("Metadata", "true")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
        assert!(r.str("access_token").starts_with(&format!("fake.{tenant}.example.")), "{path}");
    }
    let r =
        send(&app, get(&format!("/p/fabrikam//msi//token?{q}")).header("X-IDENTITY-HEADER", IDENTITY_HEADER))
            .await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."), "{}", r.json);
    // The guards see the collapsed path too: the missing secret is refused in App Service's shape.
    let r = send(&app, get(&format!("//msi/./token?{q}"))).await;
    assert_eq!((r.status, r.json["statusCode"].as_u64()), (StatusCode::UNAUTHORIZED, Some(401)));
}

/// Escaped separators, backslashes and `..` are never decoded into another path: 400, with or
/// without a profile prefix, and only after the connection guards (a remote peer gets 403).
#[tokio::test]
async fn escaped_separators_and_dot_dot_are_refused_with_400() {
    let app = app(state());
    let q = "api-version=2018-02-01&resource=https://vault.azure.net";
    for path in [
        "/metadata/identity/oauth2%2Ftoken",
        "/metadata%2fidentity/oauth2/token",
        "/metadata/identity/oauth2/token%5C",
        "/msi/token/..",
        "/p/fabrikam/../contoso/metadata/identity/oauth2/token",
        "/p/contoso%2F..%2Ffabrikam/metadata/identity/oauth2/token",
        "/p/fabrikam//metadata/identity/oauth2/%2E%2E/token",
        "/metadata/identity/oauth2/token/../../../msi/token",
    ] {
        let r = send(&app, get(&format!("{path}?{q}")).header("Metadata", "true")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.json);
        assert!(r.str("error_description").starts_with("The request path must not contain"), "{path}");
        let remote =
            send(&app_from("10.0.0.5:1"), get(&format!("{path}?{q}")).header("Metadata", "true")).await;
        assert_eq!(remote.status, StatusCode::FORBIDDEN, "{path}: guards come first");
    }
}

/// `client_wait`: a caller waiting on a slow upstream call is released with 503 + Retry-After
/// in its dialect's shape; the call goes on and serves the retry without a second call.
#[tokio::test]
async fn a_slow_upstream_releases_the_client_with_503_and_retry_after_in_its_dialects_shape() {
    let config = azbroker_core::EngineConfig {
        client_wait: std::time::Duration::from_millis(50),
        ..azbroker_core::EngineConfig::default()
    };
    let st = state_with_engine(directory("contoso", false), config);
    let app = app(st.clone());
    let imds_uri = format!("/p/slow{IMDS_URI}");
    let r = send(&app, get(&imds_uri).header("Metadata", "true")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.json);
    assert_eq!(r.headers[http::header::RETRY_AFTER], "5");
    assert_eq!(r.keys(), ["error", "error_description"]);
    let as_uri = format!("/p/slow{APP_SERVICE_URI}&x=1");
    let r = send(&app, get(&as_uri).header("X-IDENTITY-HEADER", IDENTITY_HEADER)).await;
    assert_eq!((r.status, r.json["statusCode"].as_u64()), (StatusCode::SERVICE_UNAVAILABLE, Some(503)));
    assert_eq!(r.headers[http::header::RETRY_AFTER], "5");
    // The slow profile answers within 300 ms; bounded wait for the call that went on.
    let mut served = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let r = send(&app, get(&imds_uri).header("Metadata", "true")).await;
        if r.status == StatusCode::OK {
            served = Some(r);
            break;
        }
    }
    let r = served.expect("the retry is served once the call ends");
    assert!(r.str("access_token").starts_with("fake.slow.example."));
    assert_eq!(st.engine().stats().upstream_calls, 1, "one upstream call for every attempt");
}
