//! `/metrics` in process: what requests, denials and the engine's counters look like in the
//! exposition, that labels are escaped, and that no token or secret ever appears.

use super::*;

async fn scrape(app: &Router) -> String {
    // Root: an administrator.
    let req = get("/metrics").extension(azbroker_core::Caller { uid: 0 }).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain; version=0.0.4; charset=utf-8");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The value of the sample line that starts with `series` (name and labels, exactly).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn requests_cache_upstream_and_denials_are_counted() {
    let state = state();
    let app = app(state.clone());
    let q = format!("api-version=2018-02-01&resource={ARM}");
    let mut token = String::new();
    for _ in 0..3 {
        let r = send(&app, imds(&q)).await;
        assert_eq!(r.status, StatusCode::OK);
        token = r.str("access_token").to_owned();
    }
    let r = send(&app, app_service(&format!("api-version=2019-08-01&resource={ARM}"))).await;
    assert_eq!(r.status, StatusCode::OK);
    // Refusals: no Metadata header (before any profile), an unknown identity, a broken login.
    assert_eq!(send(&app, get(&format!("/metadata/identity/oauth2/token?{q}"))).await.status, 400);
    assert_eq!(send(&app, imds(&format!("{q}&client_id=nobody"))).await.status, 400);
    assert_eq!(send(&app, imds(&format!("{q}&client_id=broken"))).await.status, 400);
    // A guard refusal (not loopback) counts as a denial too.
    let remote = router(state.clone(), None)
        .into_router()
        .layer(MockConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5))));
    assert_eq!(send(&remote, imds(&q)).await.status, 403);

    let text = scrape(&app).await;
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(v(r#"azbroker_requests_total{dialect="imds",profile="contoso",status="200"}"#), 3.0);
    assert_eq!(v(r#"azbroker_requests_total{dialect="app_service",profile="contoso",status="200"}"#), 1.0);
    assert_eq!(v(r#"azbroker_requests_total{dialect="imds",profile="",status="400"}"#), 2.0);
    assert_eq!(v(r#"azbroker_requests_total{dialect="imds",profile="broken",status="400"}"#), 1.0);
    assert_eq!(v(r#"azbroker_denials_total{reason="missing_metadata"}"#), 1.0);
    assert_eq!(v(r#"azbroker_denials_total{reason="identity_not_found"}"#), 1.0);
    assert_eq!(v(r#"azbroker_denials_total{reason="not_loopback"}"#), 1.0);
    assert!(
        value(&text, r#"azbroker_denials_total{reason="invalid_grant"}"#).is_none(),
        "upstream errors are not denials"
    );
    assert_eq!(v(r#"azbroker_cache_requests_total{profile="contoso",result="miss"}"#), 1.0);
    assert_eq!(v(r#"azbroker_cache_requests_total{profile="contoso",result="hit"}"#), 3.0);
    assert_eq!(v(r#"azbroker_upstream_requests_total{profile="contoso"}"#), 1.0);
    assert_eq!(v(r#"azbroker_upstream_errors_total{profile="broken",kind="invalid_grant"}"#), 1.0);
    assert_eq!(v(r#"azbroker_upstream_request_duration_seconds_count{profile="contoso"}"#), 1.0);
    assert_eq!(v(r#"azbroker_upstream_request_duration_seconds_bucket{profile="contoso",le="+Inf"}"#), 1.0);
    let expiry = v(&format!(r#"azbroker_token_expiry_seconds{{profile="contoso",resource="{ARM}"}}"#));
    assert!((3500.0..=3600.0).contains(&expiry), "{expiry}");
    assert_eq!(v(r#"azbroker_profile_needs_attention{profile="broken"}"#), 1.0);
    assert_eq!(v(r#"azbroker_profile_needs_attention{profile="contoso"}"#), 0.0);
    assert_eq!(v("azbroker_logins_needing_attention"), 1.0);
    assert_eq!(v("azbroker_cache_entries"), 2.0);

    // Every line is a comment or `name{labels} value`, every name prefixed; no secrets.
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP azbroker_")
                || line.starts_with("# TYPE azbroker_")
                || line.starts_with("azbroker_"),
            "{line}"
        );
    }
    assert!(!text.contains(&token), "a token leaked into /metrics");
    assert!(!text.contains(IDENTITY_HEADER), "the identity header leaked into /metrics");
}

#[tokio::test]
async fn client_chosen_resource_strings_are_escaped() {
    let state = state();
    let app = app(state.clone());
    let nasty = r#"api://we"ird\res"#;
    let q = format!(
        "api-version=1&resource={}",
        form_urlencoded::byte_serialize(nasty.as_bytes()).collect::<String>()
    );
    assert_eq!(send(&app, imds(&q)).await.status, 200);
    let text = scrape(&app).await;
    assert!(
        text.contains(r#"azbroker_token_expiry_seconds{profile="contoso",resource="api://we\"ird\\res"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn only_administrators_read_metrics_on_a_token_listener() {
    let app = app(state());
    for caller in [None, Some(4242)] {
        let mut req = get("/metrics");
        if let Some(uid) = caller {
            req = req.extension(azbroker_core::Caller { uid });
        }
        let response = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{caller:?}");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert!(!String::from_utf8_lossy(&bytes).contains("azbroker_"), "{caller:?}");
    }
    assert!(scrape(&app).await.contains("azbroker_build_info"));
}
