//! The admin API in process (`oneshot`, with the peer supplied as connect info) and over a real
//! unix socket (mode, stale-file replacement, peer credentials from the kernel).

use std::sync::Mutex;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::tests::state;
use azbroker_core::admin_api::{DaemonStatus, ReloadAnswer, SecretValues, Status};

/// Accepts or rejects reloads as told, counting calls.
#[derive(Default)]
struct Hooks {
    reject_with: Mutex<Option<Vec<String>>>,
    calls: Mutex<u32>,
}

impl AdminHooks for Hooks {
    fn reload(&self) -> BoxFuture<'static, Result<ReloadOutcome, ReloadRejected>> {
        *self.calls.lock().unwrap() += 1;
        let outcome = match self.reject_with.lock().unwrap().clone() {
            Some(problems) => Err(ReloadRejected { problems }),
            None => Ok(ReloadOutcome { profiles: 3, warnings: vec!["listeners change at restart".into()] }),
        };
        Box::pin(async move { outcome })
    }

    fn status(&self) -> DaemonStatus {
        DaemonStatus { config: Some("/etc/azbroker/config.toml".into()), ..DaemonStatus::default() }
    }
}

fn admin(hooks: Arc<Hooks>) -> AdminState {
    let info = DaemonInfo { version: "9.9.9".into(), pid: 42, listeners: vec!["127.0.0.1:50342".into()] };
    AdminState::new(state(), hooks, info, PeerPolicy::new(vec![1000], vec![]))
}

async fn call(router: Router, method: &str, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = router.oneshot(req).await.unwrap();
    let status = response.status();
    assert_eq!(response.headers()[http::header::CONTENT_TYPE], "application/json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn as_peer(state: AdminState, uid: u32) -> Router {
    admin_router(state).layer(MockConnectInfo(PeerCred { uid, gid: uid, pid: Some(7) }))
}

#[tokio::test]
async fn status_reports_daemon_profiles_entries_and_hook_fields() {
    let state = admin(Arc::new(Hooks::default()));
    let resource = azbroker_core::Resource::parse("https://vault.azure.net").unwrap();
    let grant = state.app().engine().get_token("contoso", &resource).await.unwrap();
    let (status, body) = call(as_peer(state, 1000), "GET", "/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], "9.9.9");
    assert_eq!(body["pid"], 42);
    assert_eq!(body["listeners"][0], "127.0.0.1:50342");
    assert_eq!(body["default_profile"], "contoso");
    assert_eq!(body["config"], "/etc/azbroker/config.toml");
    assert!(body["profiles"].as_array().unwrap().iter().any(|p| p == "fabrikam"));
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["resource"], "https://vault.azure.net");
    assert_eq!(entries[0]["token_hash"], grant.token.hash());
    assert_eq!(body["stats"]["misses"], 1);
    assert!(!body.to_string().contains(grant.token.secret().expose()), "no token in status");
}

#[tokio::test]
async fn reload_reports_success_and_every_problem() {
    let hooks = Arc::new(Hooks::default());
    let (status, body) = call(as_peer(admin(hooks.clone()), 0), "POST", "/v1/reload").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "reloaded");
    assert_eq!(body["profiles"], 3);
    assert_eq!(body["warnings"][0], "listeners change at restart");

    *hooks.reject_with.lock().unwrap() = Some(vec!["a: bad".into(), "b: worse".into()]);
    let (status, body) = call(as_peer(admin(hooks.clone()), 0), "POST", "/v1/reload").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["problems"], serde_json::json!(["a: bad", "b: worse"]));
    assert_eq!(*hooks.calls.lock().unwrap(), 2);
}

