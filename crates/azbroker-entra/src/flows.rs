//! Interactive sign-in flows, run by the daemon on behalf of the CLI (which only shows what to
//! do and watches): device code (PROTOCOLS.md §12.2; polls at Entra's interval, slowing down when
//! told) and browser sign-in (authorization code + PKCE S256 with a loopback redirect). Plus the
//! admin operations around them: logout and the tenant list.
//!
//! Each flow runs in its own task and ends on success, failure, expiry, cancellation (Ctrl-C in
//! the CLI sends a cancel), or when nobody has watched it for [`ABANDONED_AFTER`] (the CLI was
//! killed). At most [`MAX_FLOWS`] run at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::digest;
use azbroker_core::admin_api::{AdminError, FlowStart, FlowState, FlowStatus, LoginMethod, LoginRequest};
use azbroker_core::{Secret, TenantId, TenantInfo, UpstreamError};
use base64::Engine as _;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{AuthorizeRequest, DevicePoll};
use crate::user::{UserLogin, UserLogins, random_string};

/// A flow nobody asked about for this long is cancelled.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// Browser sign-ins must finish within this.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);
/// Added to the polling interval on `slow_down` (RFC 8628 §3.5).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
const MAX_FLOWS: usize = 16;
/// Longest a watcher may wait for a change in one admin call.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

struct Flow {
    login: String,
    status: watch::Receiver<FlowStatusInner>,
    cancel: CancellationToken,
    expires: Instant,
    last_seen: Arc<Mutex<Instant>>,
}

#[derive(Debug, Clone)]
struct FlowStatusInner {
    state: FlowState,
    account: Option<String>,
    error: Option<String>,
}

/// The running flows, by id.
#[derive(Default)]
pub(crate) struct Flows {
    flows: Mutex<HashMap<String, Flow>>,
}

impl Flows {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flow>> {
        self.flows.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl UserLogins {
    /// Starts a sign-in for `login`; the flow then runs in the daemon.
    pub async fn start_flow(
        self: &Arc<Self>,
        login: &str,
        request: LoginRequest,
    ) -> Result<FlowStart, AdminError> {
        let config = self.login(login).ok_or_else(|| unknown_login(login))?;
        let tenant = match request.tenant.as_deref() {
            Some(t) => {
                TenantId::parse(t).map_err(|e| AdminError::BadRequest(format!("tenant '{t}': {e}")))?
            }
            None => config.authority_tenant.clone(),
        };
        {
            let mut flows = self.flows.lock();
            flows.retain(|_, f| !f.status.borrow().state.is_final() || f.expires > Instant::now());
            if flows.values().filter(|f| !f.status.borrow().state.is_final()).count() >= MAX_FLOWS {
                return Err(AdminError::TooManyFlows(
                    "too many sign-ins are under way; finish or cancel one".to_owned(),
                ));
            }
        }
        let scope = format!("{}/.default offline_access openid profile", self.arm.resource());
        match request.method {
            LoginMethod::DeviceCode => self.start_device_code(config, tenant, scope).await,
            LoginMethod::Browser => self.start_browser(config, tenant, scope).await,
        }
    }

    async fn start_device_code(
        self: &Arc<Self>,
        login: UserLogin,
        tenant: TenantId,
        scope: String,
    ) -> Result<FlowStart, AdminError> {
        let code =
            self.client.device_code(&tenant, &login.client_id, &scope).await.map_err(AdminError::Upstream)?;
        let expires = Instant::now() + code.expires_in;
        let start = FlowStart {
            flow_id: String::new(),
            method: LoginMethod::DeviceCode,
            tenant: tenant.to_string(),
            message: Some(code.message.clone()),
            user_code: Some(code.user_code.clone()),
            verification_uri: Some(code.verification_uri.clone()),
            authorize_url: None,
            expires_in_secs: code.expires_in.as_secs(),
        };
        let this = self.clone();
        let name = login.name.clone();
        Ok(self.spawn_flow(&name, expires, start, move |cancel, last_seen| async move {
            let mut interval = code.interval;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return done(FlowState::Cancelled, None, None),
                    () = tokio::time::sleep(interval) => {}
                }
                if Instant::now() >= expires {
                    return done(FlowState::Expired, None, Some("the code expired before the sign-in was completed".into()));
                }
                if abandoned(&last_seen) {
                    tracing::info!(login = %login.name, "device-code sign-in abandoned (nobody is watching it)");
                    return done(FlowState::Cancelled, None, Some("abandoned".into()));
                }
                match this.client.poll_device_code(&tenant, &login.client_id, &code.device_code).await {
                    Ok(DevicePoll::Pending) => {}
                    Ok(DevicePoll::SlowDown) => interval += SLOW_DOWN_STEP,
                    Ok(DevicePoll::SignedIn(response)) => return this.finish(&login, Ok(*response)).await,
                    Err(UpstreamError::Refused { error, description, .. }) if error == "expired_token" => {
                        return done(FlowState::Expired, None, Some(description));
                    }
                    // A flaky network does not end the flow; the code stays valid.
                    Err(e @ (UpstreamError::Timeout | UpstreamError::Network(_) | UpstreamError::Unavailable { .. } | UpstreamError::Throttled { .. })) => {
                        tracing::debug!(error = %e, "device-code poll failed; retrying");
                    }
                    Err(e) => return this.finish(&login, Err(e)).await,
                }
            }
        }))
    }

