//! The daemon's user-login wiring: opens the encrypted login store, builds [`UserLogins`] (the
//! upstream crate's flows and refresh-token handling), keeps it in step with config reloads, and
//! connects login events to the engine — a completed sign-in clears the backoff of every cache
//! entry of that login at once, a sign-out drops them (the engine keys entries by login, so no
//! login → profile map is kept here).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use azbroker_core::Engine;
use azbroker_core::admin_api::{LoginState, LoginStatus};
use azbroker_entra::{ArmClient, EntraClient, LoginEvent, LoginStore, StoreKey, UserLogins};
use azbroker_server::redirect::LoopbackRedirect;
use url::Url;

use crate::config::{Config, LoginKind};
use crate::daemon::personal::Personal;
use crate::daemon::sources;
use azbroker_core::personal::is_reserved;

/// The user logins, wired to the engine.
pub struct LoginService {
    pub users: Arc<UserLogins>,
    /// Shared machines: every user's personal login and workspaces.
    pub personal: Arc<Personal>,
    /// Tenant discovery for personal workspaces.
    pub arm: ArmClient,
    /// What generations are built with.
    pub client: EntraClient,
}

impl LoginService {
    /// Opens the store (refusing a foreign, damaged or wrongly keyed one) and starts the service.
    pub fn start(
        config: &Config,
        client: &EntraClient,
        arm_override: Option<&Url>,
        engine: &Engine,
    ) -> Result<Self> {
        let credentials =
            std::env::var_os("CREDENTIALS_DIRECTORY").filter(|v| !v.is_empty()).map(PathBuf::from);
        let key = StoreKey::load_or_create(credentials.as_deref(), &config.server.state_dir)?;
        let store = Arc::new(LoginStore::open(&config.server.state_dir, key)?);
        let arm_url = arm_override.unwrap_or(&config.cloud.arm_endpoint).clone();
        let arm =
            ArmClient::new(arm_url).map_err(anyhow::Error::msg).context("cannot set up the ARM client")?;
        let users = UserLogins::new(client.clone(), store, arm.clone(), Arc::new(LoopbackRedirect));
        let personal = Arc::new(Personal::load(&config.server.state_dir)?);
        {
            let engine = engine.clone();
            users.on_event(move |login, event| match event {
                LoginEvent::SignedIn => engine.reset_backoff(login),
                LoginEvent::SignedOut => engine.forget(Some(login)),
            });
        }
        let service = Self { users, personal, arm, client: client.clone() };
        service.apply(config);
        Ok(service)
    }

    /// Takes a (re)loaded config's user logins.
    pub fn apply(&self, config: &Config) {
        let mut logins = sources::user_logins(config);
        if config.server.self_service.enabled {
            logins.extend(self.personal.user_logins());
        }
        self.users.set_logins(logins);
    }

    /// Every login's state for `status`: user logins from the store, the others as configured.
    pub fn statuses(&self, config: &Config) -> Vec<LoginStatus> {
        let mut users: HashMap<String, LoginStatus> =
            self.users.statuses().into_iter().map(|s| (s.name.clone(), s)).collect();
        let mut out: Vec<LoginStatus> = config
            .logins
            .values()
            .map(|l| match (&l.kind, users.remove(l.name.as_str())) {
                (LoginKind::User { .. }, Some(status)) => status,
                _ => LoginStatus {
                    name: l.name.to_string(),
                    kind: l.kind.as_str().into(),
                    tenant: l.tenant.to_string(),
                    state: LoginState::Configured,
                    account: None,
                    reason: None,
                    command: None,
                    tenants_needing_sign_in: vec![],
                    last_error: None,
                },
            })
            .collect();
        // Personal logins of a shared machine (an administrator sees them all).
        let mut personal: Vec<LoginStatus> = users.into_values().filter(|s| is_reserved(&s.name)).collect();
        personal.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(personal);
        out
    }
}
