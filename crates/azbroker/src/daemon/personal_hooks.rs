//! The binary's side of self-service ([`SelfServiceHooks`]): a local user's personal sign-in,
//! sign-out, tenants and workspaces, each acting for the caller's uid only (the server crate
//! takes it from `SO_PEERCRED`). Every change to what a request may get is followed by building
//! the next generation from the config in force plus the personal state, published whole
//! ([`republish`]).

use std::time::Duration;

use azbroker_core::BoxFuture;
use azbroker_core::admin_api::{
    AdminError, DaemonStatus, FlowStart, FlowState, FlowStatus, LoginRequest, PersonalWorkspace, TenantInfo,
    WorkspaceRequest,
};
use azbroker_core::personal::is_reserved;
use azbroker_core::{ProfileName, TenantId};
use azbroker_server::AppState;
use azbroker_server::admin::SelfServiceHooks;

use super::admin_hooks::ServeHooks;
use super::logins::LoginService;
use super::personal::{Entry, Personal, Workspace, uid_of, unix_name};
use super::profile_listeners::ProfileListeners;
use super::{runtime, status_info};
use crate::paths;

/// Builds the next generation from the config in force and the personal state and publishes it,
/// then opens the listeners of new personal profiles and closes those of profiles gone.
pub(crate) fn republish(
    app: &AppState,
    logins: &LoginService,
    listeners: &ProfileListeners,
) -> Result<(), AdminError> {
    let _order = logins.personal.publish_lock();
    let config = runtime::config(app);
    let mut generation = runtime::build(config.clone(), &logins.client, &logins.users)
        .map_err(|problems| AdminError::Unavailable(problems.join("; ")))?;
    logins.personal.extend(&mut generation.spec, &config, &logins.users);
    app.publish(generation.spec).map_err(|e| AdminError::Unavailable(e.to_string()))?;
    if let Err(e) = listeners.apply(&config) {
        tracing::error!(error = %format!("{e:#}"), "cannot open the personal profiles' listeners");
    }
    Ok(())
}

/// How often the personal logins of deleted Unix users are looked for.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Publishes personal logins signed in but not yet in the runtime, and forgets the personal
/// login (refresh token, cached tokens, workspaces) of every user whose Unix account is gone or
/// now has another name, then publishes. Generations already leave such
/// users out; this also empties the store and the state file of them.
pub(crate) async fn sweep_deleted_users(app: &AppState, logins: &LoginService, listeners: &ProfileListeners) {
    // A sign-in completed while nobody watched its flow (the CLI was killed at the last moment)
    // is published here at the latest.
    let rt = app.runtime();
    let unpublished = logins.personal.uids().into_iter().any(|uid| {
        let signed_in = logins
            .users
            .store()
            .get(Personal::login_name(uid).as_str())
            .is_some_and(|s| s.refresh_token.is_some());
        signed_in && rt.directory().personal().default_of(Some(uid)).is_none()
    });
    drop(rt);
    if unpublished && let Err(e) = republish(app, logins, listeners) {
        tracing::error!(error = %e, "cannot publish the personal profiles");
    }
    for uid in logins.personal.uids() {
        let Some(entry) = logins.personal.entry(uid) else { continue };
        if unix_name(uid).as_deref() == Some(entry.name.as_str()) {
            continue;
        }
        let _ = logins.users.logout(Personal::login_name(uid).as_str()).await;
        if let Err(e) = logins.personal.update(uid, |e| *e = None) {
            tracing::error!(uid, error = %format!("{e:#}"), "cannot save the personal state");
            continue;
        }
        tracing::info!(uid, user = %entry.name, "the Unix user is gone: their personal login is forgotten");
        logins.apply(&runtime::config(app));
        if let Err(e) = republish(app, logins, listeners) {
            tracing::error!(error = %e, "cannot publish the runtime without a deleted user");
        }
    }
}

fn saved(result: anyhow::Result<()>) -> Result<(), AdminError> {
    result.map_err(|e| AdminError::Unavailable(format!("cannot save the personal state: {e:#}")))
}

fn not_signed_in() -> AdminError {
    AdminError::NotFound("you have no personal login on this daemon yet; run `azbroker login`".to_owned())
}

impl ServeHooks {
    /// The caller's Unix user name, refusing uids that keep the configured profiles.
    fn personal_user(&self, uid: u32) -> Result<String, AdminError> {
        if uid == 0 || uid == paths::current_uid() {
            return Err(AdminError::Forbidden(
                "root and the daemon's own user use the configured logins (`azbroker login --login NAME`), \
                 not a personal one"
                    .to_owned(),
            ));
        }
        unix_name(uid)
            .ok_or_else(|| AdminError::Forbidden(format!("uid {uid} has no user account on this system")))
    }

