//! The self-service corner of the admin socket on a shared machine (`[server] self_service`):
//! every permitted local user signs in as themselves (`/v1/self/login`), signs out, lists their
//! tenants and manages their personal workspaces — always *their own*, the uid taken from the
//! connection's `SO_PEERCRED`, never from the request. `status` for such a caller shows only
//! their own logins, profiles and cache entries. Administrators sign any user out
//! (`/v1/users/{name}/logout`, full access only).
//!
//! The work happens in the binary's [`SelfServiceHooks`]; this module only routes, bounds and
//! encodes. Nothing here carries a token.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use azbroker_core::BoxFuture;
use azbroker_core::admin_api::{
    AdminError, DaemonStatus, FlowStart, FlowStatus, LoginRequest, LogoutAnswer, PersonalWorkspace, Status,
    TenantInfo, TenantsAnswer, WorkspaceRemoved, WorkspaceRequest,
};
use http::{Method, StatusCode};

use super::logins::WaitQuery;
use super::{AdminState, error};
use crate::body;

/// Who is calling, as the peer check found it: their uid, and whether they may see everyone's
/// state (the daemon's user, root, `admin_group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminCaller {
    pub uid: u32,
    pub all: bool,
}

/// The binary's side of self-service. Every method acts for `uid` only.
pub trait SelfServiceHooks: Send + Sync {
    /// Starts `uid`'s personal sign-in (their login is created on first use).
    fn start_login(
        &self,
        uid: u32,
        request: LoginRequest,
    ) -> BoxFuture<'static, Result<FlowStart, AdminError>>;

    /// One of `uid`'s sign-ins, after waiting up to `wait` for it to end.
    fn login_flow(
        &self,
        uid: u32,
        flow_id: String,
        wait: Duration,
    ) -> BoxFuture<'static, Result<FlowStatus, AdminError>>;

    fn cancel_login(&self, uid: u32, flow_id: String) -> BoxFuture<'static, Result<FlowStatus, AdminError>>;

    /// Forgets `uid`'s personal login, profiles and cached tokens; `Ok(true)` if they had any.
    fn logout(&self, uid: u32) -> BoxFuture<'static, Result<bool, AdminError>>;

    /// An administrator's `logout --user NAME` (a user name, or a numeric uid for a deleted user).
    fn logout_user(&self, user: String) -> BoxFuture<'static, Result<bool, AdminError>>;

    fn tenants(&self, uid: u32) -> BoxFuture<'static, Result<Vec<TenantInfo>, AdminError>>;

    fn workspaces(&self, uid: u32) -> Result<Vec<PersonalWorkspace>, AdminError>;

    fn add_workspace(
        &self,
        uid: u32,
        request: WorkspaceRequest,
    ) -> BoxFuture<'static, Result<PersonalWorkspace, AdminError>>;

    fn remove_workspace(&self, uid: u32, name: String) -> BoxFuture<'static, Result<bool, AdminError>>;

    /// What the binary adds to `uid`'s own status (their logins only).
    fn status(&self, uid: u32) -> DaemonStatus;
}

/// Largest request body of these routes.
const MAX_BODY: usize = 4096;
/// Longest long-poll.
const MAX_WAIT_SECS: u64 = 20;

/// Whether `method path` is one of the routes a self-service caller may use.
pub(super) fn own_corner(method: &Method, path: &str) -> bool {
    path.starts_with("/v1/self/")
        || (method == Method::GET && matches!(path, "/healthz" | "/v1/status" | "/v1/secrets"))
}

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/v1/self/login", post(start))
        .route("/v1/self/login/{id}", get(flow).merge(delete(cancel)))
        .route("/v1/self/logout", post(logout))
        .route("/v1/self/tenants", get(tenants))
        .route("/v1/self/workspaces", get(workspaces).merge(post(add_workspace)))
        .route("/v1/self/workspaces/{name}", delete(remove_workspace))
        .route("/v1/users/{user}/logout", post(logout_user))
}

