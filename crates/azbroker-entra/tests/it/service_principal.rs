//! `ServicePrincipalSource` as the engine uses it: scope from the resource, identity, secret-file
//! rotation and local configuration errors.

use azbroker_core::{FetchRequest, Resource, Secret, TokenSource};
use azbroker_entra::{SecretRef, ServicePrincipalSource};

use crate::stub::{Reply, Stub};
use crate::{CLIENT_ID, SECRET, TENANT, client, tenant};

fn request(resource: &str) -> FetchRequest {
    FetchRequest { tenant: tenant(), resource: Resource::parse(resource).unwrap() }
}

#[tokio::test]
async fn fetch_sends_resource_scope_and_returns_token() {
    let stub = Stub::start(vec![Reply::token("sp-token", 3599)]).await;
    let source = ServicePrincipalSource::new(
        client(stub.url()),
        CLIENT_ID.to_owned(),
        SecretRef::Inline(Secret::new(SECRET)),
    );
    assert_eq!(source.kind(), "service-principal");
    assert_eq!(source.client_id(), Some(CLIENT_ID));

    let token = source.fetch(&request("https://management.core.windows.net/")).await.unwrap();
    assert_eq!(token.secret().expose(), "sp-token");
    assert_eq!(token.lifetime().as_secs(), 3599);

    let req = stub.single_request();
    assert_eq!(req.path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(req.param("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(req.param("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(req.param("scope").as_deref(), Some("https://management.core.windows.net//.default"));
    assert_eq!(req.param("client_secret").as_deref(), Some(SECRET));
}

#[tokio::test]
async fn secret_file_is_reread_on_every_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client_secret");
    std::fs::write(&path, "first-secret\n").unwrap();
    let stub = Stub::start(vec![Reply::token("t", 3600)]).await;
    let source =
        ServicePrincipalSource::new(client(stub.url()), CLIENT_ID.to_owned(), SecretRef::File(path.clone()));

    source.fetch(&request("https://vault.azure.net")).await.unwrap();
    std::fs::write(&path, "second-secret\r\n").unwrap();
    source.fetch(&request("https://vault.azure.net")).await.unwrap();

    let sent: Vec<Option<String>> = stub.requests().iter().map(|r| r.param("client_secret")).collect();
    assert_eq!(sent, [Some("first-secret".to_owned()), Some("second-secret".to_owned())]);
}

#[tokio::test]
async fn unreadable_secret_file_is_config_error_without_upstream_call() {
    let dir = tempfile::tempdir().unwrap();
    let stub = Stub::start(vec![Reply::token("t", 3600)]).await;
    let missing = dir.path().join("gone");
    let source = ServicePrincipalSource::new(
        client(stub.url()),
        CLIENT_ID.to_owned(),
        SecretRef::File(missing.clone()),
    );
    let err = source.fetch(&request("https://vault.azure.net")).await.unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(err.is_definitive());
    let text = err.to_string();
    assert!(text.contains(&format!("cannot read client_secret_file {}", missing.display())), "{text}");

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let source =
        ServicePrincipalSource::new(client(stub.url()), CLIENT_ID.to_owned(), SecretRef::File(empty));
    let err = source.fetch(&request("https://vault.azure.net")).await.unwrap_err();
    assert_eq!(err.kind(), "config");
    assert!(stub.requests().is_empty());
}

#[tokio::test]
async fn upstream_errors_pass_through() {
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x",
        "error_codes": [7000215],
    });
    let stub = Stub::start(vec![Reply::json(401, body)]).await;
    let source = ServicePrincipalSource::new(
        client(stub.url()),
        CLIENT_ID.to_owned(),
        SecretRef::Inline(Secret::new(SECRET)),
    );
    let err = source.fetch(&request("https://vault.azure.net")).await.unwrap_err();
    assert_eq!(err.kind(), "invalid_client");
    assert!(err.to_string().contains("AADSTS7000215: Invalid client secret provided."), "{err}");
}
