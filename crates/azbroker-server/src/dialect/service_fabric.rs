//! The Service Fabric dialect (PROTOCOLS.md §8), served only on the HTTPS listener:
//! `GET https://...$IDENTITY_ENDPOINT?api-version=2019-07-01-preview&resource=..` with header
//! `secret`/`Secret: $IDENTITY_HEADER`; clients pin the listener's certificate by the SHA-1
//! thumbprint exported as `IDENTITY_SERVER_THUMBPRINT`.
//!
//! Owns the secret check (first), `token_sha256_to_refresh` (a client found that token rejected:
//! answer with any other, fetching a fresh one upstream; shared with App Service), the body with a numeric `expires_on`
//! and the `{"error":{"correlationId","code","message"}}` error shape with Service Fabric's codes.

use axum::response::Response;
use azbroker_core::{Freshness, Grant};
use http::request::Parts;
use serde::Serialize;

use super::{Dialect, TokenRequest};
use crate::body::{self, TokenBody};
use crate::error::RequestError;
use crate::query::QueryParams;
use crate::secrets::SecretId;
use crate::state::AppState;

/// Real Service Fabric has no selectors; MSAL.NET sends `principalId` for an object id. Accepted
/// so that profiles can still be chosen by alias.
const SELECTORS: &[&str] =
    &["principalId", "client_id", "object_id", "principal_id", "mi_res_id", "msi_res_id"];
const SECRET_HEADER: &str = "secret";

pub(crate) struct ServiceFabric;

impl Dialect for ServiceFabric {
    const NAME: &'static str = "service_fabric";
    const PATH: &'static str = "/msi/token";
    const SECRET: bool = true;
    const SECRET_HEADER: Option<&'static str> = Some(SECRET_HEADER);

    fn parse<'r>(
        state: &AppState,
        parts: &'r Parts,
        _body: &'r [u8],
    ) -> Result<TokenRequest<'r>, RequestError> {
        let mut request =
            super::parse_with_secret(state, parts, SECRET_HEADER, SecretId::IdentityHeader, SELECTORS)?;
        request.freshness = revocation_freshness(parts)?;
        Ok(request)
    }

    fn success(request: &TokenRequest<'_>, grant: &Grant) -> Response {
        let resource = request.resource.as_str();
        let access_token = grant.token.secret().expose();
        TokenBody::with_capacity(128 + access_token.len() + resource.len())
            .str("token_type", "Bearer")
            .token("access_token", &grant.token)
            .num("expires_on", grant.token.expires_on)
            .str("resource", resource)
            .into_response()
    }

    fn error(error: &RequestError) -> Response {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Inner<'a> {
            correlation_id: &'a str,
            code: &'a str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Outer<'a> {
            error: Inner<'a>,
        }
        let mut id_buf = uuid::Uuid::encode_buffer();
        let correlation_id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id_buf);
        let description = error.description();
        let body = Outer { error: Inner { correlation_id, code: code(error), message: &description } };
        super::with_retry_after(body::json(error.status(), &body, 160 + description.len()), error)
    }
}

/// Token revocation (CAE), on the platforms that support it — Service Fabric and App Service
/// (MSAL .NET, Python, Go and Node send it on Service Fabric only, so far): after a resource rejected a token with a claims challenge, the client asks
/// again with `token_sha256_to_refresh=<SHA-256 hex of that token>` (and `xms_cc=cp1,...`, its
/// client capabilities, which change nothing here: every token is fetched the same way). The
/// answer must then be any token but that one. The query is parsed a second time (cheap,
/// bounded) so the shared v1 parser stays free of dialect extras.
pub(super) fn revocation_freshness(parts: &Parts) -> Result<Freshness, RequestError> {
    let query = QueryParams::parse(parts.uri.query())?;
    let Some(hash) = query.get("token_sha256_to_refresh").filter(|h| !h.is_empty()) else {
        return Ok(Freshness::Cached);
    };
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RequestError::BadParam("token_sha256_to_refresh", "64 hex digits (SHA-256)"));
    }
    Ok(Freshness::NotHash(hash.to_ascii_lowercase()))
}

/// Service Fabric's error codes, which MSAL Python maps to OAuth errors.
fn code(error: &RequestError) -> &'static str {
    match error {
        RequestError::Unauthorized { .. } => "SecretHeaderNotFound",
        RequestError::Select(_) => "ManagedIdentityNotFound",
        RequestError::MissingParam(_) | RequestError::InvalidResource(_) => "ArgumentNullOrEmpty",
        e if e.status().is_server_error() => "InternalServerError",
        _ => "InvalidRequest",
    }
}
