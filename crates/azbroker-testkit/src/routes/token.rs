//! `/{tenant}/oauth2/v2.0/token`: the common pipeline every token request goes through —
//! counting, method check, bounded body read, form parsing, injected faults, tenant syntax and
//! deny-list — before the grant-specific work in `grant`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::EntraError;
#[cfg(feature = "testing")]
use crate::fault::Outcome;
use crate::form::Params;
use crate::grant::{self, TokenRequest};
use crate::state::State;
use crate::tenant::{Tenant, printable};

/// Largest token-request body we read; real ones are well under 16 KiB even with assertions.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// A client that has not sent its (small) body within this time is cut off.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Resource named in fault messages when the request has no usable scope (Microsoft Graph).
#[cfg(feature = "testing")]
const FALLBACK_RESOURCE: &str = "00000003-0000-0000-c000-000000000000";

pub(crate) async fn token(
    Extract(state): Extract<Arc<State>>,
    tenant: Result<Path<String>, PathRejection>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    state.count_token_request();
    let response = match handle(&state, tenant, &method, &headers, body).await {
        Ok(response) => response,
        Err(err) => {
            tracing::debug!(status = %err.status(), error = err.error(), code = err.code(), "token request failed");
            err.into_response(&state.authority)
        }
    };
    tracing::debug!(status = %response.status(), "token request answered");
    response
}

async fn handle(
    state: &Arc<State>,
    tenant: Result<Path<String>, PathRejection>,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, EntraError> {
    let Ok(Path(segment)) = tenant else {
        return Err(EntraError::malformed("The tenant segment of the URL is not valid UTF-8."));
    };
    if method != Method::POST {
        return Err(EntraError::bad_request(
            "invalid_request",
            900_561,
            format!("The endpoint only accepts POST, OPTIONS requests. Received a {method} request."),
        ));
    }
    let bytes = read_body(headers, body).await?;
    let params = Params::parse(headers, &bytes)?;
    state.count_request_for(
        &segment,
        params.get("grant_type").unwrap_or_default(),
        params.get("scope").unwrap_or_default(),
    );
    #[cfg(feature = "testing")]
    if let Some(response) = apply_fault(state, &params).await {
        return Ok(response);
    }
    let tenant = Tenant::parse(&segment)?;
    if state.is_tenant_denied(&tenant.tid) {
        return Err(EntraError::bad_request(
            "invalid_request",
            90_002,
            format!(
                "Tenant '{}' not found. Check to make sure you have the correct tenant ID and are signing into \
                 the correct cloud. Check with your subscription administrator, this may happen if there are no \
                 active subscriptions for the tenant.",
                printable(&tenant.path)
            ),
        ));
    }
    tracing::debug!(tenant = %tenant.path, grant_type = params.get("grant_type"), "token request");
    grant::dispatch(&TokenRequest { state, tenant: &tenant, params: &params, headers }).await
}

/// Draws the next injected fault, if any. `Some(response)` replaces normal processing; a latency
/// fault sleeps and returns `None` so the request proceeds (or 503 if the server shuts down).
#[cfg(feature = "testing")]
async fn apply_fault(state: &State, params: &Params) -> Option<Response> {
    let fault = state.take_fault()?;
    tracing::debug!(?fault, "applying injected fault");
    let resource =
        params.get("scope").and_then(|s| s.trim().strip_suffix("/.default")).unwrap_or(FALLBACK_RESOURCE);
    match fault.outcome(&state.authority, &printable(resource)) {
        Outcome::Respond(response) => Some(response),
        Outcome::Delay(delay) => {
            tokio::select! {
                () = tokio::time::sleep(delay) => None,
                () = state.cancel.cancelled() => Some(
                    EntraError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        90_033,
                        "A transient error has occurred. Please try again.",
                    )
                    .into_response(&state.authority),
                ),
            }
        }
    }
}

/// Reads at most [`MAX_BODY_BYTES`], within [`BODY_TIMEOUT`].
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, EntraError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(EntraError::malformed("The request body could not be read.")),
        Err(_) => Err(EntraError::malformed("The request body was not received in time.")),
    }
}

fn too_large() -> EntraError {
    EntraError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request",
        9_002_313,
        format!(
            "Invalid request. Request is malformed or invalid. The request body exceeds {MAX_BODY_BYTES} bytes."
        ),
    )
}
