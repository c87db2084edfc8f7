//! The native, tenant-aware API in the shape of azd's external-authentication protocol:
//! `POST /token?api-version=2023-07-12-preview`, `Authorization: Bearer $AZD_AUTH_KEY`, JSON
//! `{"scopes":[...],"tenantId":"..."}` → `{"status":"success","token":..,"expiresOn":RFC 3339}`.
//!
//! Unlike the managed-identity dialects the request names its tenant; it must match a configured
//! profile, by the tenant the profile is configured with (GUID or domain) or by the tenant id
//! (`tid`) of a token that profile issued. A GUID that matches no profile yet is resolved by
//! asking each domain-configured profile once for a token and reading its `tid`. No tenant: the
//! path prefix, listener or default profile, as everywhere.
//!
//! Errors: a wrong key is 401 and a malformed request 400; a request that is well-formed but
//! cannot be served is **200** with `{"status":"error","code":"NotSignedInError"|"GetTokenError",
//! "message":..}`, because azd reads the body only of a 200 (any other status is an opaque
//! "unexpected status code"). `NotSignedInError` means a login needs attention.

use std::time::{Duration, UNIX_EPOCH};

use axum::response::Response;
use azbroker_core::{EngineError, Grant, Resource, UpstreamError};
use base64::Engine as _;
use http::StatusCode;
use http::header::AUTHORIZATION;
use http::request::Parts;
use serde::{Deserialize, Serialize};

use super::{Dialect, TokenRequest};
use crate::body;
use crate::error::RequestError;
use crate::query::QueryParams;
use crate::secrets::SecretId;
use crate::state::AppState;

pub(crate) const PATH: &str = "/token";

/// The native API as a dialect of the shared pipeline: the key is checked on the head, the JSON
/// body names scopes and optionally a tenant.
pub(crate) struct Native;

impl Dialect for Native {
    const NAME: &'static str = "native";
    const PATH: &'static str = PATH;
    const BODY_LIMIT: usize = 16 * 1024;
    /// The bearer key is a secret: a remote caller that got this far presented it.
    const SECRET: bool = true;
    const SECRET_HEADER: Option<&'static str> = Some("Authorization");
    const LEARNS_TENANTS: bool = true;

    /// Key, proxy headers and api-version, before the body is read.
    fn check_head(state: &AppState, parts: &Parts) -> Result<(), RequestError> {
        let presented = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
        let key = presented.and_then(|v| v.strip_prefix(b"Bearer ").or_else(|| v.strip_prefix(b"bearer ")));
        match key {
            None => {
                return Err(RequestError::Unauthorized {
                    header: "Authorization",
                    missing: presented.is_none(),
                });
            }
            // A client key was checked already (`crate::keys::authenticate`).
            Some(_) if crate::keys::of(parts).is_some() => {}
            Some(k) if !state.secret_matches(SecretId::NativeKey, k) => {
                return Err(RequestError::Unauthorized { header: "Authorization", missing: false });
            }
            Some(_) => {}
        }
        super::reject_forwarded(&parts.headers)?;
        QueryParams::parse(parts.uri.query())?.require("api-version")?;
        Ok(())
    }

    fn parse<'r>(
        _state: &AppState,
        _parts: &'r Parts,
        body: &'r [u8],
    ) -> Result<TokenRequest<'r>, RequestError> {
        let request: TokenRequestBody = serde_json::from_slice(body).map_err(|_| {
            RequestError::BadBody("the body must be JSON: {\"scopes\":[...],\"tenantId\":\"...\"}")
        })?;
        let mut parsed = TokenRequest::new(resource_of(&request.scopes)?, None);
        parsed.tenant =
            request.tenant_id.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        Ok(parsed)
    }

    fn success(_request: &TokenRequest<'_>, grant: &Grant) -> Response {
        success(grant)
    }

    fn error(error: &RequestError) -> Response {
        error_body(error)
    }
}

/// The error body (also used when a guard refuses a request on this path).
pub(crate) fn error_body(error: &RequestError) -> Response {
    let status = match error {
        RequestError::NotLoopback | RequestError::Unauthorized { .. } => error.status(),
        RequestError::Key(k) if k.status() == StatusCode::UNAUTHORIZED => error.status(),
        RequestError::BadHost
        | RequestError::Forwarded { .. }
        | RequestError::TooManyParams
        | RequestError::DuplicateParam(_)
        | RequestError::MalformedQuery
        | RequestError::MissingParam(_)
        | RequestError::BadBody(_)
        | RequestError::BadPath(_)
        | RequestError::BadParam(..) => StatusCode::BAD_REQUEST,
        // Everything else is an answer azd must be able to read.
        _ => StatusCode::OK,
    };
    let code = match error {
        RequestError::Engine(EngineError::Upstream(
            UpstreamError::LoginRequired { .. }
            | UpstreamError::InteractionRequired { .. }
            | UpstreamError::InvalidGrant { .. },
        )) => "NotSignedInError",
        _ => "GetTokenError",
    };
    let message = error.description();
    body::json(status, &ErrorBody { status: "error", code, message: &message }, 96 + message.len())
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    code: &'static str,
    message: &'a str,
}

#[derive(Deserialize)]
struct TokenRequestBody {
    scopes: Vec<String>,
    #[serde(rename = "tenantId", default)]
    tenant_id: Option<String>,
}

/// The v1 resource behind `scopes`: each must be `<resource>/.default` of one resource.
fn resource_of(scopes: &[String]) -> Result<Resource, RequestError> {
    let mut resource: Option<&str> = None;
    for scope in scopes {
        let Some(r) = scope.strip_suffix("/.default") else {
            return Err(RequestError::BadScopes("only '<resource>/.default' scopes are supported"));
        };
        match resource {
            Some(prev) if prev != r => {
                return Err(RequestError::BadScopes("all scopes must belong to one resource"));
            }
            _ => resource = Some(r),
        }
    }
    let r = resource.ok_or(RequestError::BadScopes("at least one scope is required"))?;
    Resource::parse(r).map_err(RequestError::InvalidResource)
}

fn success(grant: &Grant) -> Response {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Success<'a> {
        status: &'static str,
        token: &'a str,
        expires_on: String,
    }
    let token = grant.token.secret().expose();
    let expires = UNIX_EPOCH + Duration::from_secs(grant.token.expires_on);
    let body = Success {
        status: "success",
        token,
        expires_on: humantime::format_rfc3339_seconds(expires).to_string(),
    };
    let mut response = body::json(StatusCode::OK, &body, 96 + token.len());
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

/// The `tid` claim of a JWT access token, read without verification (it came from upstream).
pub(crate) fn jwt_tid(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("tid")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_map_to_one_resource_keeping_slashes() {
        let r = resource_of(&["https://management.azure.com//.default".into()]).unwrap();
        assert_eq!(r.as_str(), "https://management.azure.com/");
        assert!(resource_of(&[]).is_err());
        assert!(resource_of(&["https://graph.microsoft.com/User.Read".into()]).is_err());
        assert!(resource_of(&["a/.default".into(), "b/.default".into()]).is_err());
        assert!(resource_of(&["a/.default".into(), "a/.default".into()]).is_ok());
    }

    #[test]
    fn tid_is_read_from_the_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"tid":"t-1","aud":"x"}"#);
        assert_eq!(jwt_tid(&format!("h.{payload}.s")).as_deref(), Some("t-1"));
        assert_eq!(jwt_tid("not-a-jwt"), None);
        assert_eq!(jwt_tid("h.!!.s"), None);
    }
}
