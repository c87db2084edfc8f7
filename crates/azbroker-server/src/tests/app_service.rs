//! The App Service 2019-08-01 dialect as MSAL and the SDKs see it.

use http::StatusCode;

use super::*;

const Q: &str = "api-version=2019-08-01&resource=https://vault.azure.net";

/// The App Service error shape: `statusCode` (number), `message`, `correlationId` (a UUID).
fn assert_error_shape(r: &Reply, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.json);
    assert_eq!(r.keys(), ["correlationId", "message", "statusCode"]);
    assert_eq!(r.json["statusCode"].as_u64(), Some(u64::from(status.as_u16())));
    let id = r.str("correlationId");
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(id.matches('-').count(), 4, "{id}");
}

#[tokio::test]
async fn success_body_has_exactly_the_app_service_keys() {
    let app = app(state());
    for resource in [ARM, "https://management.core.windows.net"] {
        let r = send(&app, app_service(&format!("api-version=2019-08-01&resource={resource}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(r.keys(), ["access_token", "client_id", "expires_on", "resource", "token_type"]);
        for (key, value) in r.json.as_object().unwrap() {
            assert!(value.is_string(), "{key} must be a JSON string");
        }
        assert_eq!(r.str("resource"), resource);
        assert_eq!(r.str("token_type"), "Bearer");
        assert_eq!(r.str("client_id"), CONTOSO_CLIENT_ID);
        let expires_on: u64 = r.str("expires_on").parse().expect("epoch digits");
        assert!(expires_on > azbroker_core::unix_now() + 3000);
    }
    let r = send(&app, app_service(&format!("{Q}&principal_id={FABRIKAM_CLIENT_ID}"))).await;
    assert_eq!(r.keys(), ["access_token", "expires_on", "resource", "token_type"]);
}

#[tokio::test]
async fn identity_header_is_required_and_compared_exactly() {
    let app = app(state());
    let uri = format!("/msi/token?{Q}");
    let missing = send(&app, get(&uri)).await;
    assert_error_shape(&missing, StatusCode::UNAUTHORIZED);
    assert!(missing.str("message").contains("X-IDENTITY-HEADER"));
    for wrong in ["nope", "", &IDENTITY_HEADER[1..], &format!("{IDENTITY_HEADER}x")] {
        let r = send(&app, get(&uri).header("X-IDENTITY-HEADER", wrong)).await;
        assert_error_shape(&r, StatusCode::UNAUTHORIZED);
        assert!(!r.json.to_string().contains(IDENTITY_HEADER), "the secret is never echoed");
    }
    let r = send(&app, get(&uri).header("x-identity-header", IDENTITY_HEADER)).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn identity_header_is_checked_before_the_query() {
    let r = send(&app(state()), get("/msi/token")).await;
    assert_error_shape(&r, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forwarded_and_bad_queries_are_400() {
    let app = app(state());
    let r = send(&app, app_service(Q).header("X-Forwarded-For", "10.0.0.1")).await;
    assert_error_shape(&r, StatusCode::BAD_REQUEST);
    for (query, message) in [
        ("api-version=2019-08-01&resource=a&resource=a", "Duplicate query parameter 'resource'"),
        ("resource=https://vault.azure.net", "Required query variable 'api-version' is missing"),
        ("api-version=2019-08-01", "Required query variable 'resource' is missing"),
        ("api-version=2019-08-01&resource=a%20b", "resource contains a space or control character"),
    ] {
        let r = send(&app, app_service(query)).await;
        assert_error_shape(&r, StatusCode::BAD_REQUEST);
        assert_eq!(r.str("message"), message);
    }
}

#[tokio::test]
async fn selectors_and_unknown_identities() {
    let app = app(state());
    for param in ["client_id", "object_id", "principal_id", "mi_res_id", "msi_res_id"] {
        let r = send(&app, app_service(&format!("{Q}&{param}={FABRIKAM_CLIENT_ID}"))).await;
        assert_eq!(r.status, StatusCode::OK, "{param}");
        assert!(r.str("access_token").starts_with("fake.fabrikam.example."), "{param}");
    }
    let r = send(&app, app_service(&format!("{Q}&client_id=44444444-0000-0000-0000-000000000000"))).await;
    assert_error_shape(&r, StatusCode::BAD_REQUEST);
    assert_eq!(r.str("message"), "Identity not found");
    let r = send(&app, app_service(&format!("{Q}&client_id="))).await;
    assert_eq!(r.status, StatusCode::OK, "empty selector is absent");
}

#[tokio::test]
async fn upstream_errors_keep_the_app_service_shape() {
    let app = app(state());
    let r = send(&app, app_service(&format!("{Q}&client_id=broken"))).await;
    assert_error_shape(&r, StatusCode::BAD_REQUEST);
    assert!(r.str("message").contains("AADSTS700082"));
    let r = send(&app, app_service(&format!("{Q}&client_id=throttled"))).await;
    assert_error_shape(&r, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[http::header::RETRY_AFTER], "7");
    let r = send(&app, app_service(&format!("{Q}&client_id=down"))).await;
    assert_error_shape(&r, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.str("message").starts_with("Failed to get a token from Entra ID: "));
}

#[tokio::test]
async fn a_full_cache_keeps_the_app_service_shape() {
    let app = app(one_resource_state());
    assert_eq!(send(&app, app_service(Q)).await.status, StatusCode::OK);
    let r = send(&app, app_service("api-version=2019-08-01&resource=api://another")).await;
    assert_error_shape(&r, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.str("message").contains("max_cached_resources_per_user"), "{}", r.json);
    assert_eq!(r.headers[http::header::RETRY_AFTER], "60");
}

#[tokio::test]
async fn paths_are_lenient_and_take_a_profile_prefix() {
    let app = app(state());
    for path in ["/MSI/token", "/msi/token/", "/MSI/TOKEN/", "/p/fabrikam/MSI/token/"] {
        let req = get(&format!("{path}?{Q}")).header("X-IDENTITY-HEADER", IDENTITY_HEADER);
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let tenant = if path.starts_with("/p/") { "fabrikam" } else { "contoso" };
        assert!(r.str("access_token").starts_with(&format!("fake.{tenant}.example.")), "{path}");
    }
}

/// App Service supports token revocation like Service Fabric: a client asking again with
/// `token_sha256_to_refresh` (and `xms_cc`) after a claims challenge must not be handed the
/// revoked token from the cache.
#[tokio::test]
async fn token_sha256_to_refresh_gets_a_different_token() {
    let st = state();
    super::service_fabric::revocation_gets_a_different_token(&st, &app(st.clone()), app_service).await;
}
