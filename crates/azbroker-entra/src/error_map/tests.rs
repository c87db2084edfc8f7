//! Unit tests for the error mapping: real Entra-shaped bodies, Retry-After, description trimming.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn entra_body(error: &str, code: u32, text: &str) -> Vec<u8> {
    serde_json::json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {text}\r\nTrace ID: 0d7f7f36-3f5e-4bd6-9a5f-2b1c1d0e9a00\r\n\
             Correlation ID: 5b1f0e0a-0f5d-4a0e-8a3c-6f9e7c0e1b11\r\nTimestamp: 2025-01-01 00:00:00Z"
        ),
        "error_codes": [code],
        "timestamp": "2025-01-01 00:00:00Z",
        "trace_id": "0d7f7f36-3f5e-4bd6-9a5f-2b1c1d0e9a00",
        "correlation_id": "5b1f0e0a-0f5d-4a0e-8a3c-6f9e7c0e1b11",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    })
    .to_string()
    .into_bytes()
}

#[test]
fn oauth_errors_map_to_variants() {
    // (status, error, code, expected kind)
    let table = [
        (400, "invalid_grant", 700082, "invalid_grant"),
        (400, "invalid_grant", 50076, "interaction_required"),
        (400, "invalid_grant", 50079, "interaction_required"),
        (400, "invalid_grant", 53003, "interaction_required"),
        (400, "invalid_grant", 50158, "interaction_required"),
        (400, "invalid_grant", 50072, "interaction_required"),
        (400, "invalid_grant", 50074, "interaction_required"),
        (400, "interaction_required", 50001, "interaction_required"),
        (400, "consent_required", 65001, "interaction_required"),
        (401, "invalid_client", 7000215, "invalid_client"),
        (400, "unauthorized_client", 700016, "invalid_client"),
        (400, "invalid_resource", 500011, "invalid_resource"),
        (400, "invalid_scope", 70011, "invalid_resource"),
        (400, "temporarily_unavailable", 50196, "unavailable"),
        (400, "invalid_request", 90002, "refused"),
        (400, "unsupported_grant_type", 70003, "refused"),
        (401, "something_new", 1, "refused"),
        (403, "invalid_request", 90002, "refused"),
        (429, "invalid_request", 50196, "throttled"),
        (500, "server_error", 500, "unavailable"),
        (503, "temporarily_unavailable", 50196, "unavailable"),
    ];
    for (status, error, code, kind) in table {
        let body = entra_body(error, code, "Something happened.");
        let mapped = map_error_response(status, None, &body, &[]);
        assert_eq!(mapped.kind(), kind, "{status} {error} {code}: {mapped:?}");
    }
}

#[test]
fn variant_fields_are_filled() {
    let body = entra_body("invalid_client", 7000215, "Invalid client secret provided.");
    let mapped = map_error_response(401, None, &body, &[]);
    assert_eq!(
        mapped,
        UpstreamError::InvalidClient {
            error: "invalid_client".to_owned(),
            codes: vec![7000215],
            description: "AADSTS7000215: Invalid client secret provided.".to_owned(),
        }
    );

    let body = entra_body("invalid_grant", 50076, "Due to a configuration change you must use MFA.");
    let UpstreamError::InteractionRequired { codes, description } = map_error_response(400, None, &body, &[])
    else {
        panic!("expected InteractionRequired");
    };
    assert_eq!(codes, vec![50076]);
    assert_eq!(description, "AADSTS50076: Due to a configuration change you must use MFA.");

    let body = entra_body("temporarily_unavailable", 50196, "Busy.");
    let retry = Some(Duration::from_secs(7));
    assert_eq!(
        map_error_response(400, retry, &body, &[]),
        UpstreamError::Unavailable { status: 400, retry_after: retry }
    );
    assert_eq!(map_error_response(429, retry, b"", &[]), UpstreamError::Throttled { retry_after: retry });
    assert_eq!(
        map_error_response(502, retry, b"<html>bad gateway</html>", &[]),
        UpstreamError::Unavailable { status: 502, retry_after: retry }
    );
}

#[test]
fn non_oauth_bodies_are_bad_responses() {
    for body in [&b"<html>nope</html>"[..], b"", b"{}", b"[1,2]", br#"{"error": 5}"#, b"not json"] {
        let mapped = map_error_response(400, None, body, &[]);
        assert_eq!(mapped.kind(), "bad_response", "{body:?}");
    }
    let mapped = map_error_response(404, None, b"<html>secret-looking-body</html>", &[]);
    let text = mapped.to_string();
    assert!(text.contains("404"), "{text}");
    assert!(!text.contains("secret-looking-body"), "{text}");
    assert_eq!(map_error_response(302, None, b"", &[]).kind(), "bad_response");
}

