//! In-process router tests: a real `Engine` over a fake `TokenSource`, requests sent with
//! `tower::ServiceExt::oneshot`, the peer address supplied by `MockConnectInfo`.
//!
//! Every response goes through [`send`], which also asserts the invariants that hold for all of
//! them: a JSON body with `Content-Type: application/json`, and `Retry-After` on every 429 and
//! otherwise only on a 503 (a caller released after `client_wait`).

mod app_service;
mod arc;
mod azure_ml;
pub(crate) mod capture;
mod cloud_shell;
mod conn;
mod fuzz;
mod imds;
mod keys;
mod metrics;
mod native;
mod policy;
mod routing;
mod serve;
mod service_fabric;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use azbroker_core::{
    AccessPolicy, AccessToken, BoxFuture, CacheBounds, CacheKey, Directory, Engine, EngineConfig,
    FetchRequest, ProfileBinding, ProfileName, ProfileSelectors, Secret, TenantId, TokenSource,
    UpstreamError,
};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::{AppState, RateLimit, RuntimeSecrets, RuntimeSpec, SecretId, router};

pub(crate) const IDENTITY_HEADER: &str = "s3cr3t-identity-header-value";
pub(crate) const MSI_SECRET: &str = "s3cr3t-msi-secret-value";
pub(crate) const NATIVE_KEY: &str = "s3cr3t-native-key-value";
pub(crate) const CONTOSO_CLIENT_ID: &str = "11111111-1111-1111-1111-111111111111";
pub(crate) const FABRIKAM_CLIENT_ID: &str = "22222222-2222-2222-2222-222222222222";
pub(crate) const CONTOSO_MI_RES_ID: &str =
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/contoso";
pub(crate) const ARM: &str = "https://management.core.windows.net/";

/// Issues `fake.<tenant>.<resource>.<n>` tokens living an hour, or fails with a fixed error.
pub(crate) struct FakeSource {
    client_id: Option<&'static str>,
    error: Option<UpstreamError>,
    latency: Duration,
    calls: AtomicU64,
}

impl TokenSource for FakeSource {
    fn fetch<'a>(&'a self, req: &'a FetchRequest) -> BoxFuture<'a, Result<AccessToken, UpstreamError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.latency).await;
            if let Some(e) = &self.error {
                return Err(e.clone());
            }
            let value = format!("fake.{}.{}.{n}", req.tenant, req.resource);
            Ok(AccessToken::new(Secret::new(value), Duration::from_secs(3600)))
        })
    }

    fn client_id(&self) -> Option<&str> {
        self.client_id
    }

    fn kind(&self) -> &'static str {
        "fake"
    }
}

fn name(s: &str) -> ProfileName {
    ProfileName::parse(s).unwrap()
}

fn binding(profile: &str, client_id: Option<&'static str>, error: Option<UpstreamError>) -> ProfileBinding {
    let latency = if profile == "slow" { Duration::from_millis(300) } else { Duration::ZERO };
    let tenant = TenantId::parse(&format!("{profile}.example")).unwrap();
    let key = CacheKey::new(&name(profile), "v1", &tenant);
    let source = Arc::new(FakeSource { client_id, error, latency, calls: AtomicU64::new(0) });
    ProfileBinding::new(name(profile), tenant, source, vec![], key)
}

fn refused(error: &str, description: &str) -> UpstreamError {
    UpstreamError::Refused { error: error.into(), codes: vec![], description: description.into() }
}

/// The profiles every test app has, with the upstream behaviour their names say.
fn bindings() -> Vec<ProfileBinding> {
    vec![
        binding("contoso", Some(CONTOSO_CLIENT_ID), None),
        binding("fabrikam", None, None),
        binding("slow", None, None),
        binding(
            "broken",
            None,
            Some(UpstreamError::InvalidGrant {
                codes: vec![700082],
                description: "AADSTS700082: The refresh token has expired".into(),
            }),
        ),
        binding(
            "nores",
            None,
            Some(UpstreamError::InvalidResource {
                error: "invalid_resource".into(),
                codes: vec![500011],
                description: "AADSTS500011: The resource principal was not found".into(),
            }),
        ),
        binding(
            "needlogin",
            None,
            Some(UpstreamError::LoginRequired {
                login: "me".into(),
                tenant: None,
                reason: "no sign-in yet; run `azbroker login me`".into(),
            }),
        ),
        binding("refused", None, Some(refused("invalid_request", "AADSTS90002: Tenant not found"))),
        binding(
            "throttled",
            None,
            Some(UpstreamError::Throttled { retry_after: Some(Duration::from_secs(7)) }),
        ),
        binding("down", None, Some(UpstreamError::Unavailable { status: 503, retry_after: None })),
    ]
}

