//! The binary's side of the admin API ([`AdminHooks`]): reloads are handed to the serving loop,
//! rotation, login flows and the extra `status` fields are answered from the config in force,
//! the login service and the engine.
//!
//! Never a secret in what it returns, except the runtime secrets the server crate itself serves.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azbroker_core::BoxFuture;
use azbroker_core::login::{AdminError, FlowStart, FlowStatus, LoginRequest, TenantInfo};
use azbroker_server::AppState;
use azbroker_server::admin::{AdminHooks, ReloadOutcome, RotateOutcome};
use tokio::sync::{mpsc, oneshot};

use super::secrets;
use crate::config::Config;
use crate::daemon::logins::LoginService;
use crate::daemon::serve::ReloadRequest;
use crate::daemon::status_info;

/// The binary's side of the admin API: reloads go to the signal loop (one place applies
/// configs), status is computed from the config in force and the engine at each call.
pub(crate) struct ServeHooks {
    pub(crate) reload_tx: mpsc::Sender<ReloadRequest>,
    /// Sockets and exports: fixed at start.
    pub(crate) fixed: serde_json::Map<String, serde_json::Value>,
    pub(crate) app: AppState,
    pub(crate) logins: Arc<LoginService>,
    /// The config in force (where the secrets live, the grace period, the login list of
    /// `status`).
    pub(crate) config: Mutex<Config>,
}

impl ServeHooks {
    pub(crate) fn applied(&self, config: &Config) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = config.clone();
    }
}

impl AdminHooks for ServeHooks {
    fn reload(&self) -> BoxFuture<'static, Result<ReloadOutcome, Vec<String>>> {
        let tx = self.reload_tx.clone();
        Box::pin(async move {
            let (done, outcome) = oneshot::channel();
            if tx.send(done).await.is_err() {
                return Err(vec!["the daemon is shutting down".into()]);
            }
            outcome.await.unwrap_or_else(|_| Err(vec!["the daemon is shutting down".into()]))
        })
    }

    fn rotate_secrets(&self) -> BoxFuture<'static, Result<RotateOutcome, String>> {
        let config = self.config.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let app = self.app.clone();
        Box::pin(async move {
            let grace = config.server.hardening.rotate_grace;
            tokio::task::spawn_blocking(move || secrets::rotate(&config, &app, grace))
                .await
                .map_err(|e| format!("rotation failed: {e}"))?
                .map_err(|e| format!("{e:#}"))
        })
    }

    fn status_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let (mut m, profile_logins) = {
            let config = self.config.lock().unwrap_or_else(PoisonError::into_inner);
            let mut m = status_fields(&config);
            m.insert(
                "logins".into(),
                serde_json::to_value(self.logins.statuses(&config)).unwrap_or_default(),
            );
            let profile_logins: Vec<(String, String)> =
                config.profiles.values().map(|p| (p.name.to_string(), p.login.to_string())).collect();
            (m, profile_logins)
        };
        status_info::add_health(&mut m, &profile_logins, &self.app.engine().metrics());
        m.extend(self.fixed.clone());
        m
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

    fn tenants(&self, login: String) -> BoxFuture<'static, Result<Vec<TenantInfo>, AdminError>> {
        let users = self.logins.users.clone();
        Box::pin(async move { users.tenants(&login).await })
    }
}

/// What `status` shows of the config: where it came from (the logins, with their state, are
/// added at each call; never a secret).
fn status_fields(config: &Config) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if let Some(origin) = &config.origin {
        m.insert("config".into(), origin.display().to_string().into());
    }
    m
}
