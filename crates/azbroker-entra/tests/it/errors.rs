//! Every failure mode of the token endpoint, from real Entra-shaped responses (PROTOCOLS.md §12.5),
//! mapped to the `UpstreamError` the engine acts on.

use std::time::{Duration, Instant, SystemTime};

use azbroker_core::{Secret, UpstreamError};
use azbroker_entra::ClientCredential;
use serde_json::json;

use crate::stub::{Reply, Stub};
use crate::{CLIENT_ID, SECRET, client, client_with_timeout, tenant};

const SCOPE: &str = "https://vault.azure.net/.default";

async fn call(stub: &Stub) -> UpstreamError {
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    client(stub.url()).client_credentials(&tenant(), CLIENT_ID, &credential, SCOPE).await.unwrap_err()
}

fn entra_error(error: &str, code: u32, text: &str) -> serde_json::Value {
    json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: 2ad4d3f2-57b6-4a1c-8d73-0c0c5d1d2b00\r\n\
             Correlation ID: 8c9f3a3e-4c55-4f5e-9d6c-0a7a3f0f4e11\r\nTimestamp: 2025-06-01 10:00:00Z"
        ),
        "error_codes": [code],
        "timestamp": "2025-06-01 10:00:00Z",
        "trace_id": "2ad4d3f2-57b6-4a1c-8d73-0c0c5d1d2b00",
        "correlation_id": "8c9f3a3e-4c55-4f5e-9d6c-0a7a3f0f4e11",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    })
}

#[tokio::test]
async fn oauth_errors_from_entra() {
    let cases = [
        (
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '11111111-2222-3333-4444-555555555555'.",
        ),
        (
            400,
            "unauthorized_client",
            700016,
            "Application with identifier '11111111-2222-3333-4444-555555555555' was not found in the directory 'Contoso'.",
        ),
        (
            400,
            "invalid_resource",
            500011,
            "The resource principal named https://vault.azure.net was not found in the tenant named Contoso.",
        ),
        (400, "invalid_scope", 1002012, "The provided value for scope https://vault.azure.net is not valid."),
        (400, "invalid_grant", 700082, "The refresh token has expired due to inactivity."),
        (
            400,
            "invalid_grant",
            50076,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access 'https://vault.azure.net'.",
        ),
        (400, "invalid_grant", 53003, "Access has been blocked by Conditional Access policies."),
        (
            400,
            "interaction_required",
            50079,
            "Due to a configuration change made by your administrator, you must enroll in multi-factor authentication.",
        ),
        (400, "invalid_request", 90002, "Tenant 'contoso.onmicrosoft.com' not found."),
    ];
    for (status, error, code, text) in cases {
        let stub = Stub::start(vec![Reply::json(status, entra_error(error, code, text))]).await;
        let err = call(&stub).await;
        let description = format!("AADSTS{code}: {text}");
        let want = match (error, code) {
            (_, 50076 | 53003 | 50079) => {
                UpstreamError::InteractionRequired { codes: vec![code], description }
            }
            ("invalid_grant", _) => UpstreamError::InvalidGrant { codes: vec![code], description },
            ("invalid_client" | "unauthorized_client", _) => {
                UpstreamError::InvalidClient { error: error.to_owned(), codes: vec![code], description }
            }
            ("invalid_resource" | "invalid_scope", _) => {
                UpstreamError::InvalidResource { error: error.to_owned(), codes: vec![code], description }
            }
            _ => UpstreamError::Refused { error: error.to_owned(), codes: vec![code], description },
        };
        assert_eq!(err, want, "{status} {error} {code}");
        assert!(!err.to_string().contains("Trace ID"), "{err}");
        assert!(err.is_definitive());
    }
}

#[tokio::test]
async fn temporarily_unavailable_is_retryable() {
    let body = entra_error("temporarily_unavailable", 50196, "The server is temporarily unavailable.");
    let stub = Stub::start(vec![Reply::json(400, body).header("retry-after", "12")]).await;
    let err = call(&stub).await;
    assert_eq!(err, UpstreamError::Unavailable { status: 400, retry_after: Some(Duration::from_secs(12)) });
    assert!(!err.is_definitive());
}

#[tokio::test]
async fn throttled_with_retry_after() {
    let stub =
        Stub::start(vec![Reply::raw(429, "text/plain", "slow down").header("Retry-After", "30")]).await;
    assert_eq!(call(&stub).await, UpstreamError::Throttled { retry_after: Some(Duration::from_secs(30)) });

    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let stub = Stub::start(vec![Reply::json(429, json!({})).header("retry-after", &at)]).await;
    let UpstreamError::Throttled { retry_after: Some(wait) } = call(&stub).await else {
        panic!("expected Throttled with a wait");
    };
    assert!((Duration::from_secs(115)..=Duration::from_secs(120)).contains(&wait), "{wait:?}");

    let stub = Stub::start(vec![Reply::raw(429, "text/plain", "")]).await;
    assert_eq!(call(&stub).await, UpstreamError::Throttled { retry_after: None });
}

#[tokio::test]
async fn server_errors_are_unavailable() {
    let stub = Stub::start(vec![
        Reply::raw(503, "text/html", "<html>Service Unavailable</html>").header("retry-after", "5"),
    ])
    .await;
    assert_eq!(
        call(&stub).await,
        UpstreamError::Unavailable { status: 503, retry_after: Some(Duration::from_secs(5)) }
    );

    let body = entra_error("server_error", 50000, "There was an error issuing a token.");
    let stub = Stub::start(vec![Reply::json(500, body)]).await;
    assert_eq!(call(&stub).await, UpstreamError::Unavailable { status: 500, retry_after: None });
}

#[tokio::test]
async fn garbage_is_bad_response() {
    let cases = [
        Reply::raw(200, "text/html", "<html><body>Sign in</body></html>"),
        Reply::json(200, json!({"access_token": "tok-in-garbage"})),
        Reply::json(200, json!({"expires_in": 3600})),
        Reply::json(200, json!({"access_token": "tok-in-garbage", "expires_in": 3600, "token_type": "pop"})),
        Reply::raw(400, "text/html", "<html>tok-in-garbage</html>"),
        Reply::raw(404, "text/plain", "not found"),
    ];
    for reply in cases {
        let stub = Stub::start(vec![reply.clone()]).await;
        let err = call(&stub).await;
        assert_eq!(err.kind(), "bad_response", "{reply:?}: {err:?}");
        assert!(!format!("{err} {err:?}").contains("tok-in-garbage"), "{err:?}");
    }
}

#[tokio::test]
async fn slow_upstream_times_out() {
    let stub = Stub::start(vec![Reply::token("late", 3600).delay(Duration::from_secs(5))]).await;
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    let started = Instant::now();
    let err = client_with_timeout(stub.url(), Duration::from_millis(300))
        .client_credentials(&tenant(), CLIENT_ID, &credential, SCOPE)
        .await
        .unwrap_err();
    assert_eq!(err, UpstreamError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

#[tokio::test]
async fn connection_refused_is_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let authority = url::Url::parse(&format!("http://{addr}/")).unwrap();
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    let err =
        client(authority).client_credentials(&tenant(), CLIENT_ID, &credential, SCOPE).await.unwrap_err();
    let UpstreamError::Network(reason) = &err else {
        panic!("expected Network, got {err:?}");
    };
    assert!(reason.starts_with("cannot connect"), "{reason}");
    assert!(!reason.contains(SECRET), "{reason}");
    assert!(!err.is_definitive());
}
