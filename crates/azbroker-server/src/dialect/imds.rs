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

use super::{Dialect, TokenRequest};
use crate::body::{self, TokenBody};
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
        let access_token = token.secret().expose();
        let expires_in = token.expires_in_secs();
        // The real IMDS body: every value a string.
        TokenBody::with_capacity(256 + access_token.len() + resource.as_str().len())
            .str("access_token", access_token)
            .str("refresh_token", "")
            .digits("expires_in", expires_in)
            .digits("expires_on", token.expires_on)
            .digits("ext_expires_in", expires_in)
            .digits("not_before", token.not_before)
            .str("resource", resource.as_str())
            .str("token_type", "Bearer")
            .opt_str("client_id", grant.client_id.as_deref())
            .into_response()
    }

    fn error(error: &RequestError) -> Response {
        let response = body::error(error.status(), error.code(), &error.description());
        super::with_retry_after(response, error)
    }
}

/// `Metadata: true`, compared case-insensitively (some samples send `True`).
fn require_metadata(headers: &HeaderMap) -> Result<(), RequestError> {
    match headers.get("metadata") {
        Some(v) if v.as_bytes().eq_ignore_ascii_case(b"true") => Ok(()),
        _ => Err(RequestError::MissingMetadata),
    }
}
