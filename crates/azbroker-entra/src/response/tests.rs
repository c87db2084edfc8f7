//! Unit tests for success-body parsing.

use serde_json::json;

use super::*;

fn parse(v: Value) -> Result<TokenResponse, UpstreamError> {
    TokenResponse::from_json(v.to_string().as_bytes())
}

#[test]
fn client_credentials_shape() {
    let r = parse(
        json!({"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ.a.b"}),
    )
    .unwrap();
    assert_eq!(r.access_token.expose(), "eyJ.a.b");
    assert_eq!(r.expires_in, Duration::from_secs(3599));
    assert!(r.refresh_token.is_none() && r.id_token.is_none() && r.client_info.is_none());
    let token = r.into_access_token();
    assert_eq!(token.secret().expose(), "eyJ.a.b");
    assert_eq!(token.lifetime(), Duration::from_secs(3599));
}

#[test]
fn user_grant_shape() {
    let r = parse(json!({
        "token_type":"bearer","scope":"https://management.core.windows.net//user_impersonation",
        "expires_in":"4999","access_token":"at","refresh_token":"rt","id_token":"it",
        "client_info":"eyJ1aWQiOiIxIiwidXRpZCI6IjIifQ","foci":"1"
    }))
    .unwrap();
    assert_eq!(r.expires_in, Duration::from_secs(4999));
    assert_eq!(r.refresh_token.unwrap().expose(), "rt");
    assert_eq!(r.id_token.unwrap().expose(), "it");
    assert_eq!(r.client_info.as_deref(), Some("eyJ1aWQiOiIxIiwidXRpZCI6IjIifQ"));
    assert_eq!(r.scope.as_deref(), Some("https://management.core.windows.net//user_impersonation"));
}

#[test]
fn expires_forms() {
    let ok = [json!(3600), json!("3600"), json!(" 3600 "), json!(3600.0)];
    for v in ok {
        let r = parse(json!({"access_token":"a","expires_in":v.clone()})).unwrap();
        assert_eq!(r.expires_in, Duration::from_secs(3600), "{v}");
    }
    let on = unix_now() + 1800;
    let r = parse(json!({"access_token":"a","expires_on":on.to_string()})).unwrap();
    assert!(r.expires_in.as_secs().abs_diff(1800) <= 2);
    let r = parse(json!({"access_token":"a","expires_on":on})).unwrap();
    assert!(r.expires_in.as_secs().abs_diff(1800) <= 2);
}

#[test]
fn rejects_with_field_names_only() {
    let token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.secret-payload";
    let cases = [
        (json!({"access_token": token}), "no expires_in"),
        (json!({"expires_in": 3600}), "no access_token"),
        (json!({"access_token": "", "expires_in": 3600}), "access_token"),
        (json!({"access_token": 5, "expires_in": 3600}), "access_token"),
        (json!({"access_token": token, "expires_in": -1}), "expires_in"),
        (json!({"access_token": token, "expires_in": 1.5}), "expires_in"),
        (json!({"access_token": token, "expires_in": "soon"}), "expires_in"),
        (json!({"access_token": token, "expires_in": "-5"}), "expires_in"),
        (json!({"access_token": token, "expires_in": null}), "expires_in"),
        (json!({"access_token": token, "expires_in": 3600, "token_type": "pop"}), "Bearer"),
        (json!({"access_token": token, "expires_in": 3600, "token_type": 1}), "Bearer"),
        (json!({"access_token": token, "expires_in": 99_999_999_999u64}), "implausibly long"),
        (json!({"access_token": token, "expires_on": 1000}), "past"),
        (json!({"access_token": token, "expires_on": "x"}), "expires_on"),
        (json!([token]), "not a JSON object"),
    ];
    for (body, want) in cases {
        let err = parse(body.clone()).unwrap_err();
        assert_eq!(err.kind(), "bad_response", "{body}");
        let text = format!("{err} {err:?}");
        assert!(text.contains(want), "{body}: {text}");
        assert!(!text.contains("secret-payload"), "{body}: {text}");
    }
    let err = parse(json!({"access_token": token, "ext_expires_in": 1})).unwrap_err().to_string();
    assert!(err.contains("fields present: access_token, ext_expires_in"), "{err}");
}

#[test]
fn garbage_is_bad_response() {
    for body in [&b""[..], b"<html>ok</html>", b"access_token=abc&expires_in=3600", b"null"] {
        let err = TokenResponse::from_json(body).unwrap_err();
        assert_eq!(err.kind(), "bad_response");
        assert!(!err.to_string().contains("abc"));
    }
}

#[test]
fn debug_redacts_tokens() {
    let r = parse(json!({
        "access_token":"AT-SECRET","refresh_token":"RT-SECRET","id_token":"ID-SECRET","expires_in":60
    }))
    .unwrap();
    let text = format!("{r:?}");
    for secret in ["AT-SECRET", "RT-SECRET", "ID-SECRET"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("expires_in"));
}
