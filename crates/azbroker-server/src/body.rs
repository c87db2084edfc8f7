//! JSON response building shared by every endpoint: one buffer per body, `Content-Type:
//! application/json` always, and the generic `{"error","error_description"}` shape used outside
//! the dialects (404, 405).
//!
//! It knows no dialect and no status policy; callers choose both.

use axum::body::Body;
use axum::response::Response;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use serde::{Serialize, Serializer};

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

/// A body carrying a token: JSON, and never stored by caches along the way.
pub(crate) fn token<T: Serialize>(body: &T, capacity: usize) -> Response {
    let mut response = json(StatusCode::OK, body, capacity);
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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

/// Serialises an integer as a JSON string of digits (`"3599"`), as IMDS and App Service do,
/// without an intermediate `String`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DigitString(pub u64);

impl Serialize for DigitString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

fn bytes(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
