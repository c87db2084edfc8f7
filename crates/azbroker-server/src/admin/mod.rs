//! The admin API: JSON over HTTP/1.1 on a unix socket in the runtime directory, used by the CLI
//! (`azbroker status`, `reload`, `refresh`, `rotate-secrets`, `login`, `logout`, `tenants`, and
//! `env` when the state directory is not readable), plus `GET /metrics` (Prometheus text) for
//! scrapers that run as the daemon's user.
//!
//! Access control has two layers: the socket file's mode (0600, or 0660 with the `admin_group`
//! as its group) and the peer credentials of every connection (`SO_PEERCRED`), checked against a
//! [`PeerPolicy`] before any route runs: the daemon's user and root may do everything, members of
//! `admin_group` may only `GET`. A refused peer gets 403 and the attempt is logged with its uid.
//! This module never serves tokens; the only secrets it answers with are the runtime secrets
//! clients must present anyway (`GET /v1/secrets`), and of a token it knows only the short hash.
//!
//! Behaviour that belongs to the binary (re-reading the config file, describing logins) reaches
//! the router through [`AdminHooks`], so this crate stays free of config and upstream types.

mod logins;
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
use axum::routing::{delete, get, post};
use azbroker_core::BoxFuture;
use azbroker_core::login::{AdminError, FlowStart, FlowStatus, LoginRequest, TenantInfo};
use http::StatusCode;
use serde::Serialize;

#[cfg(test)]
pub(crate) use peer::parse_status_groups as parse_status_groups_for_fuzz;
pub use peer::{PeerAccess, PeerCred, PeerPolicy};
pub use socket::{bind_admin_socket, serve_unix, share_with_group};

use crate::body;
use crate::state::AppState;

/// What the binary contributes to the admin API.
pub trait AdminHooks: Send + Sync + 'static {
    /// Re-reads and applies the config file. `Err` carries every problem found; the running
    /// config then stays in force.
    fn reload(&self) -> BoxFuture<'static, Result<ReloadOutcome, Vec<String>>>;

    /// Replaces the runtime secrets with new values (`azbroker rotate-secrets`): generates or
    /// re-reads them, stores them, and installs them with a grace period for the old values.
    fn rotate_secrets(&self) -> BoxFuture<'static, Result<RotateOutcome, String>> {
        Box::pin(async { Err("this daemon cannot rotate its secrets".to_owned()) })
    }

    /// Extra top-level fields of `GET /v1/status` (e.g. `config`, `logins`). Must contain no
    /// secret.
    fn status_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// Starts an interactive sign-in for a user login; the daemon runs the flow.
    fn start_login(
        &self,
        login: String,
        request: LoginRequest,
    ) -> BoxFuture<'static, Result<FlowStart, AdminError>> {
        let _ = (login, request);
        Box::pin(async { Err(unsupported()) })
    }

    /// A flow's state, after waiting up to `wait` for it to finish.
    fn login_flow(
        &self,
        login: String,
        flow_id: String,
        wait: std::time::Duration,
    ) -> BoxFuture<'static, Result<FlowStatus, AdminError>> {
        let _ = (login, flow_id, wait);
        Box::pin(async { Err(unsupported()) })
    }

    /// Cancels a flow.
    fn cancel_login(
        &self,
        login: String,
        flow_id: String,
    ) -> BoxFuture<'static, Result<FlowStatus, AdminError>> {
        let _ = (login, flow_id);
        Box::pin(async { Err(unsupported()) })
    }

    /// Forgets a login's refresh token and cached tokens; `Ok(true)` if it had any.
    fn logout(&self, login: String) -> BoxFuture<'static, Result<bool, AdminError>> {
        let _ = login;
        Box::pin(async { Err(unsupported()) })
    }

    /// The tenants the login's user can reach.
    fn tenants(&self, login: String) -> BoxFuture<'static, Result<Vec<TenantInfo>, AdminError>> {
        let _ = login;
        Box::pin(async { Err(unsupported()) })
    }
}

fn unsupported() -> AdminError {
    AdminError::new(501, "not_supported", "this daemon does not run user logins")
}

/// A successful reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadOutcome {
    /// Profiles configured after the reload.
    pub profiles: usize,
    /// Things that did not take effect (e.g. listener changes, which need a restart).
    pub warnings: Vec<String>,
}

/// A successful rotation.
#[derive(Debug, Clone, Serialize)]
pub struct RotateOutcome {
    /// Names of the secrets that changed.
    pub rotated: Vec<String>,
    /// Names of the secrets left as they were (e.g. a configured file that did not change).
    pub unchanged: Vec<String>,
    /// How long the previous values stay valid.
    pub grace_secs: u64,
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
        .route("/v1/secrets", get(secrets))
        .route("/v1/rotate-secrets", post(rotate_secrets))
        .route("/v1/logins/{login}/flows", post(logins::start))
        .route("/v1/logins/{login}/flows/{id}", get(logins::status).merge(delete(logins::cancel)))
        .route("/v1/logins/{login}/logout", post(logins::logout))
        .route("/v1/logins/{login}/tenants", get(logins::tenants))
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
    let access = peer.map(|cred| (cred, state.policy.access(&cred)));
    match access {
        Some((_, PeerAccess::Full)) => next.run(req).await,
        Some((_, PeerAccess::Read)) if req.method() == http::Method::GET => next.run(req).await,
        Some((cred, PeerAccess::Read)) => {
            tracing::warn!(
                uid = cred.uid,
                path = req.uri().path(),
                "admin change refused to a read-only peer"
            );
            body::error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "uid {} may only read from this daemon's admin socket (admin_group); changes need the daemon's user or root",
                    cred.uid
                ),
            )
        }
        Some((cred, PeerAccess::None)) => {
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
    let rt = state.app.runtime();
    let entries = engine.entries();
    let status = Status {
        info: &state.info,
        ready: state.app.is_ready(),
        uptime_secs: state.started.elapsed().as_secs(),
        profiles: rt.profiles().keys().map(ToString::to_string).collect(),
        default_profile: rt.directory().default_profile().map(ToString::to_string),
        stats: engine.stats(),
        extra: state.hooks.status_fields(),
        entries,
    };
    body::json(StatusCode::OK, &status, 1024)
}

/// The runtime secrets clients need now (what `azbroker env` prints), by name.
async fn secrets(State(state): State<AdminState>) -> Response {
    let mut values = serde_json::Map::new();
    for id in crate::SecretId::ALL {
        if let Some(secret) = state.app.current_secret(*id) {
            values.insert(id.name().to_owned(), secret.expose().into());
        }
    }
    body::json(StatusCode::OK, &values, 256)
}

async fn rotate_secrets(State(state): State<AdminState>) -> Response {
    match state.hooks.rotate_secrets().await {
        Ok(outcome) => body::json(StatusCode::OK, &outcome, 256),
        Err(problem) => body::error(StatusCode::BAD_REQUEST, "rotate_failed", &problem),
    }
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
