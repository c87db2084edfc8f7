//! The admin API: JSON over HTTP/1.1 on a unix socket in the runtime directory, used by the CLI
//! (`azbroker status`, `reload`, `refresh`, `rotate-secrets`, `login`, `logout`, `tenants`, and
//! `env` when the state directory is not readable), plus `GET /metrics` (Prometheus text) for
//! scrapers that run as the daemon's user.
//!
//! Access control has two layers: the socket file's mode (0600, or 0660 with the `admin_group`
//! as its group) and the peer credentials of every connection (`SO_PEERCRED`), checked against a
//! [`PeerPolicy`] before any route runs: the daemon's user and root may do everything, members of
//! `admin_group` may only `GET` what reads the daemon's own state (not a login's tenants). A
//! refused peer gets 403 and the attempt is logged with its uid.
//! This module never serves tokens; the only secrets it answers with are the runtime secrets
//! clients must present anyway (`GET /v1/secrets`), and of a token it knows only the short hash.
//!
//! Behaviour that belongs to the binary (re-reading the config file, describing logins) reaches
//! the router through [`AdminHooks`], so this crate stays free of config and upstream types.
//! Requests and answers are the types of `azbroker_core::admin_api`, which the CLI reads back;
//! [`status_of`] is the one place an [`AdminError`] becomes an HTTP status.

mod keys;
mod logins;
mod peer;
mod personal;
mod refresh;
mod socket;

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::Router;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post};
use azbroker_core::BoxFuture;
use azbroker_core::Secret;
use azbroker_core::admin_api::{
    AdminError, DaemonStatus, FlowStart, FlowStatus, KeyCreate, KeyCreated, KeyInfo, LoginRequest,
    ReloadAnswer, SecretValues, Status, StopAnswer, TenantInfo,
};
pub use azbroker_core::admin_api::{DaemonInfo, ReloadOutcome, ReloadRejected, RotateOutcome};
use http::StatusCode;

#[cfg(test)]
pub(crate) use peer::parse_status_groups as parse_status_groups_for_fuzz;
pub use peer::{PeerAccess, PeerCred, PeerPolicy};
pub use personal::{AdminCaller, SelfServiceHooks};
pub use socket::{bind_admin_socket, open_to_everyone, serve_unix, share_with_group};

use crate::SecretId;
use crate::body;
use crate::state::AppState;

/// What the binary contributes to the admin API. Every answer and error is a typed value of
/// `azbroker_core::admin_api`; this module alone turns them into HTTP.
pub trait AdminHooks: Send + Sync + 'static {
    /// Re-reads and applies the config file. `Err` carries every problem found; the running
    /// config then stays in force.
    fn reload(&self) -> BoxFuture<'static, Result<ReloadOutcome, ReloadRejected>>;

    /// Replaces the runtime secrets with new values (`azbroker rotate-secrets`): generates or
    /// re-reads them, stores them, and installs them with a grace period for the old values.
    fn rotate_secrets(&self) -> BoxFuture<'static, Result<RotateOutcome, AdminError>> {
        Box::pin(async { Err(AdminError::RotateFailed("this daemon cannot rotate its secrets".to_owned())) })
    }

    /// Begins a graceful stop (`azbroker stop`): the daemon drains in-flight requests and exits,
    /// as on SIGTERM. Answers before the daemon is gone.
    fn stop(&self) -> Result<StopAnswer, AdminError> {
        Err(AdminError::Unsupported("this daemon cannot be stopped over its admin socket".to_owned()))
    }

    /// What the binary adds to `GET /v1/status` (config origin, logins, sockets, exports). Must
    /// contain no secret.
    fn status(&self) -> DaemonStatus {
        DaemonStatus::default()
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

    /// Mints a client key (`azbroker key create`): stores its hash, publishes it, returns it once.
    fn create_key(&self, request: KeyCreate) -> BoxFuture<'static, Result<KeyCreated, AdminError>> {
        let _ = request;
        Box::pin(async { Err(AdminError::Unsupported("this daemon does not keep client keys".to_owned())) })
    }

    /// Revokes a client key by name, at once (`azbroker key revoke`).
    fn revoke_key(&self, name: String) -> BoxFuture<'static, Result<KeyInfo, AdminError>> {
        let _ = name;
        Box::pin(async { Err(AdminError::Unsupported("this daemon does not keep client keys".to_owned())) })
    }

    /// The tenants the login's user can reach.
    fn tenants(&self, login: String) -> BoxFuture<'static, Result<Vec<TenantInfo>, AdminError>> {
        let _ = login;
        Box::pin(async { Err(unsupported()) })
    }

    /// Personal logins and profiles of a shared machine (`/v1/self/...`), when this daemon
    /// offers them.
    fn self_service(&self) -> Option<&dyn SelfServiceHooks> {
        None
    }
}

