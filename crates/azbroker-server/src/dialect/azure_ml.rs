//! The Azure ML compute-instance dialect, api-version 2017-09-01 (PROTOCOLS.md §5):
//! `GET $MSI_ENDPOINT?api-version=..&resource=..[&clientid=..]` with `secret: $MSI_SECRET`.
//! (The secret-less `POST` with a form body that azureml-core/msrestazure send to the same URL, and
//! MSAL4J's secret-less `GET` with `Metadata: true`, are served by the Cloud Shell dialect, whose
//! format those clients parse: see [`MsiAuthGet`].)
//!
//! Owns the `secret` check (constant-time, first), the `clientid` rule — equal to the exported
//! `DEFAULT_IDENTITY_CLIENT_ID` or absent means the profile's default identity, as MSAL Node, Go
//! and .NET send it for a system-assigned request — and the body with *numeric* `expires_in` /
//! `expires_on`, as the real service returns. Errors use the App Service shape.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use azbroker_core::Grant;
use http::request::Parts;

use super::{Dialect, TokenRequest};
use crate::body::TokenBody;
use crate::error::RequestError;
use crate::routes::{Endpoint, RouteCtx};
use crate::runtime::Runtime;
use crate::secrets::SecretId;
use crate::state::AppState;

/// The value `azbroker env` exports as `DEFAULT_IDENTITY_CLIENT_ID`: what a real compute instance
/// exports when requests are answered with the signed-in user's token rather than a managed
/// identity's. A `clientid` equal to it selects nothing.
pub const DEFAULT_IDENTITY_CLIENT_ID: &str = "clientid";

/// `clientid` is the only selector of 2017-09-01; MSAL Python passes `object_id`/`msi_res_id`
/// through as-is, which are accepted too.
const SELECTORS: &[&str] = &["clientid", "client_id", "object_id", "msi_res_id", "mi_res_id"];
const SECRET_HEADER: &str = "secret";

pub(crate) struct AzureMl;

/// `GET /MSI/auth`: Azure ML, unless the request carries no `secret` header but `Metadata: true`
/// — MSAL4J, which reads `MSI_ENDPOINT` as Cloud Shell (no Azure ML source) and so never sends
/// the secret. That request is no more privileged than the secret-less POST already served here
/// (both need `Metadata: true`, which a browser cannot send without a preflight), and the Cloud
/// Shell dialect never serves a caller from another host.
pub(crate) struct MsiAuthGet;

impl Endpoint for MsiAuthGet {
    async fn call(ctx: Arc<RouteCtx>, rt: Arc<Runtime>, req: Request) -> Response {
        let headers = req.headers();
        if !headers.contains_key(SECRET_HEADER) && headers.contains_key("metadata") {
            return super::serve_token::<super::CloudShell>(&ctx, &rt, req).await;
        }
        super::serve_token::<AzureMl>(&ctx, &rt, req).await
    }
}

impl Dialect for AzureMl {
    const NAME: &'static str = "azure_ml";
    const PATH: &'static str = "/msi/auth";
    const SECRET: bool = true;
    const SECRET_HEADER: Option<&'static str> = Some(SECRET_HEADER);

    fn parse<'r>(
        state: &AppState,
        parts: &'r Parts,
        _body: &'r [u8],
    ) -> Result<TokenRequest<'r>, RequestError> {
        let mut request =
            super::parse_with_secret(state, parts, SECRET_HEADER, SecretId::MsiSecret, SELECTORS)?;
        if request.selector.as_ref().is_some_and(|s| s.value.eq_ignore_ascii_case(DEFAULT_IDENTITY_CLIENT_ID))
        {
            request.selector = None;
        }
        Ok(request)
    }

    fn success(request: &TokenRequest<'_>, grant: &Grant) -> Response {
        let resource = request.resource.as_str();
        let access_token = grant.token.secret().expose();
        TokenBody::with_capacity(160 + access_token.len() + resource.len())
            .token("access_token", &grant.token)
            .num("expires_in", grant.token.expires_in_secs())
            .num("expires_on", grant.token.expires_on)
            .str("resource", resource)
            .str("token_type", "Bearer")
            .into_response()
    }

    fn error(error: &RequestError) -> Response {
        super::app_service::status_message_error(error)
    }
}
