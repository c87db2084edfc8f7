//! The [`FakeEntra`] handle: starting the server on the caller's runtime, configuring it while
//! it runs, reading its counters, and shutting it down (explicitly or when the last handle is
//! dropped). The server task never holds a handle, so dropping the handles always stops it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fault::Fault;
use crate::keys::SigningKey;
use crate::listener::BoundedListener;
use crate::routes;
use crate::state::State;

/// Connections served at once; further clients wait in the kernel's accept backlog.
const MAX_CONNECTIONS: usize = 1024;
/// After shutdown, how long open connections may take to finish before the task gives up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How to start a [`FakeEntra`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen; default `127.0.0.1:0` (a free loopback port).
    pub bind: SocketAddr,
    /// Accept any client id and any secret or assertion; default `false`.
    pub permissive: bool,
    /// Lifetime of issued tokens (`expires_in`, `exp - iat`); default 3599 s.
    pub token_lifetime: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            permissive: false,
            token_lifetime: Duration::from_secs(3599),
        }
    }
}

/// A running fake Entra ID authority. Cloning is cheap; the server stops on [`FakeEntra::shutdown`]
/// or when the last clone is dropped.
#[derive(Clone)]
pub struct FakeEntra {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<State>,
    addr: SocketAddr,
    tracker: TaskTracker,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.state.cancel.cancel();
    }
}

impl std::fmt::Debug for FakeEntra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeEntra").field("url", &self.inner.state.authority).finish_non_exhaustive()
    }
}

impl FakeEntra {
    /// Starts a server with [`Options::default`].
    pub async fn start() -> std::io::Result<FakeEntra> {
        Self::start_with(Options::default()).await
    }

    /// Binds `opts.bind`, generates the signing key and spawns the server on the current tokio
    /// runtime. Returns once the socket is listening.
    pub async fn start_with(opts: Options) -> std::io::Result<FakeEntra> {
        let listener = TcpListener::bind(opts.bind).await?;
        let addr = listener.local_addr()?;
        let key =
            tokio::task::spawn_blocking(SigningKey::generate).await.map_err(std::io::Error::other)??;
        let cancel = CancellationToken::new();
        let authority = format!("http://{addr}");
        let state =
            Arc::new(State::new(authority, key, cancel.clone(), opts.permissive, opts.token_lifetime));
        let app = routes::router(Arc::clone(&state));
        let tracker = TaskTracker::new();
        tracker.spawn(async move {
            let serve = axum::serve(BoundedListener::new(listener, MAX_CONNECTIONS), app)
                .with_graceful_shutdown(cancel.clone().cancelled_owned());
            let grace_expired = async {
                cancel.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            };
            tokio::select! {
                result = serve => match result {
                    Ok(()) => tracing::debug!(%addr, "fake Entra stopped"),
                    Err(err) => tracing::debug!(%addr, %err, "fake Entra server failed"),
                },
                () = grace_expired => tracing::debug!(%addr, "fake Entra stopped with connections still open"),
            }
        });
        tracker.close();
        tracing::debug!(%addr, "fake Entra listening");
        Ok(FakeEntra { inner: Arc::new(Inner { state, addr, tracker }) })
    }

