//! Client keys through the routers: a key is the secret of every dialect that has one, pins its
//! profile (prefix, selector, listener) and its resources, outranks the uid policy, and is the
//! only way in on a container listener.

use azbroker_core::keys::{self as core_keys, KeyEntry, KeyRecord, KeySet};
use azbroker_core::unix_now;

use super::policy::{as_uid, restricted};
use super::*;
use crate::{container_router, service_fabric_router};

const Q: &str = "api-version=2019-08-01&resource=https://management.core.windows.net/";
const CONTAINER: ([u8; 4], u16) = ([172, 17, 0, 1], 50342);
const CONTAINER_PEER: ([u8; 4], u16) = ([172, 17, 0, 2], 40_000);

/// Publishes one key named `name` for `profile` (with `resources`, expiring at `expires`);
/// returns the key.
fn add_key(
    st: &AppState,
    name: &str,
    profile: &str,
    resources: Option<Vec<&str>>,
    expires: Option<u64>,
) -> String {
    let key = core_keys::generate();
    let mut entries: Vec<_> = st.runtime().keys().entries().to_vec();
    let record = KeyRecord {
        name: name.into(),
        profile: profile.into(),
        resources: resources.map(|r| r.into_iter().map(str::to_owned).collect()),
        hash: core_keys::hash(key.expose().as_bytes()),
        created: 1,
        expires,
        revoked: false,
        revoked_at: None,
    };
    entries.push(Arc::new(KeyEntry::new(record, Arc::default()).unwrap()));
    st.publish_keys(KeySet::new(entries));
    key.expose().to_owned()
}

fn with_key(uri: &str, key: &str) -> http::request::Builder {
    get(uri).header("X-IDENTITY-HEADER", key)
}

fn container_app(st: AppState) -> Router {
    container_router(st, SocketAddr::from(CONTAINER))
        .into_router()
        .layer(MockConnectInfo(SocketAddr::from(CONTAINER_PEER)))
}

