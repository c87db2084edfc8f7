//! `/v1/keys`: client keys (`azbroker key create|list|revoke`). Creating and revoking belong to the
//! binary (the state file, the listeners a key is printed for) and reach it through
//! [`super::AdminHooks`]; the listing is read from the runtime in force, which holds the keys.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use azbroker_core::admin_api::{AdminError, KeyCreate, KeyList};
use azbroker_core::unix_now;
use http::StatusCode;

use super::{AdminState, error};
use crate::body;

pub(super) async fn create(State(state): State<AdminState>, raw: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<KeyCreate>(&raw) else {
        return error(&AdminError::BadRequest(
            "the body must be JSON: {\"name\":..,\"profile\":..,\"resources\":[..],\"ttl_secs\":..}"
                .to_owned(),
        ));
    };
    match state.hooks.create_key(request).await {
        Ok(created) => body::json(StatusCode::OK, &created, 512),
        Err(e) => error(&e),
    }
}

pub(super) async fn list(State(state): State<AdminState>) -> Response {
    let now = unix_now();
    let rt = state.app.runtime();
    let keys = (rt.keys().entries().iter())
        .map(|k| {
            let mut info = k.info(now);
            // Valid by its own dates, but its profile is gone: it serves nothing (`authenticate`).
            if info.state == "valid" && !rt.profiles().contains_key(&k.profile) {
                info.state = "profile-gone".to_owned();
            }
            info
        })
        .collect();
    body::json(StatusCode::OK, &KeyList { keys }, 512)
}

pub(super) async fn revoke(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.hooks.revoke_key(name).await {
        Ok(info) => body::json(StatusCode::OK, &info, 256),
        Err(e) => error(&e),
    }
}
