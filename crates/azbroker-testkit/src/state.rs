//! The fake authority's shared state: configuration (registered apps, deny-lists, lifetime,
//! permissive mode), the fault queue, the signing key and the request counters.
//!
//! Locks are std mutexes held only for short, non-async critical sections; a poisoned lock is
//! recovered rather than propagated, because every critical section leaves the data consistent.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[cfg(feature = "testing")]
use crate::fault::{Fault, FaultQueue};
use crate::keys::SigningKey;
use crate::scope::normalise_resource;
use crate::tenant::tenant_guid;
use crate::users::Users;

/// Distinct `(tenant, grant_type, scope)` keys we count; later keys are not tracked, so a client
/// sending endless distinct scopes cannot grow memory without bound.
const MAX_COUNTER_KEYS: usize = 4096;
/// Longest key component we track (a body is at most 64 KiB anyway).
const MAX_COUNTER_COMPONENT: usize = 2048;

pub(crate) struct State {
    /// `http://127.0.0.1:port`, no trailing slash.
    pub authority: String,
    pub key: SigningKey,
    /// Cancelled on shutdown; long waits (injected latency) give up when it fires.
    pub cancel: CancellationToken,
    config: Mutex<Config>,
    #[cfg(feature = "testing")]
    faults: Mutex<FaultQueue>,
    token_requests: AtomicU64,
    issued_tokens: AtomicU64,
    per_key: Mutex<HashMap<CounterKey, u64>>,
    users: Mutex<Users>,
}

type CounterKey = (String, String, String);

struct Config {
    /// client_id (lower-cased) → secret.
    apps: HashMap<String, String>,
    permissive: bool,
    token_lifetime: Duration,
    /// `tenant_guid` of each denied tenant, so domain and GUID forms are both denied.
    denied_tenants: HashSet<String>,
    /// `normalise_resource` of each denied resource.
    denied_resources: HashSet<String>,
    /// client_id (lower-cased) → DER certificates whose keys may sign its assertions.
    certificates: HashMap<String, Vec<Vec<u8>>>,
    /// client_id (lower-cased) → (issuer, subject) pairs it trusts for federated assertions.
    federated: HashMap<String, Vec<(String, String)>>,
    /// subscription id (lower-cased) → tid.
    subscriptions: HashMap<String, String>,
}

/// Result of looking a client up in the app registry.
pub(crate) enum AppLookup {
    /// Permissive mode: every client and every credential is accepted.
    AnyAccepted,
    /// A registered app; `secret_ok` tells whether the presented secret (if any) matched.
    Registered {
        secret_ok: bool,
    },
    Unknown,
}

impl State {
    pub(crate) fn new(
        authority: String,
        key: SigningKey,
        cancel: CancellationToken,
        permissive: bool,
        token_lifetime: Duration,
    ) -> Self {
        State {
            authority,
            key,
            cancel,
            config: Mutex::new(Config {
                apps: HashMap::new(),
                permissive,
                token_lifetime,
                denied_tenants: HashSet::new(),
                denied_resources: HashSet::new(),
                certificates: HashMap::new(),
                federated: HashMap::new(),
                subscriptions: HashMap::new(),
            }),
            #[cfg(feature = "testing")]
            faults: Mutex::new(FaultQueue::default()),
            token_requests: AtomicU64::new(0),
            issued_tokens: AtomicU64::new(0),
            per_key: Mutex::new(HashMap::new()),
            users: Mutex::new(Users::default()),
        }
    }

    // ---- configuration ----

    #[cfg(feature = "testing")]
    pub(crate) fn register_app(&self, client_id: &str, secret: &str) {
        self.config().apps.insert(client_id.to_ascii_lowercase(), secret.to_owned());
    }

    #[cfg(feature = "testing")]
    pub(crate) fn set_permissive(&self, on: bool) {
        self.config().permissive = on;
    }

    #[cfg(feature = "testing")]
    pub(crate) fn set_token_lifetime(&self, lifetime: Duration) {
        self.config().token_lifetime = lifetime;
    }

    pub(crate) fn token_lifetime(&self) -> Duration {
        self.config().token_lifetime
    }

    #[cfg(feature = "testing")]
    pub(crate) fn deny_tenant(&self, tenant: &str) {
        self.config().denied_tenants.insert(tenant_guid(tenant));
    }

    #[cfg(feature = "testing")]
    pub(crate) fn deny_resource(&self, resource: &str) {
        self.config().denied_resources.insert(normalise_resource(resource));
    }

    pub(crate) fn is_tenant_denied(&self, tid: &str) -> bool {
        self.config().denied_tenants.contains(tid)
    }