/// A directory over [`bindings`]: `contoso` is the default and owns the contoso aliases.
pub(crate) fn directory(default: &str, accept_any_client_id: bool) -> Directory {
    let profiles = bindings().into_iter().map(|b| {
        let aliases = match b.name.as_str() {
            "contoso" => vec![CONTOSO_CLIENT_ID.to_owned(), CONTOSO_MI_RES_ID.to_owned()],
            "fabrikam" => vec![FABRIKAM_CLIENT_ID.to_owned()],
            _ => vec![],
        };
        let accept_any = accept_any_client_id && b.name.as_str() == default;
        (b.name, ProfileSelectors { aliases, accept_any_client_id: accept_any })
    });
    Directory::new(profiles, Some(name(default)), HashMap::new()).unwrap()
}

pub(crate) fn state_with(directory: Directory) -> AppState {
    state_with_engine(directory, EngineConfig::default())
}

pub(crate) fn state_with_engine(directory: Directory, config: EngineConfig) -> AppState {
    let engine = Engine::new(config, vec![]);
    let bindings = bindings().into_iter().map(Arc::new).collect();
    let spec = RuntimeSpec::new(directory, AccessPolicy::unrestricted(), bindings);
    let secrets = RuntimeSecrets::new([
        (SecretId::IdentityHeader, Secret::new(IDENTITY_HEADER)),
        (SecretId::MsiSecret, Secret::new(MSI_SECRET)),
        (SecretId::NativeKey, Secret::new(NATIVE_KEY)),
    ]);
    AppState::new(engine, spec, secrets).unwrap()
}

/// Publishing a variant of the generation in force, one setting at a time, as a reload would.
pub(crate) trait Reconfigure {
    fn reconfigure(&self, change: impl FnOnce(&mut RuntimeSpec));

    fn set_policy(&self, policy: AccessPolicy) {
        self.reconfigure(|s| s.policy = policy);
    }

    fn set_allow_remote(&self, allow: bool) {
        self.reconfigure(|s| s.allow_remote = allow);
    }

    fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.reconfigure(|s| s.rate_limit = limit);
    }

    fn set_directory(&self, directory: Directory) {
        self.reconfigure(|s| s.directory = directory);
    }
}

impl Reconfigure for AppState {
    fn reconfigure(&self, change: impl FnOnce(&mut RuntimeSpec)) {
        let mut spec = RuntimeSpec::of(&self.runtime());
        change(&mut spec);
        self.publish(spec).unwrap();
    }
}

pub(crate) fn state() -> AppState {
    state_with(directory("contoso", false))
}

/// [`state`] with a default profile (contoso) that caches one resource per user, for the 429 of
/// a full cache in each dialect's shape.
pub(crate) fn one_resource_state() -> AppState {
    let st = state();
    st.reconfigure(|s| {
        for b in s.bindings.iter_mut().filter(|b| b.name.as_str() == "contoso") {
            let bounds = CacheBounds { max_entries: 8, max_per_user: 1 };
            *b = Arc::new(binding("contoso", Some(CONTOSO_CLIENT_ID), None).with_cache(bounds, None));
        }
    });
    st
}

pub(crate) const LOOPBACK_PEER: ([u8; 4], u16) = ([127, 0, 0, 1], 40_000);

/// The router as a loopback peer sees it.
pub(crate) fn app(state: AppState) -> Router {
    router(state, None).into_router().layer(MockConnectInfo(SocketAddr::from(LOOPBACK_PEER)))
}

/// A GET with a loopback `Host`.
pub(crate) fn get(uri: &str) -> http::request::Builder {
    Request::get(uri).header(header::HOST, "127.0.0.1:50342")
}

/// An IMDS request with `Metadata: true`.
pub(crate) fn imds(query: &str) -> http::request::Builder {
    get(&format!("/metadata/identity/oauth2/token?{query}")).header("Metadata", "true")
}

/// An App Service request with the right identity header.
pub(crate) fn app_service(query: &str) -> http::request::Builder {
    get(&format!("/msi/token?{query}")).header("X-IDENTITY-HEADER", IDENTITY_HEADER)
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) json: Value,
}

impl Reply {
    /// The object's keys, sorted.
    pub(crate) fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    pub(crate) fn str(&self, key: &str) -> &str {
        self.json[key].as_str().unwrap_or_else(|| panic!("{key} is not a string in {}", self.json))
    }
}

/// Sends one request and checks the invariants every response must satisfy.
pub(crate) async fn send(app: &Router, req: http::request::Builder) -> Reply {
    send_body(app, req, "").await
}

/// Like [`send`], with a request body.
pub(crate) async fn send_body(app: &Router, req: http::request::Builder, body: &str) -> Reply {
    let response = app.clone().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "status {status}");
    let json: Value = serde_json::from_slice(&bytes).expect("every body is JSON");
    let retry_after = headers.contains_key(header::RETRY_AFTER);
    assert!(retry_after || status != StatusCode::TOO_MANY_REQUESTS, "429 without Retry-After");
    assert!(
        !retry_after || matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE),
        "Retry-After on {status}"
    );
    if status == StatusCode::OK {
        for key in ["message", "error", "error_description"] {
            assert!(json.get(key).is_none(), "{key} in a success body");
        }
    }
    Reply { status, headers, json }
}
