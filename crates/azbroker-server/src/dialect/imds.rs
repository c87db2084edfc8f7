//! The Azure VM Instance Metadata Service dialect (PROTOCOLS.md §3):
//! `GET /metadata/identity/oauth2/token?api-version=..&resource=..[&client_id=..]` with
//! `Metadata: true`.
//!
//! Owns the check order that makes SDK discovery probes work (the `Metadata` check comes before
//! everything else, so a probe always gets the exact 400 real IMDS sends), the all-strings success
//! body, and the `{"error","error_description"}` error shape. It never answers without
//! `Metadata: true`.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use azbroker_core::{Grant, Resource};
use http::StatusCode;
use http::request::Parts;

use super::{Dialect, TokenRequest};
use crate::body::{self, TokenBody};
use crate::error::RequestError;
use crate::routes::{Endpoint, RouteCtx};
use crate::runtime::Runtime;
use crate::select::Selector;
use crate::state::AppState;

/// Selector parameter names IMDS clients send; `msi-res-id` is the .NET probe's spelling.
pub(crate) const SELECTORS: &[&str] =
    &["client_id", "object_id", "msi_res_id", "mi_res_id", "principal_id", "msi-res-id"];

pub(crate) struct Imds;

impl Dialect for Imds {
    const NAME: &'static str = "imds";
    const PATH: &'static str = "/metadata/identity/oauth2/token";

    fn parse<'r>(
        _state: &AppState,
        parts: &'r Parts,
        _body: &'r [u8],
    ) -> Result<TokenRequest<'r>, RequestError> {
        parse_with(parts, SELECTORS)
    }

    fn success(request: &TokenRequest<'_>, grant: &Grant) -> Response {
        token_body(&request.resource, grant, None)
    }

    fn error(error: &RequestError) -> Response {
        let response = body::error(error.status(), error.code(), &error.description());
        super::with_retry_after(response, error)
    }
}

/// IMDS's check order (`Metadata` first, so SDK probes always get the real 400; then proxy
/// headers; then the v1 query), with the selector names of the dialect at hand (IMDS, Arc).
pub(crate) fn parse_with<'r>(
    parts: &'r Parts,
    selectors: &[&'static str],
) -> Result<TokenRequest<'r>, RequestError> {
    super::require_metadata(&parts.headers)?;
    super::reject_forwarded(&parts.headers)?;
    super::parse_v1_query(parts.uri.query(), selectors)
}

/// The real IMDS body, every value a string. `echo`: a user-assigned selector to repeat in the
/// body (Arc clients fail closed unless the answer names the identity they asked for).
pub(crate) fn token_body(resource: &Resource, grant: &Grant, echo: Option<&Selector<'_>>) -> Response {
    let token = &grant.token;
    let access_token = token.secret().expose();
    let expires_in = token.expires_in_secs();
    let echoed = |name: &str| echo.filter(|s| s.param == name).map(|s| s.value.as_ref());
    let body = TokenBody::with_capacity(256 + access_token.len() + resource.as_str().len())
        .token("access_token", token)
        .str("refresh_token", "")
        .digits("expires_in", expires_in)
        .digits("expires_on", token.expires_on)
        .digits("ext_expires_in", expires_in)
        .digits("not_before", token.not_before)
        .str("resource", resource.as_str())
        .str("token_type", "Bearer")
        .opt_str("client_id", echoed("client_id").or(grant.client_id.as_deref()));
    match echo.filter(|s| s.param != "client_id") {
        Some(s) => body.str(echo_key(s.param), &s.value),
        None => body,
    }
    .into_response()
}

/// The response key an Arc client compares a selector against.
fn echo_key(param: &'static str) -> &'static str {
    match param {
        "mi_res_id" | "msi-res-id" => "msi_res_id",
        "principal_id" => "object_id",
        other => other,
    }
}

/// The IMDS v2 discovery endpoints MSAL.NET tries first (`/metadata/identity/getplatformmetadata`,
/// `/metadata/identity/credential`): a JSON 404, so it settles on v1 (404 is not retried there).
pub(crate) struct ImdsV2;

impl ImdsV2 {
    pub(crate) const PATHS: [&'static str; 2] =
        ["/metadata/identity/getplatformmetadata", "/metadata/identity/credential"];
}

impl Endpoint for ImdsV2 {
    async fn call(_ctx: Arc<RouteCtx>, _rt: Arc<Runtime>, _req: Request) -> Response {
        body::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "IMDS v2 (managed identity credential endpoints) is not offered; use the v1 token endpoint",
        )
    }
}