#[tokio::test]
async fn other_users_and_unknown_peers_are_refused_before_any_route() {
    let hooks = Arc::new(Hooks::default());
    let (status, body) = call(as_peer(admin(hooks.clone()), 1001), "POST", "/v1/reload").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error_description"].as_str().unwrap().contains("uid 1001"));
    assert_eq!(*hooks.calls.lock().unwrap(), 0, "a refused peer reaches no hook");
    // No connect info at all (a router served without serve_unix): refused too.
    let (status, _) = call(admin_router(admin(hooks)), "GET", "/v1/status").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_paths_get_json_404() {
    let (status, body) = call(as_peer(admin(Arc::new(Hooks::default())), 0), "GET", "/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

async fn post_json(router: Router, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder().method("POST").uri(uri).body(Body::from(body.to_owned())).unwrap();
    let response = router.oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn refresh_replaces_matching_tokens_and_names_failures() {
    let state = admin(Arc::new(Hooks::default()));
    let engine = state.app().engine().clone();
    let vault = azbroker_core::Resource::parse("https://vault.azure.net").unwrap();
    let arm = azbroker_core::Resource::parse("https://management.azure.com/").unwrap();
    let old = engine.get_token("contoso", &vault).await.unwrap().token;
    engine.get_token("contoso", &arm).await.unwrap();
    engine.get_token("fabrikam", &vault).await.unwrap();

    let router = as_peer(state, 0);
    let (status, body) = post_json(
        router.clone(),
        "/v1/refresh",
        r#"{"profile":"contoso","resource":"https://vault.azure.net"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lines = body["refreshed"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["ok"], true);
    let new = engine.get_token("contoso", &vault).await.unwrap().token;
    assert_ne!(new.hash(), old.hash());
    assert_eq!(lines[0]["token_hash"], new.hash());
    assert!(!body.to_string().contains(new.secret().expose()), "no token in the answer");

    // No filter: every cached entry.
    let (_, body) = post_json(router.clone(), "/v1/refresh", "").await;
    assert_eq!(body["refreshed"].as_array().unwrap().len(), 3);
    // A failing login: the line says why.
    let (_, body) =
        post_json(router.clone(), "/v1/refresh", r#"{"profile":"broken","resource":"api://x"}"#).await;
    assert_eq!(body["refreshed"][0]["ok"], false);
    assert!(body["refreshed"][0]["error"].as_str().unwrap().contains("invalid_grant"), "{body}");
    // Bad requests.
    let (status, body) = post_json(router.clone(), "/v1/refresh", r#"{"profile":"nope"}"#).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unknown_profile")));
    let (status, _) = post_json(router.clone(), "/v1/refresh", r#"{"profle":"x"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post_json(router, "/v1/refresh", r#"{"resource":"has space"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_socket_too() {
    let state = admin(Arc::new(Hooks::default()));
    let vault = azbroker_core::Resource::parse("https://vault.azure.net").unwrap();
    state.app().engine().get_token("contoso", &vault).await.unwrap();
    let req = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    let response = as_peer(state.clone(), 1000).oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[http::header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains(r#"azbroker_upstream_requests_total{profile="contoso"} 1"#), "{text}");
    // The peer check applies to it like to every admin route.
    let req = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    assert_eq!(as_peer(state, 1001).oneshot(req).await.unwrap().status(), StatusCode::FORBIDDEN);
}

/// One HTTP/1.1 request over a unix socket, answered with `Connection: close`.
async fn raw_request(path: &std::path::Path, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn real_socket_is_private_replaces_a_stale_file_and_never_steals_a_live_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.sock");
    // A stale socket file left by a crashed daemon: bound once, listener dropped.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let listener = bind_admin_socket(&path).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

    // This test runs as some uid; admit exactly that uid (root is always admitted anyway).
    let me = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap();
    let info = DaemonInfo { version: "1".into(), pid: 1, listeners: vec![] };
    let state = AdminState::new(state(), Arc::new(Hooks::default()), info, PeerPolicy::new(vec![me], vec![]));
    let cancel = CancellationToken::new();
    let server =
        tokio::spawn(serve_unix(listener, admin_router(state), crate::Limits::default(), cancel.clone()));

    let reply =
        raw_request(&path, "GET /v1/status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"version\":\"1\""), "{reply}");

    let err = bind_admin_socket(&path).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "a live socket is not taken over");

    cancel.cancel();
    server.await.unwrap().unwrap();
    std::fs::write(dir.path().join("plain"), b"x").unwrap();
    let err = bind_admin_socket(&dir.path().join("plain")).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "a regular file is never removed");
}

use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn admin_group_members_read_but_do_not_change() {
    let hooks = Arc::new(Hooks::default());
    let info = DaemonInfo { version: "1".into(), pid: 1, listeners: vec![] };
    let policy = PeerPolicy::new(vec![1000], vec![3000]);
    let state = AdminState::new(state(), hooks.clone(), info, policy);
    let reader = admin_router(state).layer(MockConnectInfo(PeerCred { uid: 1500, gid: 3000, pid: None }));
    let (status, _) = call(reader.clone(), "GET", "/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(reader.clone(), "GET", "/v1/secrets").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["identity-header"], crate::tests::IDENTITY_HEADER);
    let (status, body) = call(reader.clone(), "POST", "/v1/reload").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error_description"].as_str().unwrap().contains("may only read"));
    let (status, _) = call(reader.clone(), "POST", "/v1/rotate-secrets").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A GET that calls upstream with a login's tokens is not a read, nor is the long poll of a
    // sign-in flow.
    let (status, body) = call(reader.clone(), "GET", "/v1/logins/me/tenants").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = call(reader, "GET", "/v1/logins/me/flows/f1?wait=20").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("sign-in flows"), "{body}");
    assert_eq!(*hooks.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn refused_admin_requests_are_logged_through_the_denial_limiter() {
    let capture = crate::tests::capture::Capture::default();
    // See `grants_are_audited_by_hash_and_secrets_never_logged` for why a second dispatcher.
    let _second = tracing::Dispatch::new(crate::tests::capture::Capture::default());
    let _guard = tracing::subscriber::set_default(capture.clone());
    let info = DaemonInfo { version: "1".into(), pid: 1, listeners: vec![] };
    let state =
        AdminState::new(state(), Arc::new(Hooks::default()), info, PeerPolicy::new(vec![1000], vec![3000]));
    let reader = admin_router(state).layer(MockConnectInfo(PeerCred { uid: 1500, gid: 3000, pid: None }));
    for _ in 0..50 {
        let (status, _) = call(reader.clone(), "POST", "/v1/reload").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let lines = capture.lines.lock().unwrap().clone();
    let refused =
        lines.iter().filter(|l| l.contains("admin change refused") && l.contains("uid=1500")).count();
    assert_eq!(refused, crate::denial_log::BURST as usize, "50 refusals of one uid: {lines:#?}");
}

#[tokio::test]
async fn rotate_secrets_reports_the_hooks_outcome() {
    let (status, body) =
        call(as_peer(admin(Arc::new(Hooks::default())), 1000), "POST", "/v1/rotate-secrets").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the default hook refuses: {body}");
    assert_eq!(body["error"], "rotate_failed");
}

/// Login hooks answering from canned values, recording what they were asked.
#[derive(Default)]
struct LoginHooks {
    asked: Mutex<Vec<String>>,
}

impl AdminHooks for LoginHooks {
    fn reload(&self) -> BoxFuture<'static, Result<ReloadOutcome, ReloadRejected>> {
        Box::pin(async { Err(ReloadRejected { problems: vec![] }) })
    }

    fn start_login(
        &self,
        login: String,
        request: LoginRequest,
    ) -> BoxFuture<'static, Result<FlowStart, AdminError>> {
        self.asked.lock().unwrap().push(format!("start {login} {:?} {:?}", request.method, request.tenant));
        Box::pin(async move {
            if login != "me" {
                return Err(AdminError::NotFound("no such login".into()));
            }
            Ok(FlowStart {
                flow_id: "f1".into(),
                method: request.method,
                tenant: request.tenant.unwrap_or_else(|| "organizations".into()),
                message: Some("enter ABCD".into()),
                user_code: Some("ABCD".into()),
                verification_uri: Some("https://example/devicelogin".into()),
                authorize_url: None,
                expires_in_secs: 900,
            })
        })
    }

    fn login_flow(
        &self,
        login: String,
        id: String,
        wait: std::time::Duration,
    ) -> BoxFuture<'static, Result<FlowStatus, AdminError>> {
        self.asked.lock().unwrap().push(format!("status {login} {id} {}", wait.as_secs()));
        Box::pin(async {
            Ok(FlowStatus {
                state: azbroker_core::FlowState::Pending,
                expires_in_secs: 899,
                account: None,
                error: None,
            })
        })
    }

    fn cancel_login(&self, login: String, id: String) -> BoxFuture<'static, Result<FlowStatus, AdminError>> {
        self.asked.lock().unwrap().push(format!("cancel {login} {id}"));
        Box::pin(async {
            Ok(FlowStatus {
                state: azbroker_core::FlowState::Cancelled,
                expires_in_secs: 0,
                account: None,
                error: None,
            })
        })
    }
}

async fn call_with(router: Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let req = Request::builder().method(method).uri(uri).body(Body::from(body.to_owned())).unwrap();
    let response = router.oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn login_routes_parse_bound_and_delegate() {
    let hooks = Arc::new(LoginHooks::default());
    let info = DaemonInfo { version: "1".into(), pid: 1, listeners: vec![] };
    let state = AdminState::new(state(), hooks.clone(), info, PeerPolicy::new(vec![1000], vec![]));
    let (code, body) = call_with(
        as_peer(state.clone(), 1000),
        "POST",
        "/v1/logins/me/flows",
        r#"{"method":"browser","tenant":"fabrikam.example"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!((body["flow_id"].as_str(), body["method"].as_str()), (Some("f1"), Some("browser")));
    let (code, _) = call_with(as_peer(state.clone(), 1000), "POST", "/v1/logins/me/flows", "").await;
    assert_eq!(code, StatusCode::OK, "an empty body means a default device-code sign-in");
    let (code, body) = call_with(as_peer(state.clone(), 1000), "POST", "/v1/logins/me/flows", "{nope").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body["error_description"].as_str().unwrap().contains("not a login request"));
    let (code, body) = call_with(as_peer(state.clone(), 1000), "POST", "/v1/logins/ghost/flows", "").await;
    assert_eq!((code, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (code, body) = call(as_peer(state.clone(), 1000), "GET", "/v1/logins/me/flows/f1?wait=999").await;
    assert_eq!((code, body["state"].as_str()), (StatusCode::OK, Some("pending")));
    let (code, body) = call(as_peer(state.clone(), 1000), "DELETE", "/v1/logins/me/flows/f1").await;
    assert_eq!((code, body["state"].as_str()), (StatusCode::OK, Some("cancelled")));
    // Hooks without login support answer 501; strangers never reach the hooks.
    let (code, _) = call(as_peer(state.clone(), 1000), "POST", "/v1/logins/me/logout").await;
    assert_eq!(code, StatusCode::NOT_IMPLEMENTED);
    let (code, _) = call(as_peer(state, 4242), "DELETE", "/v1/logins/me/flows/f1").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let asked = hooks.asked.lock().unwrap().clone();
    assert_eq!(asked[0], "start me Browser Some(\"fabrikam.example\")");
    assert!(asked.contains(&"status me f1 20".to_owned()), "the wait is capped: {asked:?}");
    assert_eq!(asked.iter().filter(|a| a.starts_with("cancel")).count(), 1);
}

/// The raw answer body, for decoding into the CLI's types.
async fn raw(router: Router, method: &str, uri: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = router.oneshot(req).await.unwrap();
    let status = response.status();
    (status, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

#[test]
fn each_error_kind_has_one_status() {
    use azbroker_core::UpstreamError;
    let cases = [
        (AdminError::BadRequest("x".into()), StatusCode::BAD_REQUEST),
        (AdminError::InvalidResource("x".into()), StatusCode::BAD_REQUEST),
        (AdminError::UnknownProfile("x".into()), StatusCode::BAD_REQUEST),
        (AdminError::RotateFailed("x".into()), StatusCode::BAD_REQUEST),
        (AdminError::NotFound("x".into()), StatusCode::NOT_FOUND),
        (AdminError::Forbidden("x".into()), StatusCode::FORBIDDEN),
        (AdminError::TooManyFlows("x".into()), StatusCode::TOO_MANY_REQUESTS),
        (AdminError::Unsupported("x".into()), StatusCode::NOT_IMPLEMENTED),
        (AdminError::Unavailable("x".into()), StatusCode::SERVICE_UNAVAILABLE),
        (AdminError::RedirectListener("x".into()), StatusCode::INTERNAL_SERVER_ERROR),
        // Definitive upstream answers say what to do; the rest may be retried.
        (
            AdminError::Upstream(UpstreamError::LoginRequired {
                login: "me".into(),
                tenant: None,
                reason: "not signed in".into(),
            }),
            StatusCode::BAD_REQUEST,
        ),
        (AdminError::Upstream(UpstreamError::Timeout), StatusCode::BAD_GATEWAY),
    ];
    for (error, expected) in cases {
        assert_eq!(status_of(&error), expected, "{error:?}");
    }
    let rejected = ReloadAnswer::Rejected(ReloadRejected { problems: vec![] });
    assert_eq!(reload_status(&rejected), StatusCode::BAD_REQUEST);
    let reloaded = ReloadAnswer::Reloaded(ReloadOutcome { profiles: 1, warnings: vec![] });
    assert_eq!(reload_status(&reloaded), StatusCode::OK);
}

#[tokio::test]
async fn answers_decode_into_the_types_the_cli_reads() {
    use azbroker_core::admin_api::ErrorBody;
    let hooks = Arc::new(Hooks::default());
    let state = admin(hooks.clone());
    let vault = azbroker_core::Resource::parse("https://vault.azure.net").unwrap();
    let grant = state.app().engine().get_token("contoso", &vault).await.unwrap();
    let router = as_peer(state, 0);

    let (code, bytes) = raw(router.clone(), "GET", "/v1/status").await;
    assert_eq!(code, StatusCode::OK);
    let status: Status = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status.info.version, "9.9.9");
    assert_eq!(status.daemon.config.as_deref(), Some("/etc/azbroker/config.toml"));
    assert_eq!(status.entries[0].token_hash.as_deref(), Some(grant.token.hash().as_str()));
    assert_eq!(status.stats.misses, 1);

    let (_, bytes) = raw(router.clone(), "GET", "/v1/secrets").await;
    let values: SecretValues = serde_json::from_slice(&bytes).unwrap();
    let header = secret_value(&values, SecretId::IdentityHeader).unwrap();
    assert_eq!(header.expose(), crate::tests::IDENTITY_HEADER);
    // Every runtime secret the daemon holds arrives under its own name.
    let wire: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
    for id in SecretId::ALL.iter().filter(|id| secret_value(&values, **id).is_some()) {
        assert!(wire.contains_key(id.name()), "{} travels under its name", id.name());
    }

    *hooks.reject_with.lock().unwrap() = Some(vec!["a: bad".into()]);
    let (code, bytes) = raw(router.clone(), "POST", "/v1/reload").await;
    let answer: ReloadAnswer = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (code, answer),
        (StatusCode::BAD_REQUEST, ReloadAnswer::Rejected(ReloadRejected { problems: vec!["a: bad".into()] }))
    );

    let (code, bytes) = raw(router, "POST", "/v1/logins/me/logout").await;
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(code, status_of(&unsupported()));
    assert_eq!(body, unsupported().body());
}

#[test]
fn every_secret_id_has_its_own_field() {
    let mut values = SecretValues::default();
    for (n, id) in SecretId::ALL.iter().enumerate() {
        *secret_slot(&mut values, *id) = Some(azbroker_core::Secret::new(format!("value-{n}")));
    }
    let wire = serde_json::to_value(&values).unwrap();
    for (n, id) in SecretId::ALL.iter().enumerate() {
        assert_eq!(wire[id.name()], format!("value-{n}"), "the wire key of {id:?} is its name");
        assert_eq!(secret_value(&values, *id).unwrap().expose(), format!("value-{n}"));
    }
}

#[tokio::test]
async fn self_service_users_reach_their_own_corner_only() {
    let hooks = Arc::new(Hooks::default());
    let info = DaemonInfo { version: "1".into(), pid: 1, listeners: vec![] };
    let policy = PeerPolicy::new(vec![1000], vec![]).with_self_service(vec![]);
    let state = AdminState::new(state(), hooks.clone(), info, policy);
    let user =
        admin_router(state.clone()).layer(MockConnectInfo(PeerCred { uid: 1500, gid: 1500, pid: None }));
    // Their own status: none of the daemon's configured profiles, config file or counters.
    let (status, body) = call(user.clone(), "GET", "/v1/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["profiles"], serde_json::json!([]));
    assert!(body.get("config").is_none(), "{body}");
    let (admin_status, admin_body) = call(as_peer(state, 1000), "GET", "/v1/status").await;
    assert_eq!(admin_status, StatusCode::OK);
    assert_eq!(admin_body["config"], "/etc/azbroker/config.toml");
    // The client environment, yes; the administrator's changes and another user's logout, no.
    assert_eq!(call(user.clone(), "GET", "/v1/secrets").await.0, StatusCode::OK);
    for (method, uri) in [("POST", "/v1/reload"), ("POST", "/v1/users/alice/logout"), ("GET", "/metrics")] {
        let (status, body) = call(user.clone(), method, uri).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert!(body["error_description"].as_str().unwrap().contains("self_service"), "{body}");
    }
    // These hooks offer no self-service: the route says what is missing.
    let (status, body) = call(user, "POST", "/v1/self/logout").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(body["error_description"].as_str().unwrap().contains("self_service = true"), "{body}");
    assert_eq!(*hooks.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn without_self_service_other_users_are_told_it_is_off() {
    let (status, body) = call(as_peer(admin(Arc::new(Hooks::default())), 1500), "GET", "/v1/status").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error_description"].as_str().unwrap().contains("self-service is off"), "{body}");
}

#[tokio::test]
async fn keys_are_listed_without_key_or_hash_and_changed_by_administrators_only() {
    use azbroker_core::keys::{self, KeyEntry, KeyRecord, KeySet};
    let st = admin(Arc::new(Hooks::default()));
    let key = keys::generate();
    let hash = keys::hash(key.expose().as_bytes());
    let record = KeyRecord {
        name: "dev".into(),
        profile: "fabrikam".into(),
        resources: None,
        hash: hash.clone(),
        created: 1,
        expires: None,
        revoked: false,
        revoked_at: None,
    };
    // A key for a profile a reload removed is listed as such (and refused on the token path).
    let orphan =
        KeyRecord { name: "orphan".into(), profile: "gone".into(), hash: keys::hash(b"o"), ..record.clone() };
    st.app().publish_keys(KeySet::new(vec![
        Arc::new(KeyEntry::new(record, Arc::default()).unwrap()),
        Arc::new(KeyEntry::new(orphan, Arc::default()).unwrap()),
    ]));
    let (status, body) = call(as_peer(st.clone(), 1000), "GET", "/v1/keys").await;
    assert_eq!(status, StatusCode::OK);
    let list: azbroker_core::admin_api::KeyList = serde_json::from_value(body.clone()).unwrap();
    assert_eq!((list.keys[0].name.as_str(), list.keys[0].state.as_str()), ("dev", "valid"));
    assert_eq!((list.keys[1].name.as_str(), list.keys[1].state.as_str()), ("orphan", "profile-gone"));
    let text = body.to_string();
    assert!(!text.contains(key.expose()) && !text.contains(&hash), "{text}");
    // The default hooks keep no keys; a stranger is refused before any route.
    let create = r#"{"name":"x","profile":"fabrikam"}"#;
    let (status, body) = call_with(as_peer(st.clone(), 1000), "POST", "/v1/keys", create).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_IMPLEMENTED, Some("not_supported")));
    let (status, _) = call_with(as_peer(st.clone(), 1000), "POST", "/v1/keys", "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call_with(as_peer(st.clone(), 4242), "POST", "/v1/keys", create).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(as_peer(st, 4242), "DELETE", "/v1/keys/dev").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn stop_is_a_change_and_a_daemon_without_the_hook_says_so() {
    let state = admin(Arc::new(Hooks::default()));
    let (status, body) = call(as_peer(state.clone(), 1000), "POST", "/v1/stop").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(body["error"], "not_supported");
    let (status, _) = call(as_peer(state, 1001), "POST", "/v1/stop").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another user may not stop the daemon");
}