    pub(crate) fn is_resource_denied(&self, resource: &str) -> bool {
        self.config().denied_resources.contains(&normalise_resource(resource))
    }

    /// Looks up `client_id` and compares `secret` (if given) in constant time.
    pub(crate) fn lookup_app(&self, client_id: &str, secret: Option<&str>) -> AppLookup {
        let config = self.config();
        if config.permissive {
            return AppLookup::AnyAccepted;
        }
        match config.apps.get(&client_id.to_ascii_lowercase()) {
            None => AppLookup::Unknown,
            Some(expected) => {
                let secret_ok = secret.is_some_and(|given| {
                    aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), expected.as_bytes())
                        .is_ok()
                });
                AppLookup::Registered { secret_ok }
            }
        }
    }

    #[cfg(feature = "testing")]
    /// Registers a certificate credential; the app becomes known (with no usable secret) if it
    /// was not registered yet.
    pub(crate) fn register_certificate(&self, client_id: &str, der: Vec<u8>) {
        let mut config = self.config();
        let id = client_id.to_ascii_lowercase();
        config.apps.entry(id.clone()).or_insert_with(|| uuid::Uuid::new_v4().to_string());
        config.certificates.entry(id).or_default().push(der);
    }

    pub(crate) fn certificates(&self, client_id: &str) -> Vec<Vec<u8>> {
        self.config().certificates.get(&client_id.to_ascii_lowercase()).cloned().unwrap_or_default()
    }

    #[cfg(feature = "testing")]
    pub(crate) fn register_federated(&self, client_id: &str, issuer: &str, subject: &str) {
        let mut config = self.config();
        config.apps.entry(client_id.to_ascii_lowercase()).or_insert_with(|| uuid::Uuid::new_v4().to_string());
        config
            .federated
            .entry(client_id.to_ascii_lowercase())
            .or_default()
            .push((issuer.to_owned(), subject.to_owned()));
    }

    pub(crate) fn trusts_federated(&self, client_id: &str, issuer: &str, subject: &str) -> bool {
        self.config()
            .federated
            .get(&client_id.to_ascii_lowercase())
            .is_some_and(|v| v.iter().any(|(i, s)| i == issuer && s == subject))
    }

    pub(crate) fn register_subscription(&self, subscription_id: &str, tenant: &str) {
        self.config().subscriptions.insert(subscription_id.to_ascii_lowercase(), tenant_guid(tenant));
    }

    pub(crate) fn subscription_tenant(&self, subscription_id: &str) -> Option<String> {
        self.config().subscriptions.get(&subscription_id.to_ascii_lowercase()).cloned()
    }

    /// Users, device codes, authorization codes and refresh tokens.
    pub(crate) fn users(&self) -> MutexGuard<'_, Users> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- faults ----

    #[cfg(feature = "testing")]
    pub(crate) fn inject(&self, fault: Fault, times: Option<u32>) {
        self.faults().push(fault, times);
    }

    #[cfg(feature = "testing")]
    pub(crate) fn clear_faults(&self) {
        self.faults().clear();
    }

    #[cfg(feature = "testing")]
    pub(crate) fn take_fault(&self) -> Option<Fault> {
        self.faults().take()
    }

    // ---- counters ----

    pub(crate) fn count_token_request(&self) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_request_for(&self, tenant: &str, grant_type: &str, scope: &str) {
        if [tenant, grant_type, scope].iter().any(|c| c.len() > MAX_COUNTER_COMPONENT) {
            return;
        }
        let key = (tenant.to_owned(), grant_type.to_owned(), scope.to_owned());
        let mut map = self.per_key.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&key) {
            *n += 1;
        } else if map.len() < MAX_COUNTER_KEYS {
            map.insert(key, 1);
        }
    }

    pub(crate) fn count_issued(&self) {
        self.issued_tokens.fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(feature = "testing")]
    pub(crate) fn token_requests(&self) -> u64 {
        self.token_requests.load(Ordering::Relaxed)
    }

    #[cfg(feature = "testing")]
    pub(crate) fn issued_tokens(&self) -> u64 {
        self.issued_tokens.load(Ordering::Relaxed)
    }

    #[cfg(feature = "testing")]
    pub(crate) fn requests_for(&self, tenant: &str, grant_type: &str, scope: &str) -> u64 {
        let map = self.per_key.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(tenant.to_owned(), grant_type.to_owned(), scope.to_owned())).copied().unwrap_or(0)
    }

    fn config(&self) -> MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(feature = "testing")]
    fn faults(&self) -> MutexGuard<'_, FaultQueue> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}