/// The one place an admin error becomes an HTTP status.
pub fn status_of(error: &AdminError) -> StatusCode {
    match error {
        AdminError::BadRequest(_)
        | AdminError::InvalidResource(_)
        | AdminError::UnknownProfile(_)
        | AdminError::RotateFailed(_) => StatusCode::BAD_REQUEST,
        AdminError::NotFound(_) => StatusCode::NOT_FOUND,
        AdminError::Forbidden(_) => StatusCode::FORBIDDEN,
        AdminError::TooManyFlows(_) => StatusCode::TOO_MANY_REQUESTS,
        AdminError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        AdminError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AdminError::RedirectListener(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // Definitive upstream answers (the message says what to do) are the request's fault;
        // the rest is a bad gateway the caller may retry.
        AdminError::Upstream(e) if e.is_definitive() => StatusCode::BAD_REQUEST,
        AdminError::Upstream(_) => StatusCode::BAD_GATEWAY,
    }
}

/// The status for a reload answer: a rejected config is the request's problem.
pub fn reload_status(answer: &ReloadAnswer) -> StatusCode {
    match answer {
        ReloadAnswer::Reloaded(_) => StatusCode::OK,
        ReloadAnswer::Rejected(_) => StatusCode::BAD_REQUEST,
    }
}

/// The field of [`SecretValues`] that carries `id` (the wire key is `id.name()`).
pub fn secret_value(values: &SecretValues, id: SecretId) -> Option<&Secret> {
    match id {
        SecretId::IdentityHeader => values.identity_header.as_ref(),
        SecretId::MsiSecret => values.msi_secret.as_ref(),
        SecretId::NativeKey => values.native_key.as_ref(),
    }
}

fn secret_slot(values: &mut SecretValues, id: SecretId) -> &mut Option<Secret> {
    match id {
        SecretId::IdentityHeader => &mut values.identity_header,
        SecretId::MsiSecret => &mut values.msi_secret,
        SecretId::NativeKey => &mut values.native_key,
    }
}

/// An admin error as a response: [`status_of`] and the shared error body.
pub(crate) fn error(e: &AdminError) -> Response {
    let body = e.body();
    body::json(status_of(e), &body, 64 + body.error_description.len())
}

fn unsupported() -> AdminError {
    AdminError::Unsupported("this daemon does not run user logins".to_owned())
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

    /// Writes the warning of a refused admin request through the token listeners' denial
    /// limiter, per (uid, reason), so a peer flooding the socket costs a few lines.
    fn warn_refused(&self, cred: &PeerCred, path: &str, reason: &'static str, what: &str) {
        if self.app.denial_log().should_log(Some(cred.uid), reason, Instant::now()) {
            tracing::warn!(uid = cred.uid, gid = cred.gid, path, reason, "{what}");
        }
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
        .route("/v1/stop", post(stop))
        .route("/v1/logins/{login}/flows", post(logins::start))
        .route("/v1/logins/{login}/flows/{id}", get(logins::status).merge(delete(logins::cancel)))
        .route("/v1/logins/{login}/logout", post(logins::logout))
        .route("/v1/logins/{login}/tenants", get(logins::tenants))
        .route("/v1/refresh", post(refresh::refresh))
        .merge(personal::routes())
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{name}", delete(keys::revoke))
        .route(
            "/metrics",
            get(|State(s): State<AdminState>| async move { crate::metrics::response(&s.app).await }),
        )
        .fallback(|| async { error(&AdminError::NotFound("no such admin endpoint".to_owned())) })
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
    let mut req = req;
    if let Some((cred, access)) = access {
        let all = matches!(access, PeerAccess::Full | PeerAccess::Read);
        req.extensions_mut().insert(AdminCaller { uid: cred.uid, all });
    }
    let own_corner = personal::own_corner(req.method(), req.uri().path());
    match access {
        Some((_, PeerAccess::Full)) => next.run(req).await,
        Some((_, PeerAccess::Read | PeerAccess::SelfService)) if own_corner => next.run(req).await,
        Some((_, PeerAccess::Read)) if is_read_only(&req) => next.run(req).await,
        Some((cred, PeerAccess::SelfService)) => {
            let what = "admin request beyond self-service refused";
            state.warn_refused(&cred, req.uri().path(), "admin_beyond_self_service", what);
            error(&AdminError::Forbidden(format!(
                "uid {} may use only its own logins, profiles and workspaces on this daemon (self_service); \
                 this needs the daemon's user, root or admin_group",
                cred.uid
            )))
        }
        Some((cred, PeerAccess::Read)) => {
            let what = "admin change refused to a read-only peer";
            state.warn_refused(&cred, req.uri().path(), "admin_read_only", what);
            error(&AdminError::Forbidden(format!(
                "uid {} may only read from this daemon's admin socket (admin_group); changes, \
                 sign-in flows and calls upstream (a login's tenants) need the daemon's user or root",
                cred.uid
            )))
        }
        Some((cred, PeerAccess::None)) => {
            state.warn_refused(&cred, req.uri().path(), "admin_not_admitted", "admin request refused");
            let why = if state.policy.self_service() {
                "it is not in any of [server] self_service_groups"
            } else {
                "self-service is off ([server] self_service = true lets local users sign in as themselves)"
            };
            error(&AdminError::Forbidden(format!(
                "uid {} may not use this daemon's admin socket: {why}",
                cred.uid
            )))
        }
        None => error(&AdminError::Forbidden("the caller's identity is unknown".to_owned())),
    }
}

/// What an `admin_group` member may do: `GET`s that only read the daemon's own state. The `GET`s
/// under `/v1/logins/` are not reads of that kind, so they are administrators' calls: listing a
/// login's tenants calls Azure Resource Manager with the login's tokens (upstream cost, and the
/// tenants of an account that is not theirs), and watching a sign-in flow holds a long poll on
/// a flow only an administrator can have started (and follows who signs the daemon in).
fn is_read_only(req: &Request) -> bool {
    req.method() == http::Method::GET && !req.uri().path().starts_with("/v1/logins/")
}

async fn status(State(state): State<AdminState>, caller: Option<Extension<AdminCaller>>) -> Response {
    if let Some(Extension(caller)) = caller.filter(|c| !c.all) {
        return personal::own_status(&state, caller.uid);
    }
    let engine = state.app.engine();
    let rt = state.app.runtime();
    let status = Status {
        info: (*state.info).clone(),
        ready: state.app.is_ready(),
        uptime_secs: state.started.elapsed().as_secs(),
        profiles: rt.profiles().keys().map(ToString::to_string).collect(),
        default_profile: rt.directory().default_profile().map(ToString::to_string),
        entries: engine.entries(),
        stats: engine.stats(),
        daemon: state.hooks.status(),
    };
    body::json(StatusCode::OK, &status, 1024)
}

/// The runtime secrets clients need now (what `azbroker env` prints).
async fn secrets(State(state): State<AdminState>) -> Response {
    let mut values = SecretValues::default();
    for id in crate::SecretId::ALL {
        *secret_slot(&mut values, *id) = state.app.current_secret(*id);
    }
    body::json(StatusCode::OK, &values, 256)
}

async fn rotate_secrets(State(state): State<AdminState>) -> Response {
    match state.hooks.rotate_secrets().await {
        Ok(outcome) => body::json(StatusCode::OK, &outcome, 256),
        Err(e) => error(&e),
    }
}

async fn stop(State(state): State<AdminState>) -> Response {
    match state.hooks.stop() {
        Ok(answer) => body::json(StatusCode::OK, &answer, 64),
        Err(e) => error(&e),
    }
}

async fn reload(State(state): State<AdminState>) -> Response {
    let answer = ReloadAnswer::from(state.hooks.reload().await);
    body::json(reload_status(&answer), &answer, 256)
}

#[cfg(test)]
mod tests;