    /// Forgets `uid`'s personal login (refresh token, cached tokens, entry) and publishes.
    fn sign_out(&self, uid: u32) -> BoxFuture<'static, Result<bool, AdminError>> {
        let (app, logins, listeners) =
            (self.app.clone(), self.logins.clone(), self.profile_listeners.clone());
        Box::pin(async move {
            let login = Personal::login_name(uid);
            let known = logins.personal.entry(uid).is_some();
            let had_token = if known { logins.users.logout(login.as_str()).await? } else { false };
            saved(logins.personal.update(uid, |e| *e = None))?;
            logins.apply(&runtime::config(&app));
            republish(&app, &logins, &listeners)?;
            tracing::info!(uid, had_token, "personal login signed out");
            Ok(known || had_token)
        })
    }
}

impl SelfServiceHooks for ServeHooks {
    fn start_login(
        &self,
        uid: u32,
        request: LoginRequest,
    ) -> BoxFuture<'static, Result<FlowStart, AdminError>> {
        let checked = (|| {
            let name = self.personal_user(uid)?;
            let config = runtime::config(&self.app);
            if !self.logins.personal.allow_sign_in(uid, config.server.self_service.sign_ins_per_hour) {
                return Err(AdminError::TooManyFlows(
                    "too many sign-ins started this hour (self_service_sign_ins_per_hour); try again later"
                        .into(),
                ));
            }
            if let Some(t) = &request.tenant {
                TenantId::parse(t).map_err(|e| AdminError::BadRequest(format!("tenant '{t}': {e}")))?;
            }
            // A uid now owned by another user name starts from nothing.
            let stale = self.logins.personal.entry(uid).is_some_and(|e| e.name != name);
            Ok((name, config, stale))
        })();
        let logins = self.logins.clone();
        let sign_out = checked.as_ref().ok().filter(|c| c.2).map(|_| self.sign_out(uid));
        Box::pin(async move {
            let (name, config, _) = checked?;
            if let Some(sign_out) = sign_out {
                sign_out.await?;
            }
            let tenant = request.tenant.clone();
            saved(logins.personal.update(uid, |e| {
                let entry =
                    e.get_or_insert_with(|| Entry { name, tenant: None, workspaces: Default::default() });
                if tenant.is_some() {
                    entry.tenant = tenant;
                }
            }))?;
            logins.apply(&config);
            logins.users.start_flow(Personal::login_name(uid).as_str(), request).await
        })
    }

    fn login_flow(
        &self,
        uid: u32,
        id: String,
        wait: Duration,
    ) -> BoxFuture<'static, Result<FlowStatus, AdminError>> {
        let (app, logins, listeners) =
            (self.app.clone(), self.logins.clone(), self.profile_listeners.clone());
        Box::pin(async move {
            let status = logins.users.flow_status(Personal::login_name(uid).as_str(), &id, wait).await?;
            if status.state == FlowState::SignedIn {
                // The profile exists from the generation published now on.
                republish(&app, &logins, &listeners)?;
            }
            Ok(status)
        })
    }

    fn cancel_login(&self, uid: u32, id: String) -> BoxFuture<'static, Result<FlowStatus, AdminError>> {
        let users = self.logins.users.clone();
        Box::pin(async move { users.cancel_flow(Personal::login_name(uid).as_str(), &id).await })
    }

    fn logout(&self, uid: u32) -> BoxFuture<'static, Result<bool, AdminError>> {
        self.sign_out(uid)
    }

    fn logout_user(&self, user: String) -> BoxFuture<'static, Result<bool, AdminError>> {
        match uid_of(&user) {
            Some(uid) => self.sign_out(uid),
            None => {
                Box::pin(async move { Err(AdminError::NotFound(format!("no user '{user}' on this system"))) })
            }
        }
    }

    fn tenants(&self, uid: u32) -> BoxFuture<'static, Result<Vec<TenantInfo>, AdminError>> {
        let logins = self.logins.clone();
        Box::pin(async move {
            logins.personal.entry(uid).ok_or_else(not_signed_in)?;
            logins.users.tenants(Personal::login_name(uid).as_str()).await
        })
    }

    fn workspaces(&self, uid: u32) -> Result<Vec<PersonalWorkspace>, AdminError> {
        let entry = self.logins.personal.entry(uid).ok_or_else(not_signed_in)?;
        Ok(entry.workspaces.into_iter().map(|(name, w)| shown(name, w)).collect())
    }

    fn add_workspace(
        &self,
        uid: u32,
        request: WorkspaceRequest,
    ) -> BoxFuture<'static, Result<PersonalWorkspace, AdminError>> {
        let (app, logins, listeners) =
            (self.app.clone(), self.logins.clone(), self.profile_listeners.clone());
        let max = runtime::config(&self.app).server.self_service.max_workspaces;
        Box::pin(async move {
            let entry = logins.personal.entry(uid).ok_or_else(not_signed_in)?;
            let name = request.name.to_ascii_lowercase();
            if ProfileName::parse(&name).is_err() || is_reserved(&name) || name.contains('.') {
                return Err(AdminError::BadRequest(format!(
                    "'{}' cannot name a workspace: use letters, digits, '-' and '_'",
                    request.name
                )));
            }
            if name == entry.name.to_ascii_lowercase() {
                return Err(AdminError::BadRequest(format!("'{name}' is your personal profile's name")));
            }
            if !entry.workspaces.contains_key(&name) && entry.workspaces.len() >= max {
                return Err(AdminError::TooManyFlows(format!(
                    "you have {max} personal workspaces already (self_service_max_workspaces); remove one first"
                )));
            }
            let subscription = crate::config::workspaces::subscription_id(&request.subscription_id)
                .map_err(|e| AdminError::BadRequest(format!("'{}': {e}", request.subscription_id)))?;
            let tenant = match &request.tenant {
                Some(t) => {
                    TenantId::parse(t).map_err(|e| AdminError::BadRequest(format!("tenant '{t}': {e}")))?
                }
                None => {
                    let found =
                        logins.arm.discover_tenant(&subscription).await.map_err(AdminError::Upstream)?;
                    TenantId::parse(&found)
                        .map_err(|e| AdminError::BadRequest(format!("tenant '{found}': {e}")))?
                }
            };
            let workspace = Workspace {
                subscription_id: subscription,
                resource_group: request.resource_group,
                workspace_name: request.workspace_name,
                tenant: tenant.to_string(),
            };
            let added = workspace.clone();
            let key = name.clone();
            saved(logins.personal.update(uid, move |e| {
                if let Some(e) = e {
                    e.workspaces.insert(key, added);
                }
            }))?;
            republish(&app, &logins, &listeners)?;
            Ok(shown(name, workspace))
        })
    }

    fn remove_workspace(&self, uid: u32, name: String) -> BoxFuture<'static, Result<bool, AdminError>> {
        let (app, logins, listeners) =
            (self.app.clone(), self.logins.clone(), self.profile_listeners.clone());
        Box::pin(async move {
            let key = name.to_ascii_lowercase();
            let removed = logins
                .personal
                .update(uid, |e| e.as_mut().is_some_and(|e| e.workspaces.remove(&key).is_some()))
                .map_err(|e| AdminError::Unavailable(format!("cannot save the personal state: {e:#}")))?;
            republish(&app, &logins, &listeners)?;
            Ok(removed)
        })
    }

    fn status(&self, uid: u32) -> DaemonStatus {
        let login = Personal::login_name(uid);
        let name = self.logins.personal.entry(uid).map(|e| e.name);
        let rt = self.app.runtime();
        let mine = rt.directory().personal().of(uid);
        let logins = self
            .logins
            .users
            .statuses()
            .into_iter()
            .filter(|s| s.name == login.as_str() && name.is_some())
            .map(|mut s| {
                s.name = name.clone().unwrap_or_default();
                s.command = s.command.map(|_| "azbroker login".to_owned());
                s
            })
            .collect();
        let profiles: Vec<(String, String)> =
            mine.iter().map(|(short, _)| (short.clone(), name.clone().unwrap_or_default())).collect();
        let metrics: Vec<_> = self
            .app
            .engine()
            .metrics()
            .into_iter()
            .filter(|m| rt.directory().owner(&m.profile) == Some(uid))
            .collect();
        DaemonStatus {
            config: None,
            logins: status_info::logins_health(logins, &profiles, &[]),
            upstream: status_info::upstream(&metrics),
            sockets: (self.fixed.sockets.iter().cloned())
                .chain(self.profile_listeners.sockets_of(uid, rt.directory().personal()))
                .collect(),
            exports: self.fixed.exports.clone(),
            // Public facts every user needs (`workspace add`, `doctor` ask for the endpoints).
            started_by: Some(self.fixed.started_by),
            authority_host: Some(self.fixed.authority_host.clone()),
            arm_endpoint: Some(self.fixed.arm_endpoint.clone()),
        }
    }
}

fn shown(name: String, w: Workspace) -> PersonalWorkspace {
    PersonalWorkspace {
        name,
        subscription_id: w.subscription_id,
        resource_group: w.resource_group,
        workspace_name: w.workspace_name,
        tenant: w.tenant,
    }
}
