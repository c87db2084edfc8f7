//! The Azure Arc (HIMDS) dialect (PROTOCOLS.md §7) on `/arc/metadata/identity/oauth2/token`:
//! a request with `Metadata: true` and no `Authorization` gets **401** with
//! `WWW-Authenticate: Basic realm=/var/opt/azcmagent/tokens/<random>.key`; the client reads that
//! file and repeats the request with `Authorization: Basic <contents>`, which gets the IMDS body,
//! echoing any user-assigned selector (newer clients fail closed without the echo).
//!
//! Owns the two-step flow and its check order: `Metadata`, proxy headers and the query's shape
//! are validated *before* a key file is written, so a malformed request costs no file; the
//! identity (selector, profile) is resolved only on the second leg, as the real agent does —
//! a first request without `Authorization` always gets the challenge, whatever it selects (MSAL
//! Go reports only "expected a 401" for anything else, losing the reason). Key
//! files themselves, and each caller's quota of them, are [`crate::arc_keys`]' business. Errors
//! use the IMDS shape.

use std::sync::Arc as Shared;

use axum::extract::Request;
use axum::response::Response;
use azbroker_core::Grant;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use super::{Dialect, TokenRequest};
use crate::arc_keys::KEY_TTL;
use crate::error::RequestError;
use crate::routes::{Endpoint, RouteCtx};
use crate::runtime::Runtime;
use crate::state::AppState;

/// Newest MSALs send these on Arc (never `mi_res_id`, which real Arc ignores).
const SELECTORS: &[&str] = &["client_id", "object_id", "msi_res_id", "mi_res_id"];

pub(crate) struct Arc;

impl Dialect for Arc {
    const NAME: &'static str = "arc";
    const PATH: &'static str = "/arc/metadata/identity/oauth2/token";

    fn parse<'r>(
        _state: &AppState,
        parts: &'r Parts,
        _body: &'r [u8],
    ) -> Result<TokenRequest<'r>, RequestError> {
        super::imds::parse_with(parts, SELECTORS)
    }

    fn success(request: &TokenRequest<'_>, grant: &Grant) -> Response {
        super::imds::token_body(&request.resource, grant, request.selector.as_ref())
    }

    fn error(error: &RequestError) -> Response {
        super::Imds::error(error)
    }
}

/// The Arc route: challenge, or redeem and serve.
pub(crate) struct ArcToken;

impl Endpoint for ArcToken {
    async fn call(ctx: Shared<RouteCtx>, rt: Shared<Runtime>, req: Request) -> Response {
        let Some(keys) = ctx.app.arc_keys() else {
            return Arc::error(&RequestError::Unavailable(
                "Azure Arc emulation is off: the daemon cannot write key files to /var/opt/azcmagent/tokens (it needs root)",
            ));
        };
        let Some(auth) = req.headers().get(AUTHORIZATION) else {
            return challenge(&ctx, keys, req).await;
        };
        let presented = basic_credentials(auth.as_bytes());
        match presented.and_then(|p| keys.redeem(p)) {
            Some(path) => {
                // The key is spent: delete its file off the runtime; the answer need not wait.
                tokio::task::spawn_blocking(move || std::fs::remove_file(path));
                super::serve_token::<Arc>(&ctx, &rt, req).await
            }
            None => Arc::error(&RequestError::Unauthorized { header: "Authorization", missing: false }),
        }
    }
}

/// Checks the request's shape, writes a key file and answers 401 naming it. The identity it
/// selects is not looked at here: that is the second leg's business.
async fn challenge(ctx: &RouteCtx, keys: Shared<crate::ArcKeys>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    if let Err(error) = Arc::parse(&ctx.app, &parts, &[]) {
        return Arc::error(&error);
    }
    let uid = crate::conn::caller(&parts.extensions).map(|c| c.uid);
    let issued = tokio::task::spawn_blocking(move || keys.issue(uid)).await;
    let path = match issued {
        Ok(Ok(path)) => path,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::QuotaExceeded => {
            return Arc::error(&RequestError::RateLimited { retry_after_secs: KEY_TTL.as_secs() });
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot write an Arc key file");
            return Arc::error(&RequestError::Unavailable(
                "cannot write the Arc key file; see the daemon log",
            ));
        }
        Err(_) => return Arc::error(&RequestError::Unavailable("cannot write the Arc key file")),
    };
    let realm = format!("Basic realm={}", path.display());
    let mut response = Arc::error(&RequestError::Unauthorized { header: "Authorization", missing: true });
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    match HeaderValue::from_str(&realm) {
        Ok(v) => {
            response.headers_mut().insert(WWW_AUTHENTICATE, v);
            response
        }
        Err(_) => Arc::error(&RequestError::Unavailable("the Arc key directory has an unusable name")),
    }
}

/// The credentials of `Basic <credentials>` (scheme case-insensitive), verbatim.
fn basic_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    scheme.eq_ignore_ascii_case(b"basic ").then_some(rest).filter(|r| !r.is_empty())
}
