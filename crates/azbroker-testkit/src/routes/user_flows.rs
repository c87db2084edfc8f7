//! The user-facing ends of the delegated flows: the device authorization endpoint
//! (`POST /{tenant}/oauth2/v2.0/devicecode`, PROTOCOLS.md §12.2) and the authorization endpoint
//! (`GET /{tenant}/oauth2/v2.0/authorize`), which "signs in" the scripted browser user at once and
//! redirects to the loopback `redirect_uri` with a code (or with `error=access_denied` when no
//! user is scripted). Faults never apply here; token polling goes through the token endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::token::read_body;
use crate::error::EntraError;
use crate::form::Params;
use crate::state::State;
use crate::tenant::{Tenant, TenantKind, printable};
use crate::users::{AuthCode, DeviceFlow, DeviceState, user_code};

/// Entra's defaults: a code lives 15 minutes and is polled every 5 seconds.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(900);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) async fn devicecode(
    Extract(state): Extract<Arc<State>>,
    tenant: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match start_device_flow(&state, tenant, &headers, body).await {
        Ok(response) => response,
        Err(err) => err.into_response(&state.authority),
    }
}

async fn start_device_flow(
    state: &State,
    tenant: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, EntraError> {
    let Ok(Path(segment)) = tenant else {
        return Err(EntraError::malformed("The tenant segment of the URL is not valid UTF-8."));
    };
    let tenant = Tenant::parse(&segment)?;
    let params = Params::parse(headers, &read_body(headers, body).await?)?;
    let client_id = params.require("client_id")?.to_owned();
    let scope = params.require("scope")?.to_owned();
    let (lifetime, interval) = {
        let users = state.users();
        (users.device_lifetime.unwrap_or(DEFAULT_LIFETIME), users.device_interval.unwrap_or(DEFAULT_INTERVAL))
    };
    let code = user_code();
    let flow = DeviceFlow {
        user_code: code.clone(),
        client_id,
        scope,
        tenant_path: tenant.path.clone(),
        expires: Instant::now() + lifetime,
        interval,
        last_poll: None,
        state: DeviceState::Pending,
    };
    let device_code = state.users().new_device_flow(flow).ok_or_else(|| {
        EntraError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            90_055,
            "Too many pending device codes.",
        )
        .with_retry_after(5)
    })?;
    let uri = format!("{}/devicelogin", state.authority);
    tracing::debug!(tenant = %tenant.path, "device code issued");
    Ok(Json(json!({
        "user_code": code,
        "device_code": device_code,
        "verification_uri": uri,
        "expires_in": lifetime.as_secs(),
        "interval": interval.as_secs(),
        "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {code} to authenticate."),
    }))
    .into_response())
}

pub(crate) async fn authorize(
    Extract(state): Extract<Arc<State>>,
    tenant: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let page = |status: StatusCode, text: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            format!("<html><body><p>{}</p></body></html>", printable(text)),
        )
            .into_response()
    };
    let Ok(Path(segment)) = tenant else { return page(StatusCode::BAD_REQUEST, "bad tenant") };
    let Ok(tenant) = Tenant::parse(&segment) else {
        return page(StatusCode::BAD_REQUEST, "AADSTS900023: the tenant identifier is not valid");
    };
    let (Some(client_id), Some(redirect_uri)) = (get("client_id"), get("redirect_uri")) else {
        return page(StatusCode::BAD_REQUEST, "AADSTS900144: client_id and redirect_uri are required");
    };
    if !is_loopback_redirect(redirect_uri) {
        return page(
            StatusCode::BAD_REQUEST,
            "AADSTS50011: The redirect URI specified in the request does not match the redirect URIs configured for the application.",
        );
    }
    let mut reply = form_urlencoded::Serializer::new(String::new());
    if let Some(s) = get("state") {
        reply.append_pair("state", s);
    }
    let deny = |mut reply: form_urlencoded::Serializer<'_, String>, why: &str| {
        reply.append_pair("error", "access_denied").append_pair("error_description", why);
        redirect(redirect_uri, &reply.finish())
    };
    if get("response_type") != Some("code") {
        return deny(reply, "AADSTS700054: response_type 'code' is required.");
    }
    let (Some(challenge), Some("S256")) = (get("code_challenge"), get("code_challenge_method")) else {
        return deny(reply, "AADSTS9002325: Proof Key for Code Exchange (S256) is required.");
    };
    let browser_user = state.users().browser_user.clone();
    let Some(username) = browser_user else {
        return deny(reply, "AADSTS65004: The user declined to sign in.");
    };
    let reachable = state
        .users()
        .get(&username)
        .is_some_and(|u| tenant.kind == TenantKind::MultiTenant || u.can_reach(&tenant.tid));
    if !reachable {
        return deny(reply, "AADSTS50020: The user account does not exist in this tenant.");
    }
    let code = AuthCode {
        username,
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        challenge: challenge.to_owned(),
        scope: get("scope").unwrap_or("openid profile offline_access").to_owned(),
        tenant_path: tenant.path.clone(),
        expires: Instant::now(),
    };
    let Some(code) = state.users().new_auth_code(code) else {
        return page(StatusCode::TOO_MANY_REQUESTS, "too many pending sign-ins");
    };
    let mut ok = form_urlencoded::Serializer::new(String::new());
    ok.append_pair("code", &code);
    if let Some(s) = get("state") {
        ok.append_pair("state", s);
    }
    tracing::debug!(tenant = %tenant.path, "browser sign-in redirected with a code");
    redirect(redirect_uri, &ok.finish())
}

fn redirect(redirect_uri: &str, query: &str) -> Response {
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{redirect_uri}{sep}{query}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// Public clients may redirect only to `http://localhost[:port]` or `http://127.0.0.1[:port]`.
fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    matches!(name, "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_redirects() {
        assert!(super::is_loopback_redirect("http://localhost:8400/"));
        assert!(super::is_loopback_redirect("http://127.0.0.1:1/cb"));
        assert!(!super::is_loopback_redirect("https://localhost:8400/"));
        assert!(!super::is_loopback_redirect("http://evil.example/"));
        assert!(!super::is_loopback_redirect("http://localhost.evil.example:80/"));
    }
}
