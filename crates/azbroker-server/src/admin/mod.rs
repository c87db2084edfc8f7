//! The admin API: JSON over HTTP/1.1 on a unix socket in the runtime directory, used by the CLI
//! (`azbroker status`, `azbroker reload`, `azbroker refresh`, and the commands later features
//! add), plus `GET /metrics` (Prometheus text) for scrapers that run as the daemon's user.
//!
//! Access control has two layers: the socket file's mode (0600, so only the owner can connect)
//! and the peer credentials of every connection (`SO_PEERCRED`), checked against a
//! [`PeerPolicy`] before any route runs; a refused peer gets 403 and the attempt is logged with
//! its uid. This module never serves tokens and never puts a secret into a response: what it
//! knows of a token is its short hash.
//!
//! Behaviour that belongs to the binary (re-reading the config file, describing logins) reaches
//! the router through [`AdminHooks`], so this crate stays free of config and upstream types.

mod peer;
mod refresh;
mod socket;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use azbroker_core::BoxFuture;
use http::StatusCode;
use serde::Serialize;

pub use peer::{PeerCred, PeerPolicy};
pub use socket::{bind_admin_socket, serve_unix};

use crate::body;
use crate::state::AppState;

/// What the binary contributes to the admin API.
pub trait AdminHooks: Send + Sync + 'static {
    /// Re-reads and applies the config file. `Err` carries every problem found; the running
    /// config then stays in force.
    fn reload(&self) -> BoxFuture<'static, Result<ReloadOutcome, Vec<String>>>;

    /// Extra top-level fields of `GET /v1/status` (e.g. `config`, `logins`). Must contain no
    /// secret.
    fn status_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }
}

/// A successful reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    /// Profiles configured after the reload.
    pub profiles: usize,
    /// Things that did not take effect (e.g. listener changes, which need a restart).
    pub warnings: Vec<String>,
}

/// Static facts about the running daemon, shown by `GET /v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    /// Token listener addresses, e.g. `127.0.0.1:50342`.
    pub listeners: Vec<String>,
}

/// Everything the admin routes share.
#[derive(Clone)]
pub struct AdminState {
    app: AppState,
    hooks: Arc<dyn AdminHooks>,
    info: Arc<DaemonInfo>,
    policy: Arc<PeerPolicy>,
    started: Instant,
}

impl AdminState {
    pub fn new(app: AppState, hooks: Arc<dyn AdminHooks>, info: DaemonInfo, policy: PeerPolicy) -> Self {
        Self { app, hooks, info: Arc::new(info), policy: Arc::new(policy), started: Instant::now() }
    }

    /// The serving state (engine, directory) behind the admin routes.
    pub fn app(&self) -> &AppState {
        &self.app
    }
}

/// The admin routes, every one behind the peer check. Serve it with [`serve_unix`], which
/// supplies the `ConnectInfo<PeerCred>` the check reads.
pub fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { body::static_json(StatusCode::OK, br#"{"status":"ok"}"#) }))
        .route("/v1/status", get(status))
        .route("/v1/reload", post(reload))
        .route("/v1/refresh", post(refresh::refresh))
        .route("/metrics", get(|State(s): State<AdminState>| async move { crate::metrics::response(&s.app) }))
        .fallback(|| async { body::error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint") })
        .route_layer(middleware::from_fn_with_state(state.clone(), check_peer))
        .with_state(state)
}

/// Refuses connections whose peer the policy does not admit (and requests with no peer at all).
async fn check_peer(State(state): State<AdminState>, req: Request, next: Next) -> Response {
    let ext = req.extensions();
    // `MockConnectInfo` is how in-process tests supply a peer; `serve_unix` supplies the real one.
    let peer = ext
        .get::<ConnectInfo<PeerCred>>()
        .map(|c| c.0)
        .or_else(|| ext.get::<MockConnectInfo<PeerCred>>().map(|c| c.0));
    match peer {
        Some(cred) if state.policy.allows(&cred) => next.run(req).await,
        Some(cred) => {
            tracing::warn!(uid = cred.uid, gid = cred.gid, path = req.uri().path(), "admin request refused");
            body::error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("uid {} may not use this daemon's admin socket", cred.uid),
            )
        }
        None => body::error(StatusCode::FORBIDDEN, "forbidden", "the caller's identity is unknown"),
    }
}

#[derive(Serialize)]
struct Status<'a> {
    #[serde(flatten)]
    info: &'a DaemonInfo,
    ready: bool,
    uptime_secs: u64,
    profiles: Vec<String>,
    default_profile: Option<String>,
    entries: Vec<azbroker_core::EntryStatus>,
    stats: azbroker_core::StatsSnapshot,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

async fn status(State(state): State<AdminState>) -> Response {
    let engine = state.app.engine();
    let directory = state.app.directory();
    let entries = engine.entries();
    let status = Status {
        info: &state.info,
        ready: state.app.is_ready(),
        uptime_secs: state.started.elapsed().as_secs(),
        profiles: engine.profile_names().iter().map(ToString::to_string).collect(),
        default_profile: directory.default_profile().map(ToString::to_string),
        stats: engine.stats(),
        extra: state.hooks.status_fields(),
        entries,
    };
    body::json(StatusCode::OK, &status, 1024)
}

async fn reload(State(state): State<AdminState>) -> Response {
    match state.hooks.reload().await {
        Ok(outcome) => body::json(
            StatusCode::OK,
            &serde_json::json!({"status": "reloaded", "profiles": outcome.profiles, "warnings": outcome.warnings}),
            256,
        ),
        Err(problems) => body::json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"status": "rejected", "problems": problems}),
            256,
        ),
    }
}

#[cfg(test)]
mod tests;