/// `uid`'s own status: the daemon's facts, their profiles (by the names they use), their cache
/// entries and their logins; nobody else's.
pub(super) fn own_status(state: &AdminState, uid: u32) -> Response {
    let rt = state.app.runtime();
    let personal = rt.directory().personal();
    let mine = personal.of(uid);
    let short = |profile: &str| mine.iter().find(|(_, p)| p.as_str() == profile).map(|(n, _)| n.clone());
    let entries = state
        .app
        .engine()
        .entries()
        .into_iter()
        .filter_map(|mut e| {
            e.profile = short(&e.profile)?;
            Some(e)
        })
        .collect();
    let default_profile = personal
        .default_of(Some(uid))
        .and_then(|p| short(p.as_str()))
        .or_else(|| rt.directory().default_profile().map(ToString::to_string));
    let status = Status {
        info: (*state.info).clone(),
        ready: state.app.is_ready(),
        uptime_secs: state.started.elapsed().as_secs(),
        profiles: mine.iter().map(|(n, _)| n.clone()).collect(),
        default_profile,
        entries,
        stats: Default::default(),
        daemon: state.hooks.self_service().map(|h| h.status(uid)).unwrap_or_default(),
    };
    body::json(StatusCode::OK, &status, 1024)
}

fn hooks(state: &AdminState) -> Result<&dyn SelfServiceHooks, AdminError> {
    state.hooks.self_service().ok_or_else(|| {
        AdminError::Unsupported(
            "this daemon does not offer self-service sign-in ([server] self_service = true on a system daemon)"
                .to_owned(),
        )
    })
}

fn parse<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if body.len() > MAX_BODY {
        return Err(AdminError::BadRequest("the request body is too large".to_owned()));
    }
    serde_json::from_slice(body)
        .map_err(|e| AdminError::BadRequest(format!("the request body is not valid: {e}")))
}

fn answer<T: serde::Serialize>(result: Result<T, AdminError>, size: usize) -> Response {
    match result {
        Ok(v) => body::json(StatusCode::OK, &v, size),
        Err(e) => error(&e),
    }
}

async fn start(
    State(state): State<AdminState>,
    Extension(c): Extension<AdminCaller>,
    body: Bytes,
) -> Response {
    let result = async { hooks(&state)?.start_login(c.uid, parse(&body)?).await }.await;
    answer(result, 512)
}

async fn flow(
    State(state): State<AdminState>,
    Extension(c): Extension<AdminCaller>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Response {
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    let result = async { hooks(&state)?.login_flow(c.uid, id, wait).await }.await;
    answer(result, 256)
}

async fn cancel(
    State(state): State<AdminState>,
    Extension(c): Extension<AdminCaller>,
    Path(id): Path<String>,
) -> Response {
    let result = async { hooks(&state)?.cancel_login(c.uid, id).await }.await;
    answer(result, 256)
}

async fn logout(State(state): State<AdminState>, Extension(c): Extension<AdminCaller>) -> Response {
    let result = async { hooks(&state)?.logout(c.uid).await }.await;
    answer(result.map(|had_state| LogoutAnswer::SignedOut { had_state }), 64)
}

async fn logout_user(State(state): State<AdminState>, Path(user): Path<String>) -> Response {
    // Only full access reaches this route (the peer check admits self-service callers to
    // `/v1/self/` alone).
    let result = async { hooks(&state)?.logout_user(user).await }.await;
    answer(result.map(|had_state| LogoutAnswer::SignedOut { had_state }), 64)
}

async fn tenants(State(state): State<AdminState>, Extension(c): Extension<AdminCaller>) -> Response {
    let result = async { hooks(&state)?.tenants(c.uid).await }.await;
    answer(result.map(|tenants| TenantsAnswer { tenants }), 1024)
}

async fn workspaces(State(state): State<AdminState>, Extension(c): Extension<AdminCaller>) -> Response {
    answer(hooks(&state).and_then(|h| h.workspaces(c.uid)), 512)
}

async fn add_workspace(
    State(state): State<AdminState>,
    Extension(c): Extension<AdminCaller>,
    body: Bytes,
) -> Response {
    let result = async { hooks(&state)?.add_workspace(c.uid, parse(&body)?).await }.await;
    answer(result, 512)
}

async fn remove_workspace(
    State(state): State<AdminState>,
    Extension(c): Extension<AdminCaller>,
    Path(name): Path<String>,
) -> Response {
    let result = async { hooks(&state)?.remove_workspace(c.uid, name).await }.await;
    answer(result.map(|removed| WorkspaceRemoved { removed }), 64)
}
