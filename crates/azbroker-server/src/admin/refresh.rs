//! `POST /v1/refresh` (`azbroker refresh`): fresh upstream tokens for the cached entries that
//! match `{"profile": ..., "resource": ...}` (both optional), e.g. after a role assignment
//! changed. Answers with one line per entry: its new token's short hash and lifetime, or the
//! upstream error. Never a token.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use azbroker_core::{EngineError, Resource};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AdminState;
use crate::body;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    profile: Option<String>,
    resource: Option<String>,
}

#[derive(Serialize)]
struct Line {
    profile: String,
    resource: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_in_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub(super) async fn refresh(State(state): State<AdminState>, raw: Bytes) -> Response {
    let req: RefreshRequest = if raw.is_empty() {
        RefreshRequest::default()
    } else {
        match serde_json::from_slice(&raw) {
            Ok(r) => r,
            Err(e) => {
                return body::error(StatusCode::BAD_REQUEST, "invalid_request", &format!("bad JSON: {e}"));
            }
        }
    };
    let resource = match req.resource.as_deref().map(Resource::parse).transpose() {
        Ok(r) => r,
        Err(e) => return body::error(StatusCode::BAD_REQUEST, "invalid_resource", &e.to_string()),
    };
    let engine = state.app.engine();
    let done = match engine.refresh_matching(req.profile.as_deref(), resource.as_ref()).await {
        Ok(done) => done,
        Err(e @ EngineError::UnknownProfile(_)) => {
            return body::error(StatusCode::BAD_REQUEST, "unknown_profile", &e.to_string());
        }
        Err(e) => return body::error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e.to_string()),
    };
    let lines: Vec<Line> = done
        .into_iter()
        .map(|d| {
            let (ok, token_hash, expires_in_secs, error) = match &d.result {
                Ok(g) => (true, Some(g.token.hash()), Some(g.token.expires_in_secs()), None),
                Err(e) => (false, None, None, Some(e.to_string())),
            };
            Line {
                profile: d.profile.to_string(),
                resource: d.resource.to_string(),
                ok,
                token_hash,
                expires_in_secs,
                error,
            }
        })
        .collect();
    body::json(StatusCode::OK, &serde_json::json!({ "refreshed": lines }), 128 + 160 * lines.len())
}
