//! The Azure ML compute-instance dialect: `GET /MSI/auth` with `secret`, and the secret-less
//! form `POST` azureml-core sends, answered in the Cloud Shell format.

use http::StatusCode;

use super::*;
use crate::DEFAULT_IDENTITY_CLIENT_ID;

const Q: &str = "api-version=2017-09-01&resource=https://management.azure.com/";

fn ml(query: &str) -> http::request::Builder {
    get(&format!("/MSI/auth?{query}")).header("secret", MSI_SECRET)
}

#[tokio::test]
async fn success_body_has_numeric_expiry_like_the_real_service() {
    let r = send(&app(state()), ml(Q)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.keys(), ["access_token", "expires_in", "expires_on", "resource", "token_type"]);
    assert!(r.json["expires_in"].is_u64() && r.json["expires_on"].is_u64(), "{}", r.json);
    assert!(r.json["expires_on"].as_u64().unwrap() > azbroker_core::unix_now() + 3000);
    assert_eq!(r.str("resource"), "https://management.azure.com/");
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
}

#[tokio::test]
async fn secret_is_required_and_never_echoed() {
    let app = app(state());
    let uri = format!("/msi/auth?{Q}");
    let r = send(&app, get(&uri)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.str("message").contains("secret"));
    for wrong in [IDENTITY_HEADER, "x", &MSI_SECRET[1..]] {
        let r = send(&app, get(&uri).header("secret", wrong)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(!r.json.to_string().contains(MSI_SECRET));
    }
    assert_eq!(send(&app, get(&uri).header("Secret", MSI_SECRET)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn clientid_selects_and_the_default_id_means_the_default() {
    let app = app(state());
    let r = send(&app, ml(&format!("{Q}&clientid={FABRIKAM_CLIENT_ID}"))).await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."), "{}", r.json);
    for default in [DEFAULT_IDENTITY_CLIENT_ID, "", "CLIENTID"] {
        let r = send(&app, ml(&format!("{Q}&clientid={default}"))).await;
        assert!(r.str("access_token").starts_with("fake.contoso.example."), "{default}: {}", r.json);
    }
    let prefixed = get(&format!("/p/fabrikam/MSI/auth/?{Q}&clientid={DEFAULT_IDENTITY_CLIENT_ID}"));
    let r = send(&app, prefixed.header("secret", MSI_SECRET)).await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."), "{}", r.json);
    let r = send(&app, ml(&format!("{Q}&clientid=nobody"))).await;
    assert_eq!((r.status, r.str("message")), (StatusCode::BAD_REQUEST, "Identity not found"));
}

#[tokio::test]
async fn msrestazure_unencoded_resource_and_trailing_slash() {
    // msrestazure: '{MSI_ENDPOINT}/?resource={resource}&api-version=2017-09-01', not encoded.
    let req = get("/MSI/auth/?resource=https://vault.azure.net&api-version=2017-09-01");
    let r = send(&app(state()), req.header("secret", MSI_SECRET)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.str("resource"), "https://vault.azure.net");
}

#[tokio::test]
async fn azureml_core_post_is_answered_in_the_cloud_shell_format() {
    let app = app(state());
    let post = || Request::post("/MSI/auth").header("Host", "localhost").header("Metadata", "true");
    let r = send_body(&app, post(), "resource=https%3A%2F%2Fmanagement.azure.com%2F").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.keys(),
        ["access_token", "expires_in", "expires_on", "not_before", "refresh_token", "resource", "token_type"]
    );
    assert_eq!(r.str("resource"), "https://management.azure.com/");
    let r = send_body(&app, post(), &format!("resource=x&client_id={FABRIKAM_CLIENT_ID}")).await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."));
    let no_metadata = Request::post("/MSI/auth").header("Host", "localhost");
    let r = send_body(&app, no_metadata, "resource=x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"]["message"], "Required metadata header not specified");
}

/// MSAL4J has no Azure ML source: with `MSI_ENDPOINT` it sends Cloud Shell's GET (`resource` only,
/// `Metadata: true`, no secret). That is answered in the Cloud Shell format; a request carrying
/// `secret` is always judged by it, and one with neither header is refused for the missing secret.
#[tokio::test]
async fn msal4j_secretless_get_with_metadata_gets_the_cloud_shell_answer() {
    let app = app(state());
    let r =
        send(&app, get("/MSI/auth?resource=https://management.azure.com/").header("Metadata", "true")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["expires_on"].is_string(), "Cloud Shell format: {}", r.json);
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
    let wrong = get(&format!("/msi/auth?{Q}")).header("Metadata", "true").header("secret", "wrong");
    let r = send(&app, wrong).await;
    assert_eq!(
        (r.status, r.json["statusCode"].as_u64()),
        (StatusCode::UNAUTHORIZED, Some(401)),
        "{}",
        r.json
    );
    let r = send(&app, get(&format!("/msi/auth?{Q}"))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.json);
    assert!(r.json["message"].as_str().unwrap().contains("'secret'"), "{}", r.json);
}