    async fn start_browser(
        self: &Arc<Self>,
        login: UserLogin,
        tenant: TenantId,
        scope: String,
    ) -> Result<FlowStart, AdminError> {
        let redirect = self.redirect.listen().await.map_err(AdminError::RedirectListener)?;
        let verifier = random_string(32);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(digest::digest(&digest::SHA256, verifier.expose().as_bytes()));
        let state = random_string(16);
        let url = self.client.authorize_url(
            &tenant,
            &AuthorizeRequest {
                client_id: &login.client_id,
                redirect_uri: &redirect.redirect_uri,
                scope: &scope,
                state: state.expose(),
                code_challenge: &challenge,
            },
        );
        let expires = Instant::now() + BROWSER_TIMEOUT;
        let start = FlowStart {
            flow_id: String::new(),
            method: LoginMethod::Browser,
            tenant: tenant.to_string(),
            message: Some(format!("Sign in in your browser; if it does not open, open this page: {url}")),
            user_code: None,
            verification_uri: None,
            authorize_url: Some(url.to_string()),
            expires_in_secs: BROWSER_TIMEOUT.as_secs(),
        };
        let this = self.clone();
        let redirect_uri = redirect.redirect_uri;
        let callback = redirect.callback;
        let name = login.name.clone();
        Ok(self.spawn_flow(&name, expires, start, move |cancel, _| async move {
            let params = tokio::select! {
                () = cancel.cancelled() => return done(FlowState::Cancelled, None, None),
                () = tokio::time::sleep_until(expires) => return done(FlowState::Expired, None, Some("the browser sign-in was not completed in time".into())),
                p = callback => p,
            };
            let params = match params {
                Ok(p) => p,
                Err(e) => return done(FlowState::Failed, None, Some(e)),
            };
            if params.get("state").map(String::as_str) != Some(state.expose()) {
                return done(FlowState::Failed, None, Some("the redirect carried a wrong state (not our sign-in); try again".into()));
            }
            if let Some(error) = params.get("error") {
                let why = params.get("error_description").cloned().unwrap_or_default();
                return done(FlowState::Failed, None, Some(format!("{error}: {why}")));
            }
            let Some(code) = params.get("code").map(|c| Secret::new(c.as_str())) else {
                return done(FlowState::Failed, None, Some("the redirect carried no code".into()));
            };
            let result = this.client.authorization_code(&tenant, &login.client_id, &code, &redirect_uri, &verifier, &scope).await;
            this.finish(&login, result).await
        }))
    }

    async fn finish(
        &self,
        login: &UserLogin,
        result: Result<crate::TokenResponse, UpstreamError>,
    ) -> FlowStatusInner {
        match result {
            Ok(response) => match self.complete_sign_in(login, response).await {
                Ok(account) => done(FlowState::SignedIn, Some(account), None),
                Err(e) => done(FlowState::Failed, None, Some(e.to_string())),
            },
            Err(e) => done(FlowState::Failed, None, Some(e.to_string())),
        }
    }

