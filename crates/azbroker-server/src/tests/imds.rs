//! The IMDS dialect as SDK clients and their discovery probes see it.

use http::StatusCode;
use serde_json::json;

use super::*;

const Q: &str = "api-version=2018-02-01&resource=https://management.azure.com";

fn assert_missing_metadata(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json,
        json!({"error":"invalid_request","error_description":"Required metadata header not specified"})
    );
}

#[tokio::test]
async fn success_body_has_exactly_the_imds_keys_all_strings() {
    let app = app(state());
    for resource in [ARM, "https://management.core.windows.net"] {
        let q = format!("api-version=2018-02-01&resource={resource}");
        let r = send(&app, imds(&q)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        assert_eq!(
            r.keys(),
            [
                "access_token",
                "client_id",
                "expires_in",
                "expires_on",
                "ext_expires_in",
                "not_before",
                "refresh_token",
                "resource",
                "token_type"
            ]
        );
        for (key, value) in r.json.as_object().unwrap() {
            assert!(value.is_string(), "{key} must be a JSON string");
        }
        assert_eq!(r.str("resource"), resource, "resource is echoed exactly");
        assert!(r.str("access_token").starts_with(&format!("fake.contoso.example.{resource}.")));
        assert_eq!(r.str("token_type"), "Bearer");
        assert_eq!(r.str("refresh_token"), "");
        assert_eq!(r.str("client_id"), CONTOSO_CLIENT_ID);
        let expires_in: u64 = r.str("expires_in").parse().unwrap();
        assert!((3590..=3600).contains(&expires_in), "{expires_in}");
        assert_eq!(r.str("ext_expires_in"), r.str("expires_in"));
        let expires_on: u64 = r.str("expires_on").parse().unwrap();
        let not_before: u64 = r.str("not_before").parse().unwrap();
        assert_eq!(expires_on - not_before, 3600);
        assert_eq!(r.headers[http::header::CACHE_CONTROL], "no-store");
    }
}

#[tokio::test]
async fn client_id_is_omitted_when_the_login_has_none() {
    let r = send(&app(state()), imds(&format!("{Q}&client_id={FABRIKAM_CLIENT_ID}"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json.get("client_id").is_none());
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."));
}

#[tokio::test]
async fn missing_metadata_comes_first_whatever_else_is_wrong() {
    let app = app(state());
    let base = "/metadata/identity/oauth2/token";
    for uri in [
        format!("{base}?{Q}"),
        base.to_owned(),
        format!("{base}?{Q}&client_id=unknown-id"),
        format!("{base}?api-version=2018-02-01&resource=a&resource=b"),
        format!("/p/nope{base}?{Q}"),
    ] {
        assert_missing_metadata(&send(&app, get(&uri)).await);
        assert_missing_metadata(&send(&app, get(&uri).header("X-Forwarded-For", "10.0.0.1")).await);
    }
    assert_missing_metadata(&send(&app, get(&format!("{base}?{Q}")).header("Metadata", "false")).await);
    assert_missing_metadata(&send(&app, get(&format!("{base}?{Q}")).header("Metadata", "")).await);
}

#[tokio::test]
async fn metadata_header_is_case_insensitive() {
    let app = app(state());
    let uri = format!("/metadata/identity/oauth2/token?{Q}");
    for value in ["True", "TRUE", "true"] {
        let r = send(&app, get(&uri).header("metadata", value)).await;
        assert_eq!(r.status, StatusCode::OK, "{value}");
    }
}

#[tokio::test]
async fn forwarded_requests_are_refused() {
    let app = app(state());
    for (name, value) in [("X-Forwarded-For", "10.1.2.3"), ("Forwarded", "for=10.1.2.3")] {
        let r = send(&app, imds(Q).header(name, value)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.str("error"), "invalid_request");
        assert!(r.str("error_description").contains(name), "{}", r.json);
    }
}

#[tokio::test]
async fn query_problems_are_400_invalid_request() {
    let app = app(state());
    let cases = [
        ("resource=https://vault.azure.net", "Required query variable 'api-version' is missing"),
        ("api-version=&resource=https://vault.azure.net", "Required query variable 'api-version' is missing"),
        ("api-version=2018-02-01", "Required query variable 'resource' is missing"),
        ("api-version=2018-02-01&resource=", "Required query variable 'resource' is missing"),
        ("api-version=2018-02-01&resource=a&resource=b", "Duplicate query parameter 'resource'"),
        ("api-version=x&api-version=y&resource=a", "Duplicate query parameter 'api-version'"),
        (
            "api-version=2018-02-01&resource=https://a%20https://b",
            "resource contains a space or control character",
        ),
        (
            "api-version=2018-02-01&resource=https://a+https://b",
            "resource contains a space or control character",
        ),
    ];
    for (query, description) in cases {
        let r = send(&app, imds(query)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.json, json!({"error":"invalid_request","error_description":description}), "{query}");
    }
    let r = send(&app, imds(&format!("{Q}&client_id={CONTOSO_CLIENT_ID}&object_id=x"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.str("error_description").contains("client_id"));
}

#[tokio::test]
async fn any_api_version_is_accepted() {
    let app = app(state());
    for v in ["2018-02-01", "2019-08-01", "2025-01-01"] {
        let r = send(&app, imds(&format!("api-version={v}&resource=https://vault.azure.net"))).await;
        assert_eq!(r.status, StatusCode::OK, "{v}");
    }
}

#[tokio::test]
async fn unknown_identity_is_400_identity_not_found() {
    let app = app(state());
    for param in ["client_id", "object_id", "msi_res_id", "mi_res_id", "principal_id", "msi-res-id"] {
        let r = send(&app, imds(&format!("{Q}&{param}=33333333-0000-0000-0000-000000000000"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{param}");
        assert_eq!(r.json, json!({"error":"invalid_request","error_description":"Identity not found"}));
    }
}

#[tokio::test]
async fn accept_any_client_id_maps_unknown_ids_to_the_default() {
    let app = app(state_with(directory("contoso", true)));
    let r = send(&app, imds(&format!("{Q}&client_id=33333333-0000-0000-0000-000000000000"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
}

#[tokio::test]
async fn empty_selector_counts_as_absent() {
    let app = app(state());
    let r = send(&app, imds(&format!("{Q}&client_id=&msi-res-id="))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
}

#[tokio::test]
async fn aliases_select_profiles_case_insensitively() {
    let app = app(state());
    let upper = FABRIKAM_CLIENT_ID.to_uppercase();
    let r = send(&app, imds(&format!("{Q}&client_id={upper}"))).await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."));
    let r = send(&app, imds(&format!("{Q}&msi_res_id={}", CONTOSO_MI_RES_ID.to_lowercase()))).await;
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
    let r = send(&app, imds(&format!("{Q}&object_id=fabrikam"))).await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."), "a profile name is an alias");
}

#[tokio::test]
async fn definitive_upstream_errors_are_400_naming_the_problem() {
    let app = app(state());
    let cases = [
        ("broken", "invalid_request", "AADSTS700082"),
        ("nores", "invalid_resource", "AADSTS500011"),
        ("needlogin", "invalid_request", "run `azbroker login me`"),
        ("refused", "invalid_request", "AADSTS90002"),
    ];
    for (profile, code, needle) in cases {
        let r = send(&app, imds(&format!("{Q}&client_id={profile}"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{profile}");
        assert_eq!(r.str("error"), code, "{profile}");
        assert!(r.str("error_description").contains(needle), "{profile}: {}", r.json);
    }
}

#[tokio::test]
async fn throttling_is_429_with_integer_retry_after() {
    let app = app(state());
    for _ in 0..2 {
        let r = send(&app, imds(&format!("{Q}&client_id=throttled"))).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        let secs: u64 = r.headers[http::header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        assert!((1..=7).contains(&secs), "{secs}");
    }
}

#[tokio::test]
async fn a_full_cache_is_429_throttled_with_retry_after() {
    let app = app(one_resource_state());
    assert_eq!(send(&app, imds(Q)).await.status, StatusCode::OK);
    let r = send(&app, imds("api-version=2018-02-01&resource=api://another")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.keys(), ["error", "error_description"]);
    assert_eq!(r.str("error"), "throttled");
    assert!(r.str("error_description").contains("max_cached_resources_per_user"), "{}", r.json);
    assert_eq!(r.headers[http::header::RETRY_AFTER], "60");
}

#[tokio::test]
async fn transient_upstream_failure_is_500_unknown() {
    let r = send(&app(state()), imds(&format!("{Q}&client_id=down"))).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.str("error"), "unknown");
    assert!(r.str("error_description").starts_with("Failed to get a token from Entra ID: "), "{}", r.json);
}

#[tokio::test]
async fn path_matching_is_lenient() {
    let app = app(state());
    for path in [
        "/metadata/identity/oauth2/token/",
        "/Metadata/Identity/OAuth2/Token",
        "/METADATA/identity/oauth2/token/",
    ] {
        let r = send(&app, get(&format!("{path}?{Q}")).header("Metadata", "true")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn path_prefix_selects_the_profile_and_wins_over_selectors() {
    let app = app(state());
    let uri = format!("/p/fabrikam/metadata/identity/oauth2/token?{Q}&client_id={CONTOSO_CLIENT_ID}");
    let r = send(&app, get(&uri).header("Metadata", "true")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."));
    let r =
        send(&app, get(&format!("/p/nope/metadata/identity/oauth2/token?{Q}")).header("Metadata", "true"))
            .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json,
        json!({"error":"invalid_request","error_description":"profile 'nope' is not configured"})
    );
}
