//! The Azure VM Instance Metadata Service dialect (PROTOCOLS.md §3):
//! `GET /metadata/identity/oauth2/token?api-version=..&resource=..[&client_id=..]` with
//! `Metadata: true`.
//!
//! Owns the check order that makes SDK discovery probes work (the `Metadata` check comes before
//! everything else, so a probe always gets the exact 400 real IMDS sends), the all-strings success
//! body, and the `{"error","error_description"}` error shape. It never answers without
//! `Metadata: true`.

use axum::response::Response;
use azbroker_core::{Grant, Resource};
use http::HeaderMap;
use http::request::Parts;
use serde::Serialize;

use super::{Dialect, TokenRequest};
use crate::body::{self, DigitString};
use crate::error::RequestError;
use crate::state::AppState;

/// Selector parameter names IMDS clients send; `msi-res-id` is the .NET probe's spelling.
const SELECTORS: &[&str] =
    &["client_id", "object_id", "msi_res_id", "mi_res_id", "principal_id", "msi-res-id"];

pub(crate) struct Imds;

impl Dialect for Imds {
    const NAME: &'static str = "imds";
    const PATH: &'static str = "/metadata/identity/oauth2/token";

    fn parse<'r>(_state: &AppState, parts: &'r Parts) -> Result<TokenRequest<'r>, RequestError> {
        require_metadata(&parts.headers)?;
        super::reject_forwarded(&parts.headers)?;
        super::parse_v1_query(parts.uri.query(), SELECTORS)
    }

    fn success(resource: &Resource, grant: &Grant) -> Response {
        let token = &grant.token;
        let expires_in = DigitString(token.expires_in_secs());
        let access_token = token.secret().expose();
        let body = ImdsToken {
            access_token,
            refresh_token: "",
            expires_in,
            expires_on: DigitString(token.expires_on),
            ext_expires_in: expires_in,
            not_before: DigitString(token.not_before),
            resource: resource.as_str(),
            token_type: "Bearer",
            client_id: grant.client_id.as_deref(),
        };
        body::token(&body, 256 + access_token.len() + resource.as_str().len())
    }

    fn error(error: &RequestError) -> Response {
        let response = body::error(error.status(), error.code(), &error.description());
        super::with_retry_after(response, error)
    }
}

/// The real IMDS success body: every value a string.
#[derive(Serialize)]
struct ImdsToken<'a> {
    access_token: &'a str,
    refresh_token: &'static str,
    expires_in: DigitString,
    expires_on: DigitString,
    ext_expires_in: DigitString,
    not_before: DigitString,
    resource: &'a str,
    token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
}

/// `Metadata: true`, compared case-insensitively (some samples send `True`).
fn require_metadata(headers: &HeaderMap) -> Result<(), RequestError> {
    match headers.get("metadata") {
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"true") => Ok(()),
        _ => Err(RequestError::MissingMetadata),
    }
}