    fn spawn_flow<F, Fut>(&self, login: &str, expires: Instant, mut start: FlowStart, run: F) -> FlowStart
    where
        F: FnOnce(CancellationToken, Arc<Mutex<Instant>>) -> Fut,
        Fut: std::future::Future<Output = FlowStatusInner> + Send + 'static,
    {
        let id = random_string(12).expose().to_owned();
        let (tx, rx) =
            watch::channel(FlowStatusInner { state: FlowState::Pending, account: None, error: None });
        let cancel = CancellationToken::new();
        let last_seen = Arc::new(Mutex::new(Instant::now()));
        let fut = run(cancel.clone(), last_seen.clone());
        tokio::spawn(async move {
            let outcome = fut.await;
            let _ = tx.send(outcome);
        });
        self.flows
            .lock()
            .insert(id.clone(), Flow { login: login.to_owned(), status: rx, cancel, expires, last_seen });
        start.flow_id = id;
        start
    }

    /// A flow's state, waiting up to `wait` for it to leave `pending`.
    pub async fn flow_status(&self, login: &str, id: &str, wait: Duration) -> Result<FlowStatus, AdminError> {
        let (mut rx, expires) = {
            let flows = self.flows.lock();
            let flow = flows.get(id).filter(|f| f.login == login).ok_or_else(|| unknown_flow(id))?;
            *flow.last_seen.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
            (flow.status.clone(), flow.expires)
        };
        let _ = tokio::time::timeout(wait.min(MAX_WAIT), rx.wait_for(|s| s.state.is_final())).await;
        let s = rx.borrow().clone();
        Ok(FlowStatus {
            state: s.state,
            expires_in_secs: expires.saturating_duration_since(Instant::now()).as_secs(),
            account: s.account,
            error: s.error,
        })
    }

    /// Cancels a flow (Ctrl-C in the CLI); its final state follows.
    pub async fn cancel_flow(&self, login: &str, id: &str) -> Result<FlowStatus, AdminError> {
        {
            let flows = self.flows.lock();
            let flow = flows.get(id).filter(|f| f.login == login).ok_or_else(|| unknown_flow(id))?;
            flow.cancel.cancel();
        }
        tracing::info!(login, "sign-in cancelled");
        self.flow_status(login, id, Duration::from_secs(2)).await
    }

    /// Forgets the login's refresh token and state and cancels its flows.
    pub async fn logout(&self, login: &str) -> Result<bool, AdminError> {
        if self.login(login).is_none() {
            return Err(unknown_login(login));
        }
        for flow in self.flows.lock().values().filter(|f| f.login == login) {
            flow.cancel.cancel();
        }
        let removed = self.sign_out(login).await.map_err(AdminError::Upstream)?;
        tracing::info!(login, had_state = removed, "signed out");
        Ok(removed)
    }

    /// The tenants the login's user can reach (ARM `GET /tenants`, with a token from the
    /// login's authority).
    pub async fn tenants(&self, login: &str) -> Result<Vec<TenantInfo>, AdminError> {
        let config = self.login(login).ok_or_else(|| unknown_login(login))?;
        let scope = format!("{}/.default offline_access", self.arm.resource());
        let response =
            self.redeem(login, &config.authority_tenant, &scope).await.map_err(AdminError::Upstream)?;
        self.arm.tenants(&response.access_token).await.map_err(AdminError::Upstream)
    }
}

fn done(state: FlowState, account: Option<String>, error: Option<String>) -> FlowStatusInner {
    FlowStatusInner { state, account, error }
}

fn abandoned(last_seen: &Mutex<Instant>) -> bool {
    last_seen.lock().unwrap_or_else(PoisonError::into_inner).elapsed() > ABANDONED_AFTER
}

fn unknown_login(login: &str) -> AdminError {
    AdminError::NotFound(format!("'{login}' is not a configured user login (kind = \"user\")"))
}

fn unknown_flow(id: &str) -> AdminError {
    AdminError::NotFound(format!("no sign-in with id '{id}' is under way"))
}
