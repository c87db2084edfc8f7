//! End-to-end tests of the fake Entra authority over loopback HTTP with a real client
//! (reqwest). One test binary; each test starts its own server on a random port.

mod counters;
mod discovery;
mod errors;
mod faults;
mod lifecycle;
mod tokens;
mod users;

use azbroker_testkit::FakeEntra;
use serde_json::Value;

pub const APP: &str = "11111111-2222-3333-4444-555555555555";
pub const SECRET: &str = "Kq8~s3cr3t.value_with-chars";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const VAULT: &str = "https://vault.azure.net/.default";
pub const ARM: &str = "https://management.core.windows.net//.default";

/// A running fake with [`APP`]/[`SECRET`] registered.
pub async fn fake() -> FakeEntra {
    let fake = FakeEntra::start().await.unwrap();
    fake.register_app(APP, SECRET);
    fake
}

/// A plain-HTTP client. No proxy (loopback only) and no platform root store: loading it costs
/// more than a whole request here.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().tls_certs_only(std::iter::empty()).build().unwrap()
}

pub fn token_url(fake: &FakeEntra, tenant: &str) -> String {
    format!("{}/{tenant}/oauth2/v2.0/token", fake.url())
}

/// POSTs `form` to `tenant`'s token endpoint.
pub async fn post_form(fake: &FakeEntra, tenant: &str, form: &[(&str, &str)]) -> reqwest::Response {
    http().post(token_url(fake, tenant)).form(form).send().await.unwrap()
}

/// A client-credentials request for `scope` with the registered app.
pub async fn client_credentials(fake: &FakeEntra, tenant: &str, scope: &str) -> reqwest::Response {
    post_form(
        fake,
        tenant,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", APP),
            ("client_secret", SECRET),
            ("scope", scope),
        ],
    )
    .await
}

/// Asserts a successful token response and returns its access token.
pub async fn expect_token(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// Asserts an Entra-shaped error (PROTOCOLS.md §12.5) and returns its body.
pub async fn expect_error(resp: reqwest::Response, status: u16, error: &str, code: u64) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().get("retry-after").is_none() || status == 429 || status >= 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], error, "{body}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body}");
    let desc = body["error_description"].as_str().unwrap();
    let lines: Vec<&str> = desc.split("\r\n").collect();
    assert_eq!(lines.len(), 4, "{desc:?}");
    assert!(lines[0].starts_with(&format!("AADSTS{code}: ")), "{desc:?}");
    let trace_id = body["trace_id"].as_str().unwrap();
    let correlation_id = body["correlation_id"].as_str().unwrap();
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(uuid::Uuid::try_parse(trace_id).is_ok());
    assert!(uuid::Uuid::try_parse(correlation_id).is_ok());
    assert_eq!(lines[1], format!("Trace ID: {trace_id}"));
    assert_eq!(lines[2], format!("Correlation ID: {correlation_id}"));
    assert_eq!(lines[3], format!("Timestamp: {timestamp}"));
    assert_eq!(timestamp.len(), "2016-01-09 02:02:12Z".len());
    assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b' ');
    assert!(body["error_uri"].as_str().unwrap().ends_with(&format!("/error?code={code}")));
    body
}

pub fn description(body: &Value) -> &str {
    body["error_description"].as_str().unwrap()
}
