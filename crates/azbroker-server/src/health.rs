//! Operations endpoints: `/healthz` (the process answers) and `/readyz` (start-up finished).
//!
//! They never touch the engine or upstream, so they stay fast and cannot leak anything.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;

use crate::body;
use crate::routes::RouteCtx;

pub(crate) async fn healthz() -> Response {
    body::static_json(StatusCode::OK, br#"{"status":"ok"}"#)
}

pub(crate) async fn readyz(State(ctx): State<Arc<RouteCtx>>) -> Response {
    if ctx.app.is_ready() {
        body::static_json(StatusCode::OK, br#"{"status":"ready"}"#)
    } else {
        body::static_json(StatusCode::SERVICE_UNAVAILABLE, br#"{"status":"starting"}"#)
    }
}
