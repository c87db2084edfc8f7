//! The Entra ID error body builder (PROTOCOLS.md §12.5): every error the fake authority returns,
//! from any endpoint or grant, is built here so the shape stays identical everywhere.
//!
//! A body looks like
//! `{"error":"invalid_scope","error_description":"AADSTS70011: ...\r\nTrace ID: ...\r\nCorrelation
//! ID: ...\r\nTimestamp: 2016-01-09 02:02:12Z","error_codes":[70011],"timestamp":"...",
//! "trace_id":"...","correlation_id":"...","error_uri":"<authority>/error?code=70011"}`
//! and is served as `application/json` with `Cache-Control: no-store` and `x-ms-request-id`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use crate::time::{entra_timestamp, unix_now};

/// One Entra-shaped OAuth error: HTTP status, OAuth `error` code, AADSTS number and text.
///
/// Render it with [`EntraError::into_response`], passing the authority URL used for `error_uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    message: String,
    suberror: Option<&'static str>,
    retry_after: Option<u64>,
}

impl EntraError {
    /// An error with the given status, OAuth `error` value, AADSTS number and message (the text
    /// after `AADSTSnnnn: `).
    pub fn new(status: StatusCode, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        EntraError { status, error, code, message: message.into(), suberror: None, retry_after: None }
    }

    /// 400 with the given OAuth `error` value: the common case on the token endpoint.
    pub fn bad_request(error: &'static str, code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, code, message)
    }

    /// 400 `invalid_request` AADSTS900144: a required body parameter is missing.
    pub fn missing_parameter(name: &str) -> Self {
        Self::bad_request(
            "invalid_request",
            900_144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// 400 `invalid_request` AADSTS9002313: the request is malformed; `detail` says how.
    pub fn malformed(detail: &str) -> Self {
        Self::bad_request(
            "invalid_request",
            9_002_313,
            format!("Invalid request. Request is malformed or invalid. {detail}"),
        )
    }

    /// Adds the `suberror` field some conditions carry (e.g. `basic_action`).
    #[must_use]
    pub fn with_suberror(mut self, suberror: &'static str) -> Self {
        self.suberror = Some(suberror);
        self
    }

    /// Adds an integer `Retry-After` header (only meaningful on 429 and 5xx).
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The HTTP status this error is served with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The OAuth `error` value (`invalid_grant`, `invalid_scope`, ...).
    pub fn error(&self) -> &'static str {
        self.error
    }

    /// The AADSTS number.
    pub fn code(&self) -> u32 {
        self.code
    }

    /// The JSON body Entra would send, with fresh trace and correlation ids.
    pub fn body(&self, authority: &str) -> serde_json::Value {
        self.render(authority).1
    }

    /// The complete HTTP response: status, headers and JSON body.
    pub fn into_response(self, authority: &str) -> Response {
        let (trace_id, body) = self.render(authority);
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, no-cache"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if let Ok(value) = HeaderValue::from_str(&trace_id) {
            headers.insert("x-ms-request-id", value);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    fn render(&self, authority: &str) -> (String, serde_json::Value) {
        let trace_id = Uuid::new_v4().to_string();
        let correlation_id = Uuid::new_v4().to_string();
        let timestamp = entra_timestamp(unix_now());
        let description = format!(
            "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}",
            self.code, self.message
        );
        let body = Body {
            error: self.error,
            error_description: description,
            error_codes: [self.code],
            timestamp,
            trace_id: trace_id.clone(),
            correlation_id,
            error_uri: format!("{authority}/error?code={}", self.code),
            suberror: self.suberror,
        };
        // Serialising a struct of strings and integers cannot fail; fall back to Null regardless.
        (trace_id, serde_json::to_value(body).unwrap_or_default())
    }
}

/// Field order as Entra sends it.
#[derive(Serialize)]
struct Body {
    error: &'static str,
    error_description: String,
    error_codes: [u32; 1],
    timestamp: String,
    trace_id: String,
    correlation_id: String,
    error_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    suberror: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_every_field_in_entra_format() {
        let err = EntraError::bad_request("invalid_scope", 70011, "The scope x is not valid.");
        let body = err.body("http://127.0.0.1:1");
        assert_eq!(body["error"], "invalid_scope");
        assert_eq!(body["error_codes"], serde_json::json!([70011]));
        assert_eq!(body["error_uri"], "http://127.0.0.1:1/error?code=70011");
        let desc = body["error_description"].as_str().unwrap();
        let lines: Vec<&str> = desc.split("\r\n").collect();
        assert_eq!(lines[0], "AADSTS70011: The scope x is not valid.");
        assert_eq!(lines[1], format!("Trace ID: {}", body["trace_id"].as_str().unwrap()));
        assert_eq!(lines[2], format!("Correlation ID: {}", body["correlation_id"].as_str().unwrap()));
        assert_eq!(lines[3], format!("Timestamp: {}", body["timestamp"].as_str().unwrap()));
        assert!(body.get("suberror").is_none());
    }

    #[test]
    fn response_carries_headers() {
        let resp = EntraError::new(StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable", 1, "x")
            .with_retry_after(7)
            .into_response("http://h");
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        assert!(resp.headers().contains_key("x-ms-request-id"));
    }
}
