//! The App Service / Functions / Container Apps dialect, api-version 2019-08-01 (PROTOCOLS.md §4):
//! `GET $IDENTITY_ENDPOINT?api-version=..&resource=..[&client_id=..]` with
//! `X-IDENTITY-HEADER: $IDENTITY_HEADER`.
//!
//! Owns the identity-header check (constant-time, before anything else), token revocation
//! (`token_sha256_to_refresh` and `xms_cc`, exactly as on Service Fabric; the MSAL releases read so
//! far send them on Service Fabric only, see the README's "Token revocation with real clients"),
//! the success body with a digit-string `expires_on`, and the `{"statusCode","message","correlationId"}` error shape. It
//! never echoes the identity header, right or wrong, and never emits the legacy date-string
//! `expires_on` of 2017-09-01.

use axum::response::Response;
use azbroker_core::Grant;
use http::request::Parts;
use serde::Serialize;

use super::{Dialect, TokenRequest};
use crate::body::{self, TokenBody};
use crate::error::RequestError;
use crate::secrets::SecretId;
use crate::state::AppState;

/// Docs: `client_id`, `principal_id` (alias `object_id`), `mi_res_id`; `msi_res_id` defensively.
const SELECTORS: &[&str] = &["client_id", "object_id", "principal_id", "mi_res_id", "msi_res_id"];
const IDENTITY_HEADER: &str = "X-IDENTITY-HEADER";

pub(crate) struct AppService;

impl Dialect for AppService {
    const NAME: &'static str = "app_service";
    const PATH: &'static str = "/msi/token";
    const SECRET: bool = true;
    const SECRET_HEADER: Option<&'static str> = Some(IDENTITY_HEADER);

    fn parse<'r>(
        state: &AppState,
        parts: &'r Parts,
        _body: &'r [u8],
    ) -> Result<TokenRequest<'r>, RequestError> {
        let mut request =
            super::parse_with_secret(state, parts, IDENTITY_HEADER, SecretId::IdentityHeader, SELECTORS)?;
        request.freshness = super::service_fabric::revocation_freshness(parts)?;
        Ok(request)
    }

    fn success(request: &TokenRequest<'_>, grant: &Grant) -> Response {
        let resource = &request.resource;
        let access_token = grant.token.secret().expose();
        TokenBody::with_capacity(192 + access_token.len() + resource.as_str().len())
            .token("access_token", &grant.token)
            .digits("expires_on", grant.token.expires_on)
            .str("resource", resource.as_str())
            .str("token_type", "Bearer")
            .opt_str("client_id", grant.client_id.as_deref())
            .into_response()
    }

    fn error(error: &RequestError) -> Response {
        status_message_error(error)
    }
}

/// `{"statusCode","message","correlationId"}`: App Service's error shape, which the Azure ML
/// parsers read too (MSAL Python takes `statusCode` and `message`).
pub(crate) fn status_message_error(error: &RequestError) -> Response {
    let status = error.status();
    let mut id_buf = uuid::Uuid::encode_buffer();
    let correlation_id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id_buf);
    let description = error.description();
    let body = AppServiceError { status_code: status.as_u16(), message: &description, correlation_id };
    super::with_retry_after(body::json(status, &body, 128 + description.len()), error)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppServiceError<'a> {
    status_code: u16,
    message: &'a str,
    correlation_id: &'a str,
}