    /// The authority host, e.g. `http://127.0.0.1:43121` (no trailing slash).
    pub fn url(&self) -> String {
        self.inner.state.authority.clone()
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Registers (or replaces) a confidential client and its secret.
    pub fn register_app(&self, client_id: &str, client_secret: &str) {
        self.inner.state.register_app(client_id, client_secret);
    }

    /// Accept any client id and credential (`true`) or only registered apps (`false`).
    pub fn set_permissive(&self, on: bool) {
        self.inner.state.set_permissive(on);
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.inner.state.set_token_lifetime(lifetime);
    }

    /// Token requests for this tenant (by domain or by its [`crate::tenant_guid`]) get 400
    /// `invalid_request` AADSTS90002 "Tenant '...' not found".
    pub fn deny_tenant(&self, tenant: &str) {
        self.inner.state.deny_tenant(tenant);
    }

    /// Token requests for this resource get 400 `invalid_resource` AADSTS500011. Resources
    /// compare case-insensitively, ignoring trailing slashes.
    pub fn deny_resource(&self, resource: &str) {
        self.inner.state.deny_resource(resource);
    }

    /// Queues `fault` for the next `times` token requests (`None`: until [`Self::clear_faults`]).
    /// Queued faults apply in FIFO order; `Some(0)` queues nothing.
    pub fn inject(&self, fault: Fault, times: Option<u32>) {
        self.inner.state.inject(fault, times);
    }

    /// Removes every queued fault.
    pub fn clear_faults(&self) {
        self.inner.state.clear_faults();
    }

    /// Requests to any tenant's token endpoint, whatever their outcome.
    pub fn token_requests(&self) -> u64 {
        self.inner.state.token_requests()
    }

    /// POSTed token requests with this tenant (as written in the URL path), `grant_type` and
    /// `scope` (as sent; `""` when absent).
    pub fn requests_for(&self, tenant: &str, grant_type: &str, scope: &str) -> u64 {
        self.inner.state.requests_for(tenant, grant_type, scope)
    }

    /// Access tokens issued so far.
    pub fn issued_tokens(&self) -> u64 {
        self.inner.state.issued_tokens()
    }

    /// Verifies `jwt`'s RS256 signature against this server's published key and its `exp`
    /// (and `nbf`, with 5 minutes' skew); returns its claims.
    pub fn verify(&self, jwt: &str) -> Result<serde_json::Value, String> {
        self.inner.state.key.verify(jwt)
    }

    /// The `kid` of the signing key, as in the JWKS and token headers.
    pub fn key_id(&self) -> String {
        self.inner.state.key.kid().to_owned()
    }

    // ---- users and delegated flows ----

    /// Adds (or replaces) a user who can reach `tenants` (domains or GUIDs; the first is the home
    /// tenant). Delegated tokens for them carry `upn`, `oid` (one per tenant) and `tid`.
    pub fn add_user(&self, username: &str, tenants: &[&str]) {
        self.inner.state.users().add(username, tenants);
    }

    /// The user codes of device-code flows waiting for the user, oldest first in no particular
    /// order.
    pub fn pending_user_codes(&self) -> Vec<String> {
        self.inner.state.users().pending_user_codes()
    }

    /// Completes the sign-in of a pending device code as `username`; false if no such code is
    /// pending.
    pub fn approve_device_code(&self, user_code: &str, username: &str) -> bool {
        self.inner
            .state
            .users()
            .set_user_code_state(user_code, crate::users::DeviceState::Approved(username.to_owned()))
    }

    /// The user refuses the sign-in: the next poll answers `authorization_declined`.
    pub fn decline_device_code(&self, user_code: &str) -> bool {
        self.inner.state.users().set_user_code_state(user_code, crate::users::DeviceState::Declined)
    }

    /// Approves every device code as `username` at its first poll (`None`: wait for
    /// [`Self::approve_device_code`]).
    pub fn auto_approve_device_codes(&self, username: Option<&str>) {
        self.inner.state.users().auto_approve = username.map(str::to_owned);
    }

    /// `interval` and `expires_in` of device codes issued from now on (Entra: 5 s and 15 min).
    pub fn set_device_code_timing(&self, interval: Duration, lifetime: Duration) {
        let mut users = self.inner.state.users();
        users.device_interval = Some(interval);
        users.device_lifetime = Some(lifetime);
    }

    /// The user the authorization endpoint signs in without asking (`None`: it answers
    /// `error=access_denied`, as when the user cancels).
    pub fn set_browser_user(&self, username: Option<&str>) {
        self.inner.state.users().browser_user = username.map(str::to_owned);
    }

    /// Refresh-token redemption in `tenant` fails like MFA (50076), conditional access (53003) or
    /// `interaction_required` (any other code) unless the token chain began with an interactive
    /// sign-in at that tenant.
    pub fn require_interaction(&self, tenant: &str, aadsts: u32) {
        self.inner.state.users().require_interaction(crate::tenant_guid(tenant), aadsts);
    }

    pub fn clear_interaction(&self, tenant: &str) {
        self.inner.state.users().clear_interaction(&crate::tenant_guid(tenant));
    }

    /// Revokes every refresh token issued to `username` (password reset, admin revocation);
    /// returns how many were live.
    pub fn revoke_refresh_tokens(&self, username: &str) -> usize {
        self.inner.state.users().revoke_user(username)
    }

    /// When on, a refresh token stops working once it has been redeemed (so a client that does
    /// not keep the rotated one breaks). Entra itself keeps old ones valid.
    pub fn set_rotation_revokes_old(&self, on: bool) {
        self.inner.state.users().rotation_revokes_old = on;
    }

    /// Every refresh token issued so far.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.inner.state.users().issued_refresh_tokens()
    }

    // ---- other client credentials ----

    /// Lets `client_id` authenticate with assertions signed by this certificate (DER).
    pub fn register_app_certificate(&self, client_id: &str, cert_der: &[u8]) {
        self.inner.state.register_certificate(client_id, cert_der.to_vec());
    }

    /// Lets `client_id` authenticate with federated assertions from [`Self::issue_federated_token`]
    /// carrying this `subject`.
    pub fn register_federated_credential(&self, client_id: &str, subject: &str) {
        let issuer = self.federation_issuer();
        self.inner.state.register_federated(client_id, &issuer, subject);
    }

    /// A federated identity token (as a Kubernetes service account token would be) for `subject`,
    /// signed by this authority, valid for `lifetime`.
    pub fn issue_federated_token(&self, subject: &str, lifetime: Duration) -> Result<String, String> {
        let now = crate::time::unix_now();
        let claims = serde_json::json!({
            "aud": "api://AzureADTokenExchange",
            "iss": self.federation_issuer(),
            "sub": subject,
            "iat": now, "nbf": now, "exp": now + lifetime.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        self.inner.state.key.sign(&claims)
    }

    fn federation_issuer(&self) -> String {
        format!("{}/federation", self.inner.state.authority)
    }

    // ---- ARM ----

    /// The ARM endpoint this server also plays (`GET /subscriptions/{id}`, `GET /tenants`): the
    /// same URL as [`Self::url`].
    pub fn arm_url(&self) -> String {
        self.url()
    }

    /// Makes `subscription_id` live in `tenant`, so the unauthenticated ARM challenge names it.
    pub fn register_subscription(&self, subscription_id: &str, tenant: &str) {
        self.inner.state.register_subscription(subscription_id, tenant);
    }

    /// Stops accepting connections and ends the server; idempotent.
    pub fn shutdown(&self) {
        self.inner.state.cancel.cancel();
    }

    /// Resolves once the server task has ended (after [`Self::shutdown`]).
    pub async fn stopped(&self) {
        self.inner.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_is_send_sync_and_defaults_are_as_documented() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<FakeEntra>();
        let opts = Options::default();
        assert_eq!(opts.bind, "127.0.0.1:0".parse().unwrap());
        assert!(!opts.permissive);
        assert_eq!(opts.token_lifetime, Duration::from_secs(3599));
    }
}
