//! The native API (azd external-authentication shape): `POST /token`, bearer key, JSON body.

use http::StatusCode;
use serde_json::{Value, json};

use super::*;

fn post(key: &str) -> http::request::Builder {
    Request::post("/token?api-version=2023-07-12-preview")
        .header("Host", "127.0.0.1")
        .header("Content-Type", "application/json")
        .header("Authorization", format!("Bearer {key}"))
}

async fn call(app: &Router, req: http::request::Builder, body: Value) -> (StatusCode, Value) {
    let response = app.clone().oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = response.status();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn tenant_picks_the_profile_and_expiry_is_rfc3339() {
    let app = app(state());
    let scopes = json!(["https://management.azure.com//.default"]);
    let (status, body) =
        call(&app, post(NATIVE_KEY), json!({"scopes": scopes, "tenantId": "fabrikam.example"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "success", "{body}");
    assert!(
        body["token"].as_str().unwrap().starts_with("fake.fabrikam.example.https://management.azure.com/.")
    );
    let expires = body["expiresOn"].as_str().unwrap();
    let parsed = humantime::parse_rfc3339(expires).unwrap();
    assert!(parsed > std::time::SystemTime::now() + std::time::Duration::from_secs(3000), "{expires}");
    let (_, body) =
        call(&app, post(NATIVE_KEY), json!({"scopes": scopes, "tenantId": "CONTOSO.example"})).await;
    assert!(body["token"].as_str().unwrap().starts_with("fake.contoso.example."), "{body}");
    let (_, body) = call(&app, post(NATIVE_KEY), json!({"scopes": scopes})).await;
    assert!(body["token"].as_str().unwrap().starts_with("fake.contoso.example."), "no tenant: the default");
}

#[tokio::test]
async fn errors_are_readable_by_azd() {
    let app = app(state());
    let scopes = json!(["api://x/.default"]);
    let (status, body) =
        call(&app, post(NATIVE_KEY), json!({"scopes": scopes, "tenantId": "nowhere.example"})).await;
    assert_eq!(
        (status, body["status"].as_str(), body["code"].as_str()),
        (StatusCode::OK, Some("error"), Some("GetTokenError"))
    );
    assert!(body["message"].as_str().unwrap().contains("nowhere.example"));
    let (status, body) =
        call(&app, post(NATIVE_KEY), json!({"scopes": scopes, "tenantId": "needlogin.example"})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::OK, Some("NotSignedInError")), "{body}");
    let (status, body) = call(&app, post("wrong"), json!({"scopes": scopes})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!body.to_string().contains(NATIVE_KEY));
    let (status, _) = call(&app, post(NATIVE_KEY), json!({"scope": "x"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) =
        call(&app, post(NATIVE_KEY), json!({"scopes": ["https://graph.microsoft.com/User.Read"]})).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::OK, Some("GetTokenError")));
    let no_version = Request::post("/token")
        .header("Host", "localhost")
        .header("Authorization", format!("Bearer {NATIVE_KEY}"));
    assert_eq!(call(&app, no_version, json!({"scopes": scopes})).await.0, StatusCode::BAD_REQUEST);
}
