//! The Cloud Shell dialect: `POST /oauth2/token`, form body, `Metadata: true`.

use http::StatusCode;

use super::*;

fn post() -> http::request::Builder {
    Request::post("/oauth2/token")
        .header("Host", "localhost:50342")
        .header("Metadata", "true")
        .header("Content-Type", "application/x-www-form-urlencoded")
}

/// `{"error":{"code","message"}}`, nothing else.
fn assert_error_shape(r: &Reply, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.keys(), ["error"]);
    let mut inner: Vec<_> = r.json["error"].as_object().unwrap().keys().cloned().collect();
    inner.sort();
    assert_eq!(inner, ["code", "message"]);
}

#[tokio::test]
async fn success_body_is_all_strings() {
    let r = send_body(&app(state()), post(), "resource=https://storage.azure.com/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    for (key, value) in r.json.as_object().unwrap() {
        assert!(value.is_string(), "{key}");
    }
    assert_eq!(r.str("resource"), "https://storage.azure.com/");
    assert_eq!(r.str("refresh_token"), "");
    let on: u64 = r.str("expires_on").parse().unwrap();
    let before: u64 = r.str("not_before").parse().unwrap();
    assert_eq!(on - before, 3600);
}

#[tokio::test]
async fn errors_keep_the_cloud_shell_shape() {
    let app = app(state());
    let no_metadata = Request::post("/oauth2/token").header("Host", "localhost");
    assert_error_shape(&send_body(&app, no_metadata, "resource=x").await, StatusCode::BAD_REQUEST);
    let r = send_body(&app, post(), "").await;
    assert_error_shape(&r, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"]["message"], "Required query variable 'resource' is missing");
    let r = send_body(&app, post(), "resource=https%3A%2F%2Fa%20https%3A%2F%2Fb").await;
    assert_error_shape(&r, StatusCode::BAD_REQUEST);
    let r = send_body(&app, post(), "resource=x&resource=y").await;
    assert_error_shape(&r, StatusCode::BAD_REQUEST);
    let big = format!("resource={}", "a".repeat(crate::dialect::MAX_FORM_BYTES));
    assert_error_shape(&send_body(&app, post(), &big).await, StatusCode::BAD_REQUEST);
    let r = send_body(&app, post(), "resource=x&client_id=broken").await;
    assert_error_shape(&r, StatusCode::BAD_REQUEST);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("AADSTS700082"));
    let r = send_body(&app, post(), "resource=x&client_id=throttled").await;
    assert_error_shape(&r, StatusCode::TOO_MANY_REQUESTS);
    let put = Request::put("/oauth2/token").header("Host", "localhost").header("Metadata", "true");
    assert_eq!(send(&app, put).await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_full_cache_keeps_the_cloud_shell_shape() {
    let app = app(one_resource_state());
    assert_eq!(send_body(&app, post(), "resource=api://one").await.status, StatusCode::OK);
    let r = send_body(&app, post(), "resource=api://another").await;
    assert_error_shape(&r, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.json["error"]["message"].as_str().unwrap().contains("max_cached_resources_per_user"));
    assert_eq!(r.headers[http::header::RETRY_AFTER], "60");
}

#[tokio::test]
async fn prefix_and_selectors_choose_the_profile() {
    let app = app(state());
    let req =
        Request::post("/p/fabrikam/oauth2/token/").header("Host", "localhost").header("Metadata", "True");
    let r = send_body(&app, req, "resource=x").await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."), "{}", r.json);
    let r = send_body(&app, post(), &format!("resource=x&msi_res_id={CONTOSO_MI_RES_ID}")).await;
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
}

/// MSAL4J's Cloud Shell request: `GET $MSI_ENDPOINT?resource=R` with `Metadata: true`, no
/// api-version, no body.
#[tokio::test]
async fn msal4j_get_with_the_resource_in_the_query_is_served() {
    let app = app(state());
    let r =
        send(&app, get("/oauth2/token?resource=https://storage.azure.com/").header("Metadata", "true")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.str("resource"), "https://storage.azure.com/");
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
    assert!(r.json["expires_on"].is_string());
    let r = send(
        &app,
        get("/oauth2/token?resource=x&client_id=22222222-2222-2222-2222-222222222222")
            .header("Metadata", "true"),
    )
    .await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."), "{}", r.json);
    assert_error_shape(&send(&app, get("/oauth2/token?resource=x")).await, StatusCode::BAD_REQUEST);
    assert_error_shape(
        &send(&app, get("/oauth2/token").header("Metadata", "true")).await,
        StatusCode::BAD_REQUEST,
    );
}
