//! The binary's side of the admin API ([`AdminHooks`]): reloads are handed to the serving loop,
//! rotation, login flows and the extra `status` fields are answered from the config of the
//! runtime in force (read at each call; no copy is kept here), the login service and the engine.
//!
//! Never a secret in what it returns, except the runtime secrets the server crate itself serves.

use std::sync::Arc;
use std::time::Duration;

use azbroker_core::BoxFuture;
use azbroker_core::admin_api::{
    AdminError, DaemonStatus, FlowStart, FlowStatus, KeyCreate, KeyCreated, KeyInfo, LoginRequest,
    ReloadOutcome, ReloadRejected, RotateOutcome, StopAnswer, TenantInfo,
};
use azbroker_server::AppState;
use azbroker_server::admin::{AdminHooks, SelfServiceHooks};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{runtime, secrets};
use crate::daemon::keys::KeyStore;
use crate::daemon::logins::LoginService;
use crate::daemon::profile_listeners::ProfileListeners;
use crate::daemon::serve::ReloadRequest;
use crate::daemon::status_info;

/// The binary's side of the admin API: reloads go to the signal loop (one place applies
/// configs), status is computed from the runtime in force and the engine at each call.
pub(crate) struct ServeHooks {
    pub(crate) reload_tx: mpsc::Sender<ReloadRequest>,
    /// Sockets and exports: fixed at start (the per-profile listeners are added at each call).
    pub(crate) fixed: status_info::Fixed,
    pub(crate) app: AppState,
    pub(crate) logins: Arc<LoginService>,
    /// The listeners of profiles without `listen` of their own (opened again by each reload).
    pub(crate) profile_listeners: Arc<ProfileListeners>,
    /// Client keys: the state file, and the listeners `key create` prints.
    pub(crate) keys: Arc<KeyStore>,
    /// Fired by `POST /v1/stop` (`azbroker stop`); the signal loop then stops as on SIGTERM.
    pub(crate) stop: CancellationToken,
}

impl AdminHooks for ServeHooks {
    fn reload(&self) -> BoxFuture<'static, Result<ReloadOutcome, ReloadRejected>> {
        let tx = self.reload_tx.clone();
        Box::pin(async move {
            let shutting_down = || vec!["the daemon is shutting down".to_owned()];
            let (done, outcome) = oneshot::channel();
            let outcome = match tx.send(done).await {
                Ok(()) => outcome.await.unwrap_or_else(|_| Err(shutting_down())),
                Err(_) => Err(shutting_down()),
            };
            outcome.map_err(|problems| ReloadRejected { problems })
        })
    }

    fn rotate_secrets(&self) -> BoxFuture<'static, Result<RotateOutcome, AdminError>> {
        let config = runtime::config(&self.app);
        let app = self.app.clone();
        Box::pin(async move {
            let grace = config.server.hardening.rotate_grace;
            tokio::task::spawn_blocking(move || secrets::rotate(&config, &app, grace))
                .await
                .map_err(|e| AdminError::RotateFailed(format!("rotation failed: {e}")))?
                .map_err(|e| AdminError::RotateFailed(format!("{e:#}")))
        })
    }

    fn stop(&self) -> Result<StopAnswer, AdminError> {
        tracing::info!("stop asked for on the admin socket");
        self.stop.cancel();
        Ok(StopAnswer { pid: std::process::id() })
    }

    fn status(&self) -> DaemonStatus {
        let (config_file, logins, profile_logins) = {
            let config = runtime::config(&self.app);
            let rt = self.app.runtime();
            let personal = rt.directory().personal();
            let profile_logins: Vec<(String, String)> = config
                .profiles
                .values()
                .map(|p| (p.name.to_string(), p.login.to_string()))
                .chain(personal.profile_names().filter_map(|p| {
                    let owner = personal.owner(p)?;
                    Some((p.to_string(), azbroker_core::personal::profile_name(owner, None).to_string()))
                }))
                .collect();
            let config_file = config.origin.as_ref().map(|p| p.display().to_string());
            (config_file, self.logins.statuses(&config), profile_logins)
        };
        let metrics = self.app.engine().metrics();
        DaemonStatus {
            config: config_file,
            logins: status_info::logins_health(logins, &profile_logins, &metrics),
            upstream: status_info::upstream(&metrics),
            sockets: self.fixed.sockets.iter().cloned().chain(self.profile_listeners.sockets()).collect(),
            exports: self.fixed.exports.clone(),
            started_by: Some(self.fixed.started_by),
            authority_host: Some(self.fixed.authority_host.clone()),
            arm_endpoint: Some(self.fixed.arm_endpoint.clone()),
        }
    }

    fn start_login(
        &self,
        login: String,
        request: LoginRequest,
    ) -> BoxFuture<'static, Result<FlowStart, AdminError>> {
        let users = self.logins.users.clone();
        Box::pin(async move { users.start_flow(&login, request).await })
    }

    fn login_flow(
        &self,
        login: String,
        id: String,
        wait: Duration,
    ) -> BoxFuture<'static, Result<FlowStatus, AdminError>> {
        let users = self.logins.users.clone();
        Box::pin(async move { users.flow_status(&login, &id, wait).await })
    }

    fn cancel_login(&self, login: String, id: String) -> BoxFuture<'static, Result<FlowStatus, AdminError>> {
        let users = self.logins.users.clone();
        Box::pin(async move { users.cancel_flow(&login, &id).await })
    }

    fn logout(&self, login: String) -> BoxFuture<'static, Result<bool, AdminError>> {
        let users = self.logins.users.clone();
        Box::pin(async move { users.logout(&login).await })
    }

    fn create_key(&self, request: KeyCreate) -> BoxFuture<'static, Result<KeyCreated, AdminError>> {
        let keys = self.keys.clone();
        Box::pin(async move { blocking(move || keys.create(request)).await })
    }

    fn revoke_key(&self, name: String) -> BoxFuture<'static, Result<KeyInfo, AdminError>> {
        let keys = self.keys.clone();
        Box::pin(async move { blocking(move || keys.revoke(&name)).await })
    }

    fn tenants(&self, login: String) -> BoxFuture<'static, Result<Vec<TenantInfo>, AdminError>> {
        let users = self.logins.users.clone();
        Box::pin(async move { users.tenants(&login).await })
    }

    fn self_service(&self) -> Option<&dyn SelfServiceHooks> {
        runtime::config(&self.app).server.self_service.enabled.then_some(self as &dyn SelfServiceHooks)
    }
}

/// Runs a key-file change off the runtime threads (it writes and fsyncs).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AdminError::Unavailable(format!("the key change did not finish: {e}")))?
}
