//! No secret in `Debug`, `Display` or log output: every public type, every error, and the debug
//! line of an upstream call.

use std::cell::RefCell;
use std::io::Write;
use std::sync::OnceLock;

use azbroker_core::{FetchRequest, Resource, Secret, TokenSource};
use azbroker_entra::{ClientCredential, HttpSettings, SecretRef, ServicePrincipalSource};

use crate::stub::{Reply, Stub};
use crate::{CLIENT_ID, SECRET, client, tenant};

const TOKEN: &str = "eyJ0eXAiOiJKV1QifQ.ACCESS-TOKEN-BODY.sig";

fn assert_clean(text: &str) {
    for secret in [SECRET, TOKEN, "REFRESH-TOKEN-BODY", "ID-TOKEN-BODY", "FILE-SECRET-BODY"] {
        assert!(!text.contains(secret), "leaked {secret} in: {text}");
    }
}

#[tokio::test]
async fn debug_of_public_types_has_no_secret() {
    let body = serde_json::json!({
        "token_type": "Bearer", "expires_in": 3600, "access_token": TOKEN,
        "refresh_token": "REFRESH-TOKEN-BODY", "id_token": "ID-TOKEN-BODY",
    });
    let stub = Stub::start(vec![Reply::json(200, body)]).await;
    let entra = client(stub.url());
    let secret = ClientCredential::Secret(Secret::new(SECRET));
    let assertion = ClientCredential::Assertion(Secret::new(SECRET));
    let response = entra.client_credentials(&tenant(), CLIENT_ID, &secret, "api://x/.default").await.unwrap();
    let mut text = format!("{entra:?} {secret:?} {assertion:?} {response:?}");
    text += &format!("{:?}", HttpSettings::new(stub.url()));
    let token = response.clone().into_access_token();
    text += &format!("{token:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "FILE-SECRET-BODY").unwrap();
    let refs = [SecretRef::Inline(Secret::new(SECRET)), SecretRef::File(path)];
    for r in refs {
        text += &format!("{r:?}");
        let source = ServicePrincipalSource::new(entra.clone(), CLIENT_ID.to_owned(), r);
        text += &format!("{source:?}");
    }
    assert_clean(&text);
    assert!(text.contains(CLIENT_ID), "the client id is not a secret: {text}");
}

#[tokio::test]
async fn errors_echoing_the_secret_are_scrubbed() {
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": format!("AADSTS7000215: Invalid client secret '{SECRET}' provided.\r\nTrace ID: x"),
        "error_codes": [7000215],
    });
    let stub = Stub::start(vec![Reply::json(401, body)]).await;
    let secret = ClientCredential::Secret(Secret::new(SECRET));
    let err = client(stub.url())
        .client_credentials(&tenant(), CLIENT_ID, &secret, "api://x/.default")
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert_clean(&text);
    assert!(text.contains("AADSTS7000215: Invalid client secret '<redacted>' provided."), "{text}");
}

#[tokio::test]
async fn setup_error_debug_names_path_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, format!("not a cert {SECRET}")).unwrap();
    let mut settings = HttpSettings::new(url::Url::parse("https://login.microsoftonline.com").unwrap());
    settings.ca_file = Some(path);
    let err = azbroker_entra::EntraClient::new(settings).unwrap_err();
    assert_clean(&format!("{err} {err:?}"));
}

thread_local! {
    static CAPTURED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes formatted log output into the current thread's `CAPTURED` buffer.
struct ThreadBuffer;

impl Write for ThreadBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.with(|c| c.borrow_mut().extend_from_slice(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing this thread's log output. The subscriber is the binary's *global* default:
/// with a single thread-scoped subscriber, tracing computes a callsite's interest from whichever
/// thread registers it first, so a concurrent test could switch the callsite off for good.
fn capture_this_thread() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadBuffer)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
    CAPTURED.with(|c| c.borrow_mut().clear());
}

#[tokio::test(flavor = "current_thread")]
async fn upstream_call_logs_one_line_without_secrets() {
    capture_this_thread();

    let stub = Stub::start(vec![Reply::token(TOKEN, 3600)]).await;
    let source = ServicePrincipalSource::new(
        client(stub.url()),
        CLIENT_ID.to_owned(),
        SecretRef::Inline(Secret::new(SECRET)),
    );
    let request =
        FetchRequest { tenant: tenant(), resource: Resource::parse("https://vault.azure.net").unwrap() };
    source.fetch(&request).await.unwrap();

    let logs = String::from_utf8(CAPTURED.with(|c| c.borrow().clone())).unwrap();
    assert_clean(&logs);
    let ours: Vec<&str> = logs.lines().filter(|l| l.contains("entra token request")).collect();
    assert_eq!(ours.len(), 1, "{logs}");
    let line = ours[0];
    for field in [
        "tenant=contoso.onmicrosoft.com",
        "grant=\"client_credentials\"",
        "scope=\"https://vault.azure.net/.default\"",
        "status=200",
        "latency_ms=",
        "outcome=\"ok\"",
    ] {
        assert!(line.contains(field), "missing {field} in {line}");
    }
}
