//! `POST /v1/refresh` (`azbroker refresh`): fresh upstream tokens for the cached entries that
//! match `{"profile": ..., "resource": ...}` (both optional), e.g. after a role assignment
//! changed. Answers with one line per entry: its new token's short hash and lifetime, or the
//! upstream error. Never a token.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use azbroker_core::admin_api::{AdminError, RefreshAnswer, RefreshLine, RefreshRequest};
use azbroker_core::{EngineError, Resource};
use http::StatusCode;

use super::{AdminState, error};
use crate::body;

pub(super) async fn refresh(State(state): State<AdminState>, raw: Bytes) -> Response {
    let req: RefreshRequest = if raw.is_empty() {
        RefreshRequest::default()
    } else {
        match serde_json::from_slice(&raw) {
            Ok(r) => r,
            Err(e) => return error(&AdminError::BadRequest(format!("bad JSON: {e}"))),
        }
    };
    let resource = match req.resource.as_deref().map(Resource::parse).transpose() {
        Ok(r) => r,
        Err(e) => return error(&AdminError::InvalidResource(e.to_string())),
    };
    let engine = state.app.engine();
    let done = match engine.refresh_matching(req.profile.as_deref(), resource.as_ref()).await {
        Ok(done) => done,
        Err(e @ EngineError::UnknownProfile(_)) => return error(&AdminError::UnknownProfile(e.to_string())),
        Err(e) => return error(&AdminError::Unavailable(e.to_string())),
    };
    let refreshed: Vec<RefreshLine> = done
        .into_iter()
        .map(|d| {
            let (ok, token_hash, expires_in_secs, error) = match &d.result {
                Ok(g) => (true, Some(g.token.hash()), Some(g.token.expires_in_secs()), None),
                Err(e) => (false, None, None, Some(e.to_string())),
            };
            RefreshLine {
                profile: d.profile.to_string(),
                resource: d.resource.to_string(),
                ok,
                token_hash,
                expires_in_secs,
                error,
            }
        })
        .collect();
    let capacity = 128 + 160 * refreshed.len();
    body::json(StatusCode::OK, &RefreshAnswer { refreshed }, capacity)
}
