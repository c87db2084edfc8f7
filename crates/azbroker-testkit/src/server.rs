//! The [`FakeEntra`] handle: starting the server on the caller's runtime, configuring it while
//! it runs, reading its counters, and shutting it down (explicitly or when the last handle is
//! dropped). The server task never holds a handle, so dropping the handles always stops it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// Which connections are served; default all. A refused connection is closed unanswered.
    pub admit: Option<PeerFilter>,
}

/// Decides from a connection's (local, peer) addresses whether it is served. Runs on the
/// blocking pool (it may ask the kernel who owns the peer socket).
#[derive(Clone)]
pub struct PeerFilter(pub Arc<dyn Fn(SocketAddr, SocketAddr) -> bool + Send + Sync>);

impl std::fmt::Debug for PeerFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerFilter")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            permissive: false,
            token_lifetime: Duration::from_secs(3599),
            admit: None,
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
            let serve = axum::serve(BoundedListener::new(listener, MAX_CONNECTIONS, opts.admit), app)
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

    /// Adds (or replaces) a user who can reach `tenants` (domains or GUIDs; the first is the home
    /// tenant). Delegated tokens for them carry `upn`, `oid` (one per tenant) and `tid`.
    pub fn add_user(&self, username: &str, tenants: &[&str]) {
        self.inner.state.users().add(username, tenants);
    }

    /// Makes `subscription_id` live in `tenant`, so the unauthenticated ARM challenge names it
    /// (tests, and the daemon's `--local-authority` demo subscription).
    pub fn register_subscription(&self, subscription_id: &str, tenant: &str) {
        self.inner.state.register_subscription(subscription_id, tenant);
    }

    /// Approves every device code as `username` at its first poll (`None`: wait for
    /// [`Self::approve_device_code`]).
    pub fn auto_approve_device_codes(&self, username: Option<&str>) {
        self.inner.state.users().auto_approve = username.map(str::to_owned);
    }

    /// The user the authorization endpoint signs in without asking (`None`: it answers
    /// `error=access_denied`, as when the user cancels).
    pub fn set_browser_user(&self, username: Option<&str>) {
        self.inner.state.users().browser_user = username.map(str::to_owned);
    }

    /// The ARM endpoint this server also plays (`GET /subscriptions/{id}`, `GET /tenants`): the
    /// same URL as [`Self::url`].
    pub fn arm_url(&self) -> String {
        self.url()
    }

    #[cfg(feature = "testing")]
    pub(crate) fn state(&self) -> &State {
        &self.inner.state
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
