//! The state every listener shares: the engine, the [`Runtime`] of the config generation in
//! force (swapped whole on reload), the runtime secrets clients must present (rotatable), the
//! group cache, the Arc key files and the readiness flag.
//!
//! It owns no per-request data and never holds a lock across an `.await`: every lock is taken
//! only around a synchronous read or swap. Configuration lives only in the runtime; a request
//! loads it once ([`AppState::runtime`]) and keeps that snapshot to its end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use azbroker_core::{Engine, Secret};

use crate::arc_keys::ArcKeys;
use crate::authorize::{GroupCache, GroupResolver};
use crate::denial_log::DenialLog;
use crate::metrics::ServerMetrics;
use crate::runtime::{Runtime, RuntimeError, RuntimeSpec};
use crate::secrets::{RuntimeSecrets, SecretId};

/// A cheap-clone handle over the shared serving state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    runtime: ArcSwap<Runtime>,
    /// The last generation number handed out.
    generation: AtomicU64,
    /// Held while a generation is built and published, so a reload and a key change never race.
    publishing: Mutex<()>,
    secrets: RwLock<RuntimeSecrets>,
    groups: GroupCache,
    ready: AtomicBool,
    /// Set once at start when the Arc key directory is usable.
    arc_keys: OnceLock<Arc<ArcKeys>>,
    metrics: ServerMetrics,
    /// The rate limit on policy-denial warnings.
    denial_log: DenialLog,
}

impl AppState {
    /// A state serving generation 1, built from `spec`, that is not ready yet (`/readyz` answers
    /// 503 until [`AppState::set_ready`]).
    pub fn new(engine: Engine, spec: RuntimeSpec, secrets: RuntimeSecrets) -> Result<Self, RuntimeError> {
        let runtime = Runtime::build(1, spec, None)?;
        engine.set_profiles(&runtime.profiles().values().cloned().collect::<Vec<_>>());
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                runtime: ArcSwap::from_pointee(runtime),
                generation: AtomicU64::new(1),
                publishing: Mutex::new(()),
                secrets: RwLock::new(secrets),
                groups: GroupCache::default(),
                ready: AtomicBool::new(false),
                arc_keys: OnceLock::new(),
                metrics: ServerMetrics::default(),
                denial_log: DenialLog::default(),
            }),
        })
    }

    /// Builds the next generation from `spec` completely, then publishes it with one swap;
    /// requests already under way finish on the generation they loaded. The engine then keeps
    /// the new profiles warm (entries of unchanged keys stay). On error nothing changes.
    /// Callers serialise publications (the daemon's reload loop is the only one).
    pub fn publish(&self, spec: RuntimeSpec) -> Result<Arc<Runtime>, RuntimeError> {
        let _publishing = self.inner.publishing.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = self.runtime();
        let generation = self.inner.generation.load(Ordering::Acquire) + 1;
        let next = Arc::new(Runtime::build(generation, spec, Some(&previous))?);
        self.inner.generation.store(generation, Ordering::Release);
        self.inner.runtime.store(next.clone());
        self.inner.engine.set_profiles(&next.profiles().values().cloned().collect::<Vec<_>>());
        Ok(next)
    }

    /// Publishes the configuration in force with the client keys `keys` as the next generation
    /// (one swap): a created key works, and a revoked one stops working, for every request that
    /// starts after this returns.
    pub fn publish_keys(&self, keys: azbroker_core::keys::KeySet) -> Arc<Runtime> {
        let _publishing = self.inner.publishing.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.inner.generation.load(Ordering::Acquire) + 1;
        let next = Arc::new(self.runtime().with_keys(generation, Arc::new(keys)));
        self.inner.generation.store(generation, Ordering::Release);
        self.inner.runtime.store(next.clone());
        next
    }

    /// The runtime of the generation in force now: load it once per request and keep it.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.runtime.load_full()
    }

    /// How to find a uid's groups (primary and supplementary) for `allowed_groups` rules on TCP,
    /// where the kernel reports only the uid. Called off the runtime threads; results are cached
    /// for a minute.
    pub fn set_group_resolver(&self, resolver: GroupResolver) {
        self.inner.groups.set_resolver(resolver);
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

    /// Enables the Arc dialect with these key files (once; later calls are ignored).
    pub fn set_arc_keys(&self, keys: Arc<ArcKeys>) {
        let _ = self.inner.arc_keys.set(keys);
    }

    pub(crate) fn arc_keys(&self) -> Option<Arc<ArcKeys>> {
        self.inner.arc_keys.get().cloned()
    }

    /// Constant-time check of a presented secret (current value, or the previous one in grace).
    pub(crate) fn secret_matches(&self, id: SecretId, presented: &[u8]) -> bool {
        self.inner.secrets.read().unwrap_or_else(PoisonError::into_inner).matches(id, presented)
    }

    pub(crate) fn groups(&self) -> &GroupCache {
        &self.inner.groups
    }

    /// The request counters behind `/metrics`.
    pub(crate) fn metrics(&self) -> &ServerMetrics {
        &self.inner.metrics
    }

    pub(crate) fn denial_log(&self) -> &DenialLog {
        &self.inner.denial_log
    }
}
