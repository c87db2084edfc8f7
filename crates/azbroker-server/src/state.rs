//! The state every listener shares: the engine, the selection table and the access policy (both
//! swappable on config reload), the runtime secrets clients must present (rotatable), the
//! optional per-uid rate limit, and the readiness flag.
//!
//! It owns no per-request data and never holds a lock across an `.await`: every lock is taken
//! only around a synchronous read or swap.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use azbroker_core::{
    AccessPolicy, CacheState, Directory, Engine, Grant, ProfileName, Secret, SelectError, Selection,
};

use crate::arc_keys::ArcKeys;
use crate::authorize::{GroupCache, GroupResolver};
use crate::metrics::ServerMetrics;
use crate::ratelimit::{RateLimit, RateLimiter};
use crate::secrets::{RuntimeSecrets, SecretId};

/// A cheap-clone handle over the shared serving state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    directory: RwLock<Arc<Directory>>,
    secrets: RwLock<RuntimeSecrets>,
    policy: RwLock<Arc<AccessPolicy>>,
    rate_limiter: RwLock<Option<Arc<RateLimiter>>>,
    groups: GroupCache,
    allow_remote: AtomicBool,
    ready: AtomicBool,
    /// Set once at start when the Arc key directory is usable.
    arc_keys: OnceLock<Arc<ArcKeys>>,
    /// Tenant ids (`tid`) seen in tokens per profile, for the native API's tenant matching.
    tids: RwLock<HashMap<ProfileName, String>>,
    metrics: ServerMetrics,
}

impl AppState {
    /// A state that is not ready yet (`/readyz` answers 503 until [`AppState::set_ready`]).
    ///
    /// Its access policy is [`AccessPolicy::unrestricted`] until [`AppState::set_policy`]; the
    /// daemon always installs its configured policy before it serves.
    pub fn new(engine: Engine, directory: Directory, secrets: RuntimeSecrets) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                directory: RwLock::new(Arc::new(directory)),
                secrets: RwLock::new(secrets),
                policy: RwLock::new(Arc::new(AccessPolicy::unrestricted())),
                rate_limiter: RwLock::new(None),
                groups: GroupCache::default(),
                allow_remote: AtomicBool::new(false),
                ready: AtomicBool::new(false),
                arc_keys: OnceLock::new(),
                tids: RwLock::new(HashMap::new()),
                metrics: ServerMetrics::default(),
            }),
        }
    }

    /// Replaces the selection table (config reload). Requests already past selection keep the
    /// profile they were given. Tenant ids learned from tokens are forgotten (a profile may now
    /// name another tenant); the next token of each profile teaches them again.
    pub fn set_directory(&self, directory: Directory) {
        let next = Arc::new(directory);
        *self.inner.directory.write().unwrap_or_else(PoisonError::into_inner) = next;
        self.inner.tids.write().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Replaces the access policy (start and config reload).
    pub fn set_policy(&self, policy: AccessPolicy) {
        *self.inner.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }

    /// Turns the per-uid rate limit on (`Some`) or off.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let limiter = limit.map(|l| Arc::new(RateLimiter::new(l)));
        *self.inner.rate_limiter.write().unwrap_or_else(PoisonError::into_inner) = limiter;
    }

    /// How to find a uid's groups (primary and supplementary) for `allowed_groups` rules on TCP,
    /// where the kernel reports only the uid. Called off the runtime threads; results are cached
    /// for a minute.
    pub fn set_group_resolver(&self, resolver: GroupResolver) {
        self.inner.groups.set_resolver(resolver);
    }

    /// Admits peers that are not loopback (`allow_non_loopback`); the access policy still
    /// applies to every request.
    pub fn set_allow_remote(&self, allow: bool) {
        self.inner.allow_remote.store(allow, Ordering::Release);
    }

    /// Makes `next` the value of secret `id`, keeping the old one valid for `grace`. False when
    /// the value did not change.
    pub fn rotate_secret(&self, id: SecretId, next: Secret, grace: Duration) -> bool {
        self.inner.secrets.write().unwrap_or_else(PoisonError::into_inner).rotate(id, next, grace)
    }

    /// The value of secret `id` clients should be given now.
    pub fn current_secret(&self, id: SecretId) -> Option<Secret> {
        self.inner.secrets.read().unwrap_or_else(PoisonError::into_inner).current(id).cloned()
    }

    /// Marks the daemon ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The selection table in force now.
    pub fn directory(&self) -> Arc<Directory> {
        self.inner.directory.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Enables the Arc dialect with these key files (once; later calls are ignored).
    pub fn set_arc_keys(&self, keys: Arc<ArcKeys>) {
        let _ = self.inner.arc_keys.set(keys);
    }

    pub(crate) fn arc_keys(&self) -> Option<Arc<ArcKeys>> {
        self.inner.arc_keys.get().cloned()
    }

    /// Records the tenant id of `grant`'s token for `profile`; returns it. A cache hit is a token
    /// of a tenant already learned for the profile (a reload that changes the profile drops both
    /// its cache and what was learned), so it is not decoded again.
    pub(crate) fn remember_tid(&self, profile: &ProfileName, grant: &Grant) -> Option<String> {
        if grant.cache == CacheState::Hit
            && let Some(tid) = self.learned_tid(profile)
        {
            return Some(tid);
        }
        let tid = crate::dialect::native::jwt_tid(grant.token.secret().expose())?;
        let mut tids = self.inner.tids.write().unwrap_or_else(PoisonError::into_inner);
        tids.insert(profile.clone(), tid.clone());
        Some(tid)
    }

    pub(crate) fn learned_tid(&self, profile: &ProfileName) -> Option<String> {
        self.inner.tids.read().unwrap_or_else(PoisonError::into_inner).get(profile).cloned()
    }

    /// The access policy in force now.
    pub fn policy(&self) -> Arc<AccessPolicy> {
        self.inner.policy.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Constant-time check of a presented secret (current value, or the previous one in grace).
    pub(crate) fn secret_matches(&self, id: SecretId, presented: &[u8]) -> bool {
        self.inner.secrets.read().unwrap_or_else(PoisonError::into_inner).matches(id, presented)
    }

    pub(crate) fn rate_limiter(&self) -> Option<Arc<RateLimiter>> {
        self.inner.rate_limiter.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn groups(&self) -> &GroupCache {
        &self.inner.groups
    }

    pub(crate) fn allow_remote(&self) -> bool {
        self.inner.allow_remote.load(Ordering::Acquire)
    }

    /// The request counters behind `/metrics`.
    pub(crate) fn metrics(&self) -> &ServerMetrics {
        &self.inner.metrics
    }

    /// Applies the selection rules against the table in force now.
    pub(crate) fn select(&self, selection: &Selection<'_>) -> Result<ProfileName, SelectError> {
        // A poisoned lock only means a panic during a swap; the old table is still whole.
        self.inner.directory.read().unwrap_or_else(PoisonError::into_inner).select(selection)
    }
}