#[tokio::test]
async fn a_key_gets_its_profile_and_never_another() {
    let st = state();
    let key = add_key(&st, "dev", "fabrikam", None, None);
    let app = app(st.clone());
    let r = send(&app, with_key(&format!("/msi/token?{Q}"), &key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.str("access_token").contains("fabrikam"), "the key's profile, not the default");
    for uri in [format!("/p/contoso/msi/token?{Q}"), format!("/msi/token?{Q}&client_id={CONTOSO_CLIENT_ID}")]
    {
        let r = send(&app, with_key(&uri, &key)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}: {}", r.json);
        assert!(r.str("message").contains("'dev' is for profile 'fabrikam' only"), "{}", r.json);
    }
    // Naming its own profile is fine.
    let r = send(&app, with_key(&format!("/msi/token?{Q}&client_id={FABRIKAM_CLIENT_ID}"), &key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // A profile's own listener for another profile refuses the key too.
    let contoso_listener = router(st.clone(), Some(name("contoso")))
        .into_router()
        .layer(MockConnectInfo(SocketAddr::from(LOOPBACK_PEER)));
    let r = send(&contoso_listener, with_key(&format!("/msi/token?{Q}"), &key)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json);
    assert_eq!(st.runtime().keys().entries()[0].usage.grants(), 2);
}

#[tokio::test]
async fn a_key_is_the_secret_of_azure_ml_service_fabric_and_the_native_api() {
    let st = state();
    let key = add_key(&st, "dev", "fabrikam", None, None);
    let app = app(st.clone());
    let ml = get(&format!("/msi/auth?api-version=2017-09-01&resource={ARM}")).header("secret", &key);
    let r = send(&app, ml).await;
    assert!(r.str("access_token").contains("fabrikam"), "{}", r.json);
    let sf = service_fabric_router(st.clone(), None)
        .into_router()
        .layer(MockConnectInfo(SocketAddr::from(LOOPBACK_PEER)));
    let r = send(
        &sf,
        get(&format!("/msi/token?api-version=2019-07-01-preview&resource={ARM}")).header("Secret", &key),
    )
    .await;
    assert!(r.str("access_token").contains("fabrikam"), "{}", r.json);
    let native = Request::post("/token?api-version=2023-07-12-preview")
        .header("Host", "127.0.0.1")
        .header("Authorization", format!("Bearer {key}"));
    let r = send_body(&app, native, &format!(r#"{{"scopes":["{ARM}.default"]}}"#)).await;
    assert!(r.str("token").contains("fabrikam"), "{}", r.json);
    // A tenant other than the key's profile's is not matched to another profile.
    let native = Request::post("/token?api-version=2023-07-12-preview")
        .header("Host", "127.0.0.1")
        .header("Authorization", format!("Bearer {key}"));
    let body = format!(r#"{{"scopes":["{ARM}.default"],"tenantId":"contoso"}}"#);
    // azd reads only a 200's body, so this refusal is a 200 with an error status (not `send`'s rule).
    let response = app.clone().oneshot(native.body(Body::from(body)).unwrap()).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["message"].as_str().unwrap().contains("contoso"), "{v}");
}

#[tokio::test]
async fn a_key_outranks_the_uid_policy_but_not_its_resources() {
    let st = state();
    st.set_policy(restricted());
    let key = add_key(&st, "ci", "fabrikam", Some(vec!["https://management.core.windows.net"]), None);
    let stranger = as_uid(st.clone(), 1001);
    let r = send(&stranger, with_key(&format!("/msi/token?{Q}"), &key)).await;
    assert_eq!(r.status, StatusCode::OK, "no uid match needed: {}", r.json);
    let r =
        send(&stranger, with_key("/msi/token?api-version=2019-08-01&resource=https://vault.azure.net", &key))
            .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.str("message").contains("does not allow resource 'https://vault.azure.net'"), "{}", r.json);
    // The same stranger with the daemon's identity header is still refused by policy.
    let r = send(&stranger, app_service(&format!("{Q}&client_id={FABRIKAM_CLIENT_ID}"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn expired_revoked_and_unknown_keys_are_refused_naming_key_create() {
    let st = state();
    let expired = add_key(&st, "old", "fabrikam", None, Some(unix_now() - 1));
    let app = app(st.clone());
    let r = send(&app, with_key(&format!("/msi/token?{Q}"), &expired)).await;
    assert_eq!((r.status, r.json["statusCode"].as_u64()), (StatusCode::UNAUTHORIZED, Some(401)));
    assert!(
        r.str("message").contains("'old' has expired") && r.str("message").contains("azbroker key create")
    );
    let r = send(&app, with_key(&format!("/msi/token?{Q}"), "azbk_unknown")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.str("message").contains("azbroker key create"), "{}", r.json);
    let live = add_key(&st, "live", "fabrikam", None, None);
    let revoked: Vec<_> = st
        .runtime()
        .keys()
        .entries()
        .iter()
        .map(|e| {
            let record = KeyRecord { revoked: e.record.name == "live", ..e.record.clone() };
            Arc::new(KeyEntry::new(record, e.usage.clone()).unwrap())
        })
        .collect();
    assert_eq!(send(&app, with_key(&format!("/msi/token?{Q}"), &live)).await.status, StatusCode::OK);
    st.publish_keys(KeySet::new(revoked));
    let r = send(&app, with_key(&format!("/msi/token?{Q}"), &live)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.str("message").contains("'live' was revoked"), "{}", r.json);
}

#[tokio::test]
async fn a_container_listener_serves_keys_only_and_names_its_hosts() {
    let st = state();
    let key = add_key(&st, "dev", "fabrikam", None, None);
    let app = container_app(st.clone());
    let on = |host: &str| Request::get(format!("/msi/token?{Q}")).header("Host", host.to_owned());
    for host in ["172.17.0.1:50342", "host.docker.internal:50342", "HOST.DOCKER.INTERNAL", "127.0.0.1"] {
        let r = send(&app, on(host).header("X-IDENTITY-HEADER", &key)).await;
        assert_eq!(r.status, StatusCode::OK, "{host}: {}", r.json);
    }
    let r = send(&app, on("evil.example").header("X-IDENTITY-HEADER", &key)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    let r = send(&app, on("172.17.0.1").header("X-IDENTITY-HEADER", IDENTITY_HEADER)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "the daemon's own secret is not a key: {}", r.json);
    let r = send(&app, on("172.17.0.1")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.str("message").contains("'X-IDENTITY-HEADER'"), "{}", r.json);
    let imds = Request::get(format!("/metadata/identity/oauth2/token?{Q}"))
        .header("Host", "172.17.0.1")
        .header("Metadata", "true");
    let r = send(&app, imds).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.str("error_description").contains("IDENTITY_HEADER"), "{}", r.json);
    let metrics = send(&app, Request::get("/metrics").header("Host", "172.17.0.1")).await;
    assert_eq!(metrics.status, StatusCode::NOT_FOUND, "no per-profile counters for containers");
    // On a loopback listener the same peer address is refused as before.
    let plain = router(st, None).into_router().layer(MockConnectInfo(SocketAddr::from(CONTAINER_PEER)));
    let r = send(&plain, with_key(&format!("/msi/token?{Q}"), &key)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_config_reload_keeps_the_keys_and_their_counters() {
    let st = state();
    let key = add_key(&st, "dev", "fabrikam", None, None);
    let app = app(st.clone());
    assert_eq!(send(&app, with_key(&format!("/msi/token?{Q}"), &key)).await.status, StatusCode::OK);
    let before = st.runtime().generation();
    st.set_allow_remote(false);
    assert!(st.runtime().generation() > before, "a new generation was published");
    let r = send(&app, with_key(&format!("/msi/token?{Q}"), &key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(st.runtime().keys().entries()[0].usage.grants(), 2);
}

#[tokio::test]
async fn a_key_whose_profile_a_reload_removed_is_refused_naming_key_revoke() {
    let st = state();
    let key = add_key(&st, "dev", "fabrikam", None, None);
    let app = app(st.clone());
    assert_eq!(send(&app, with_key(&format!("/msi/token?{Q}"), &key)).await.status, StatusCode::OK);
    // The next config has no `fabrikam`; the key stays in the set, and serves nothing.
    let kept: Vec<_> =
        bindings().into_iter().filter(|b| b.name.as_str() != "fabrikam").map(Arc::new).collect();
    let selectors = kept.iter().map(|b| (b.name.clone(), ProfileSelectors::default()));
    let directory = Directory::new(selectors, Some(name("contoso")), HashMap::new()).unwrap();
    st.publish(RuntimeSpec::new(directory, AccessPolicy::unrestricted(), kept)).unwrap();
    assert_eq!(st.runtime().keys().entries().len(), 1);
    let r = send(&app, with_key(&format!("/msi/token?{Q}"), &key)).await;
    assert_eq!((r.status, r.json["statusCode"].as_u64()), (StatusCode::FORBIDDEN, Some(403)), "{}", r.json);
    assert!(r.json.get("access_token").is_none(), "never another profile's token");
    let message = r.str("message");
    assert!(message.contains("'fabrikam'") && message.contains("azbroker key revoke dev"), "{}", r.json);
}
