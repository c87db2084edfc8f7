//! JSON response building shared by every endpoint: one buffer per body, `Content-Type:
//! application/json` always, and the generic `{"error","error_description"}` shape used outside
//! the dialects (404, 405).
//!
//! It knows no dialect and no status policy; callers choose both.

use axum::body::Body;
use axum::response::Response;
use azbroker_core::AccessToken;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

/// Sent if serialising a body ever fails (it cannot for the types used here).
const FALLBACK: &[u8] = br#"{"error":"unknown","error_description":"internal error"}"#;

/// Serialises `body` into one buffer of about `capacity` bytes and answers with it.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T, capacity: usize) -> Response {
    let mut buf = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut buf, body) {
        Ok(()) => bytes(status, buf),
        Err(_) => bytes(StatusCode::INTERNAL_SERVER_ERROR, FALLBACK.to_vec()),
    }
}

/// A fixed JSON body.
pub(crate) fn static_json(status: StatusCode, body: &'static [u8]) -> Response {
    bytes(status, body)
}

/// The generic error shape: `{"error": code, "error_description": description}`.
pub(crate) fn error(status: StatusCode, code: &str, description: &str) -> Response {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: &'a str,
        error_description: &'a str,
    }
    json(status, &ErrorBody { error: code, error_description: description }, 64 + description.len())
}

/// A token body written straight into one buffer: the hot path of every cache hit.
///
/// Keys are literals of ours; string values are escaped, with a fast path for values that need no
/// escaping (a JWT never does), which spares the per-byte escape scan over a ~1.5 KB token.
pub(crate) struct TokenBody {
    buf: Vec<u8>,
}

impl TokenBody {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.push(b'{');
        Self { buf }
    }

    /// `"key":"value"`.
    pub(crate) fn str(mut self, key: &'static str, value: &str) -> Self {
        self.key(key);
        write_json_str(&mut self.buf, value);
        self
    }

    /// `"key":"token"`: the access token, whose escape check was made once, when it arrived.
    pub(crate) fn token(mut self, key: &'static str, token: &AccessToken) -> Self {
        let value = token.secret().expose();
        self.key(key);
        if token.is_json_plain() {
            self.buf.push(b'"');
            self.buf.extend_from_slice(value.as_bytes());
            self.buf.push(b'"');
        } else {
            write_json_str(&mut self.buf, value);
        }
        self
    }

    /// `"key":"value"`, or nothing when `value` is `None`.
    pub(crate) fn opt_str(self, key: &'static str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }

    /// `"key":"123"`: an integer as a JSON string of digits, as IMDS and App Service send them.
    pub(crate) fn digits(mut self, key: &'static str, value: u64) -> Self {
        self.key(key);
        self.buf.push(b'"');
        // Serialising an integer into a `Vec` cannot fail (and skips `fmt`'s machinery).
        let _ = serde_json::to_writer(&mut self.buf, &value);
        self.buf.push(b'"');
        self
    }

    /// `"key":123`: an integer as a JSON number (Azure ML, Service Fabric).
    pub(crate) fn num(mut self, key: &'static str, value: u64) -> Self {
        self.key(key);
        // Serialising an integer into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, &value);
        self
    }

    /// The 200 response: JSON, and never stored by caches along the way.
    pub(crate) fn into_response(mut self) -> Response {
        self.buf.push(b'}');
        let mut response = bytes(StatusCode::OK, self.buf);
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    fn key(&mut self, key: &'static str) {
        debug_assert!(!needs_escape(key.as_bytes()), "keys are plain literals");
        if self.buf.len() > 1 {
            self.buf.push(b',');
        }
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }
}

fn write_json_str(buf: &mut Vec<u8>, value: &str) {
    if needs_escape(value.as_bytes()) {
        // Serialising a `&str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *buf, value);
    } else {
        buf.push(b'"');
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
    }
}

/// True when JSON requires escaping: a quote, a backslash or a control character. Written as a
/// branch-free fold so it vectorises.
fn needs_escape(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |acc, &b| acc | (b < 0x20) | (b == b'"') | (b == b'\\'))
}

fn bytes(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn parse(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn token_body_escapes_what_json_requires() {
        let nasty = "a\"b\\c\nd\u{1}e/é€😀";
        let body = TokenBody::with_capacity(8)
            .str("plain", "eyJ0eXAi.eyJhdWQi.c2ln-_")
            .str("nasty", nasty)
            .opt_str("absent", None)
            .opt_str("present", Some(""))
            .digits("n", 1_763_823_599)
            .num("m", 42);
        let json = parse(body.into_response()).await;
        assert_eq!(
            json,
            serde_json::json!({"plain":"eyJ0eXAi.eyJhdWQi.c2ln-_","nasty":nasty,"present":"","n":"1763823599","m":42})
        );
    }

    #[test]
    fn escape_detection() {
        assert!(!needs_escape(b"eyJhbGciOiJSUzI1NiJ9.e30.sig-_"));
        assert!(!needs_escape("é€ /".as_bytes()));
        for bad in [&b"\""[..], b"\\", b"\n", b"\x00", b"\x1f"] {
            assert!(needs_escape(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn tokens_are_written_escaped_when_they_need_it() {
        use azbroker_core::Secret;
        use std::time::Duration;
        for value in ["eyJ0eXAi.e30.c2ln", "a\"b\\c\nd"] {
            let token = AccessToken::new(Secret::new(value), Duration::from_secs(60));
            let json = parse(TokenBody::with_capacity(8).token("t", &token).into_response()).await;
            assert_eq!(json, serde_json::json!({ "t": value }));
        }
    }

    #[tokio::test]
    async fn empty_token_body_is_an_empty_object() {
        assert_eq!(parse(TokenBody::with_capacity(0).into_response()).await, serde_json::json!({}));
    }
}
