//! The admin routes for user logins: start a sign-in flow, watch it (long poll), cancel it,
//! sign out, list the user's tenants. The work happens in the binary's [`AdminHooks`] (which
//! delegates to the upstream crate); these handlers only parse, bound and encode. Nothing here
//! ever carries a token.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use azbroker_core::admin_api::{AdminError, LoginRequest, LogoutAnswer, TenantsAnswer};
use http::StatusCode;
use serde::Deserialize;

use super::{AdminState, error};
use crate::body;

/// Longest long-poll a watcher may ask for.
const MAX_WAIT_SECS: u64 = 20;
/// Largest request body (a login request is a few bytes).
const MAX_BODY: usize = 4096;

#[derive(Deserialize)]
pub(super) struct WaitQuery {
    #[serde(default)]
    pub(super) wait: Option<u64>,
}

/// `POST /v1/logins/{login}/flows` with a JSON [`LoginRequest`] (an empty body means defaults).
pub(super) async fn start(
    State(state): State<AdminState>,
    Path(login): Path<String>,
    body: Bytes,
) -> Response {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        LoginRequest::default()
    } else if body.len() > MAX_BODY {
        return error(&AdminError::BadRequest("the request body is too large".to_owned()));
    } else {
        match serde_json::from_slice::<LoginRequest>(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(&AdminError::BadRequest(format!(
                    "the request body is not a login request: {e}"
                )));
            }
        }
    };
    match state.hooks.start_login(login, request).await {
        Ok(start) => body::json(StatusCode::OK, &start, 512),
        Err(e) => error(&e),
    }
}

/// `GET /v1/logins/{login}/flows/{id}?wait=SECS`.
pub(super) async fn status(
    State(state): State<AdminState>,
    Path((login, id)): Path<(String, String)>,
    Query(q): Query<WaitQuery>,
) -> Response {
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    match state.hooks.login_flow(login, id, wait).await {
        Ok(status) => body::json(StatusCode::OK, &status, 256),
        Err(e) => error(&e),
    }
}

/// `DELETE /v1/logins/{login}/flows/{id}`.
pub(super) async fn cancel(
    State(state): State<AdminState>,
    Path((login, id)): Path<(String, String)>,
) -> Response {
    match state.hooks.cancel_login(login, id).await {
        Ok(status) => body::json(StatusCode::OK, &status, 256),
        Err(e) => error(&e),
    }
}

/// `POST /v1/logins/{login}/logout`.
pub(super) async fn logout(State(state): State<AdminState>, Path(login): Path<String>) -> Response {
    match state.hooks.logout(login).await {
        Ok(had_state) => body::json(StatusCode::OK, &LogoutAnswer::SignedOut { had_state }, 64),
        Err(e) => error(&e),
    }
}

/// `GET /v1/logins/{login}/tenants`.
pub(super) async fn tenants(State(state): State<AdminState>, Path(login): Path<String>) -> Response {
    match state.hooks.tenants(login).await {
        Ok(tenants) => body::json(StatusCode::OK, &TenantsAnswer { tenants }, 1024),
        Err(e) => error(&e),
    }
}
