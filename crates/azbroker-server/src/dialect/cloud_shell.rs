//! The Cloud Shell dialect (PROTOCOLS.md §6): `POST $MSI_ENDPOINT` (`/oauth2/token`) with
//! `Metadata: true` and a form body `resource=...`, or the same parameters as a `GET` query, as
//! MSAL4J sends them (`CloudShellManagedIdentitySource.createManagedIdentityRequest`; the real
//! endpoint answers GET too). The same parser serves the secret-less requests to a compute
//! instance's `MSI_ENDPOINT` (`/MSI/auth`): azureml-core's `MsiAuthentication` (msrestazure) POSTs
//! its form there, and MSAL4J, which has no Azure ML source and treats any `MSI_ENDPOINT` as Cloud
//! Shell, GETs it with `Metadata: true` and no secret.
//!
//! Owns the `Metadata` check (first), form parsing, the all-strings Cloud Shell body and the
//! `{"error":{"code","message"}}` error shape. User-assigned selectors in the form
//! (`client_id`, `object_id`, `msi_res_id`) select profiles like anywhere else.

use axum::response::Response;
use azbroker_core::Grant;
use http::Method;
use http::request::Parts;
use serde::Serialize;

use super::{Dialect, MAX_FORM_BYTES, TokenRequest};
use crate::body::{self, TokenBody};
use crate::error::RequestError;
use crate::state::AppState;

const SELECTORS: &[&str] = &["client_id", "object_id", "msi_res_id", "mi_res_id", "principal_id"];

pub(crate) struct CloudShell;

impl Dialect for CloudShell {
    const NAME: &'static str = "cloud_shell";
    const PATH: &'static str = "/oauth2/token";
    const BODY_LIMIT: usize = MAX_FORM_BYTES;

    fn parse<'r>(
        _state: &AppState,
        parts: &'r Parts,
        body: &'r [u8],
    ) -> Result<TokenRequest<'r>, RequestError> {
        super::require_metadata(&parts.headers)?;
        super::reject_forwarded(&parts.headers)?;
        if parts.method == Method::GET {
            // No api-version: MSAL4J sends only `resource` (and a selector) in the query.
            return super::parse_form(parts.uri.query().unwrap_or("").as_bytes(), SELECTORS);
        }
        super::parse_form(body, SELECTORS)
    }

    fn success(request: &TokenRequest<'_>, grant: &Grant) -> Response {
        let token = &grant.token;
        let resource = request.resource.as_str();
        let access_token = token.secret().expose();
        TokenBody::with_capacity(224 + access_token.len() + resource.len())
            .token("access_token", token)
            .str("refresh_token", "")
            .digits("expires_in", token.expires_in_secs())
            .digits("expires_on", token.expires_on)
            .digits("not_before", token.not_before)
            .str("resource", resource)
            .str("token_type", "Bearer")
            .into_response()
    }

    fn error(error: &RequestError) -> Response {
        #[derive(Serialize)]
        struct Inner<'a> {
            code: &'a str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Outer<'a> {
            error: Inner<'a>,
        }
        let description = error.description();
        let body = Outer { error: Inner { code: error.code(), message: &description } };
        super::with_retry_after(body::json(error.status(), &body, 96 + description.len()), error)
    }
}
