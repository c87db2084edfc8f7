//! Fuzz targets (time-boxed property tests, see `azbroker_testkit::fuzz`) for everything this
//! crate parses from upstream: token responses, OAuth error bodies, `Retry-After`, and the JWTs
//! Entra ID issues (decoded by the testkit's JWT reader). None may panic; a token response either
//! parses into a usable token or is a typed `BadResponse`.

use std::time::{Duration, SystemTime};

use azbroker_testkit::fuzz::fuzz;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::error_map::{parse_oauth_error, parse_retry_after};
use crate::response::TokenResponse;

/// JSON values shaped like Entra's bodies, with every field's type and presence varied.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::from),
        "[0-9]{0,12}".prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("access_token"),
        Just("token_type"),
        Just("expires_in"),
        Just("ext_expires_in"),
        Just("expires_on"),
        Just("refresh_token"),
        Just("error"),
        Just("error_description"),
        Just("error_codes"),
        Just("suberror"),
        Just("x"),
    ];
    let object = prop::collection::vec((keys, scalar.clone()), 0..8)
        .prop_map(|fields| Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
    prop_oneof![
        object.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..64),
        ".{0,64}".prop_map(String::into_bytes),
    ]
}

#[test]
fn fuzz_token_response_parsing() {
    fuzz("token response", body(), |bytes| {
        // Whatever parses must turn into a token without overflowing its lifetime arithmetic.
        if let Ok(t) = TokenResponse::from_json(&bytes) {
            let token = t.into_access_token();
            let _ = (token.expires_in_secs(), token.hash());
        }
        Ok(())
    });
}

#[test]
fn fuzz_oauth_error_parsing() {
    fuzz("oauth error body", body(), |bytes| {
        let _ = parse_oauth_error(&bytes);
        Ok(())
    });
}

#[test]
fn fuzz_retry_after_parsing() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    fuzz(
        "Retry-After",
        prop_oneof!["[0-9]{0,25}", "[ -~]{0,40}", "(Mon|Tue), [0-9]{2} Nov 20[0-9]{2} [0-9:]{8} GMT"],
        |v| {
            let _ = parse_retry_after(&v, now);
            Ok(())
        },
    );
}

#[test]
fn fuzz_jwt_decoding() {
    let segment = "[A-Za-z0-9_=-]{0,40}";
    let jwt = prop_oneof![
        (segment, segment, segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        ".{0,60}",
        prop::collection::vec(body(), 2..3).prop_map(|parts| {
            use base64::Engine as _;
            let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            format!("{}.{}.sig", enc(&parts[0]), enc(&parts[1]))
        }),
    ];
    fuzz("JWT", jwt, |t| {
        let _ = azbroker_testkit::decode_claims(&t);
        Ok(())
    });
}
