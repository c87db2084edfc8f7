//! The client-credentials grant on the wire: URL, headers, exact form fields, success parsing,
//! client settings (CA file, redirects, body bound).

use std::time::Duration;

use azbroker_core::Secret;
use azbroker_entra::client::JWT_BEARER_ASSERTION;
use azbroker_entra::{ClientCredential, EntraClient, HttpSettings, SetupError};

use crate::stub::{Reply, Stub};
use crate::{CLIENT_ID, SECRET, TENANT, client, tenant};

const ARM_SCOPE: &str = "https://management.core.windows.net//.default";

#[tokio::test]
async fn secret_grant_sends_exact_form() {
    let stub = Stub::start(vec![Reply::token("at-1", 3599)]).await;
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    let response =
        client(stub.url()).client_credentials(&tenant(), CLIENT_ID, &credential, ARM_SCOPE).await.unwrap();
    assert_eq!(response.access_token.expose(), "at-1");
    assert_eq!(response.expires_in, Duration::from_secs(3599));
    assert!(response.refresh_token.is_none());

    let req = stub.single_request();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(req.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(req.header("accept"), Some("application/json"));
    assert!(req.header("user-agent").unwrap().starts_with("azbroker/"));
    let want: Vec<(String, String)> = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT_ID),
        ("scope", ARM_SCOPE),
        ("client_secret", SECRET),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(req.form(), want);
    // The double slash survives encoding, and special characters in the secret are escaped.
    assert!(
        req.body.contains("scope=https%3A%2F%2Fmanagement.core.windows.net%2F%2F.default"),
        "{}",
        req.body
    );
    assert!(!req.body.contains(SECRET), "secret must be form-encoded: {}", req.body);
}

#[tokio::test]
async fn assertion_grant_sends_exact_form() {
    let stub = Stub::start(vec![Reply::token("at-2", 600)]).await;
    let credential = ClientCredential::Assertion(Secret::new("eyJhbGciOiJQUzI1NiJ9.e30.sig"));
    client(stub.url())
        .client_credentials(&tenant(), CLIENT_ID, &credential, "api://x/.default")
        .await
        .unwrap();
    let req = stub.single_request();
    let form = req.form();
    let keys: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["grant_type", "client_id", "scope", "client_assertion_type", "client_assertion"]);
    assert_eq!(req.param("scope").as_deref(), Some("api://x/.default"));
    assert_eq!(req.param("client_assertion_type").as_deref(), Some(JWT_BEARER_ASSERTION));
    assert_eq!(req.param("client_assertion").as_deref(), Some("eyJhbGciOiJQUzI1NiJ9.e30.sig"));
    assert_eq!(req.param("client_secret"), None);
}

#[tokio::test]
async fn authority_path_prefix_is_kept() {
    let stub = Stub::start(vec![Reply::token("at", 60)]).await;
    let authority = azbroker_entra::parse_authority_host(&format!("{}prefix/", stub.url())).unwrap();
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    client(authority).client_credentials(&tenant(), CLIENT_ID, &credential, ARM_SCOPE).await.unwrap();
    assert_eq!(stub.single_request().path, format!("/prefix/{TENANT}/oauth2/v2.0/token"));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let stub = Stub::start(vec![Reply::raw(302, "text/plain", "").header("location", "/elsewhere")]).await;
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    let err = client(stub.url())
        .client_credentials(&tenant(), CLIENT_ID, &credential, ARM_SCOPE)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "bad_response", "{err:?}");
    assert!(err.to_string().contains("302"), "{err}");
    assert_eq!(stub.requests().len(), 1);
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let huge = format!(r#"{{"access_token":"{}","expires_in":3600}}"#, "a".repeat(2 * 1024 * 1024));
    let stub = Stub::start(vec![Reply::raw(200, "application/json", huge)]).await;
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    let err = client(stub.url())
        .client_credentials(&tenant(), CLIENT_ID, &credential, ARM_SCOPE)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "bad_response");
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[tokio::test]
async fn user_grant_fields_are_carried() {
    let body = serde_json::json!({
        "token_type": "Bearer", "scope": "https://graph.microsoft.com/.default", "expires_in": "3599",
        "access_token": "at", "refresh_token": "rt", "id_token": "it", "client_info": "eyJ1aWQiOiJ1In0",
    });
    let stub = Stub::start(vec![Reply::json(200, body)]).await;
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    let r =
        client(stub.url()).client_credentials(&tenant(), CLIENT_ID, &credential, ARM_SCOPE).await.unwrap();
    assert_eq!(r.refresh_token.map(|s| s.expose().to_owned()).as_deref(), Some("rt"));
    assert_eq!(r.id_token.map(|s| s.expose().to_owned()).as_deref(), Some("it"));
    assert_eq!(r.client_info.as_deref(), Some("eyJ1aWQiOiJ1In0"));
    assert_eq!(r.scope.as_deref(), Some("https://graph.microsoft.com/.default"));
}

#[test]
fn ca_file_is_loaded_or_named_in_the_error() {
    let authority = url::Url::parse("https://login.microsoftonline.com").unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-ca.pem");
    let mut settings = HttpSettings::new(authority.clone());
    settings.ca_file = Some(fixture);
    let client = EntraClient::new(settings).unwrap();
    assert_eq!(client.authority_host(), &authority);

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let mut settings = HttpSettings::new(authority.clone());
    settings.ca_file = Some(missing.clone());
    let err = EntraClient::new(settings).unwrap_err();
    assert!(matches!(err, SetupError::CaFileUnreadable { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    let cases: [(&str, &[u8]); 3] = [
        ("empty.pem", b""),
        ("text.pem", b"this is not a certificate\n"),
        ("broken.pem", b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
    ];
    for (name, contents) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        let mut settings = HttpSettings::new(authority.clone());
        settings.ca_file = Some(path.clone());
        let err = EntraClient::new(settings).unwrap_err();
        assert!(matches!(err, SetupError::CaFileInvalid { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
}