#[test]
fn codes_tolerate_odd_shapes() {
    let body = br#"{"error":"invalid_grant","error_codes":["x", 50076, -1, 99999999999]}"#;
    assert_eq!(parse_oauth_error(body).unwrap().codes, vec![50076]);
    let body = br#"{"error":"invalid_grant","error_codes":"50076"}"#;
    let oauth = parse_oauth_error(body).unwrap();
    assert!(oauth.codes.is_empty());
    assert_eq!(oauth.description, None);
}

#[test]
fn description_is_first_line_only() {
    let cases = [
        (Some("AADSTS70016: Pending.\r\nTrace ID: x\r\nCorrelation ID: y"), "AADSTS70016: Pending."),
        (Some("AADSTS1: Unix line\nTrace ID: x"), "AADSTS1: Unix line"),
        (Some("AADSTS2: Bare CR\rTrace ID: x"), "AADSTS2: Bare CR"),
        (Some("  padded  \r\n"), "padded"),
        (Some("tab\there"), "tab here"),
        (Some(""), "no description given"),
        (Some("\r\nTrace ID: x"), "no description given"),
        (None, "no description given"),
    ];
    for (input, want) in cases {
        assert_eq!(describe(input, &[]), want, "{input:?}");
    }
}

#[test]
fn description_is_bounded() {
    let long = format!("AADSTS9: {}", "é".repeat(2000));
    let got = describe(Some(&long), &[]);
    assert!(got.starts_with("AADSTS9: é"));
    assert_eq!(got.chars().count(), MAX_DESCRIPTION_CHARS + 1);
    assert!(got.ends_with('…'));
    assert_eq!(describe(Some("short"), &[]), "short");
}

#[test]
fn secrets_are_scrubbed_from_quoted_text() {
    let secret = "s3cr3t~value.Q";
    let body = serde_json::json!({
        "error": "invalid_client",
        "error_description": format!("AADSTS7000215: Invalid client secret {secret} provided.\r\nTrace ID: x"),
        "error_codes": [7000215],
    })
    .to_string();
    let mapped = map_error_response(401, None, body.as_bytes(), &[secret, ""]);
    let text = format!("{mapped} {mapped:?}");
    assert!(!text.contains(secret), "{text}");
    assert!(text.contains("<redacted>"), "{text}");

    let body = serde_json::json!({"error": secret, "error_description": "x"}).to_string();
    let text = format!("{:?}", map_error_response(400, None, body.as_bytes(), &[secret]));
    assert!(!text.contains(secret), "{text}");
}

#[test]
fn error_codes_are_sanitised() {
    let body = serde_json::json!({"error": "bad\r\ncode <script>", "error_description": "x"}).to_string();
    let UpstreamError::Refused { error, .. } = map_error_response(400, None, body.as_bytes(), &[]) else {
        panic!("expected Refused");
    };
    assert_eq!(error, "badcodescript");
    let body = serde_json::json!({"error": "   ", "error_description": "x"}).to_string();
    let UpstreamError::Refused { error, .. } = map_error_response(400, None, body.as_bytes(), &[]) else {
        panic!("expected Refused");
    };
    assert_eq!(error, "unknown_error");
}

#[test]
fn retry_after_forms() {
    let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
    let cases = [
        ("0", Some(0)),
        ("120", Some(120)),
        (" 5 ", Some(5)),
        ("Wed, 21 Oct 2015 07:28:30 GMT", Some(30)),
        ("Wednesday, 21-Oct-15 07:29:00 GMT", Some(60)),
        ("Wed Oct 21 07:28:10 2015", Some(10)),
        ("Wed, 21 Oct 2015 07:00:00 GMT", Some(0)),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("99999999999999999999999", None),
    ];
    for (raw, want) in cases {
        assert_eq!(parse_retry_after(raw, now), want.map(Duration::from_secs), "{raw:?}");
    }
    assert!(parse_retry_after("10", SystemTime::now()).is_some());
}

#[test]
fn truncation_respects_char_boundaries() {
    assert_eq!(truncate_chars("abcdef".to_owned(), 3), "abc…");
    assert_eq!(truncate_chars("abc".to_owned(), 3), "abc");
    assert_eq!(truncate_chars("ééé".to_owned(), 2), "éé…");
}
