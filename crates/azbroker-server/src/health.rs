//! Operations endpoints: `/healthz` (the process answers) and `/readyz` (start-up finished).
//!
//! They never touch the engine or upstream, so they stay fast and cannot leak anything.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use http::StatusCode;

use crate::body;
use crate::routes::{Endpoint, RouteCtx};
use crate::runtime::Runtime;

/// `GET /healthz`: 200 `{"status":"ok"}` while the process answers.
pub(crate) struct Healthz;

impl Endpoint for Healthz {
    async fn call(_ctx: Arc<RouteCtx>, _rt: Arc<Runtime>, _req: Request) -> Response {
        body::static_json(StatusCode::OK, br#"{"status":"ok"}"#)
    }
}

/// `GET /readyz`: 200 `{"status":"ready"}` once start-up finished, 503 `{"status":"starting"}` before.
pub(crate) struct Readyz;

impl Endpoint for Readyz {
    async fn call(ctx: Arc<RouteCtx>, _rt: Arc<Runtime>, _req: Request) -> Response {
        if ctx.app.is_ready() {
            body::static_json(StatusCode::OK, br#"{"status":"ready"}"#)
        } else {
            body::static_json(StatusCode::SERVICE_UNAVAILABLE, br#"{"status":"starting"}"#)
        }
    }
}
