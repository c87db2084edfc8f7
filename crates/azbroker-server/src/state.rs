//! The state every listener shares: the engine, the selection table (swappable on config reload),
//! the runtime secrets clients must present, and the readiness flag.
//!
//! It owns no per-request data and never holds a lock across an `.await`: the directory lock is
//! taken only around a synchronous `Directory::select`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use azbroker_core::{Directory, Engine, ProfileName, Secret, SelectError, Selection};

use crate::metrics::ServerMetrics;

/// Secrets generated or configured at start that clients must present.
///
/// `Debug` shows only redacted values (`Secret` redacts).
#[derive(Debug, Clone)]
pub struct RuntimeSecrets {
    /// The App Service `X-IDENTITY-HEADER` value (exported to clients as `IDENTITY_HEADER`).
    pub identity_header: Secret,
}

/// A cheap-clone handle over the shared serving state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    directory: RwLock<Arc<Directory>>,
    secrets: RuntimeSecrets,
    ready: AtomicBool,
    metrics: ServerMetrics,
}

impl AppState {
    /// A state that is not ready yet (`/readyz` answers 503 until [`AppState::set_ready`]).
    pub fn new(engine: Engine, directory: Directory, secrets: RuntimeSecrets) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                directory: RwLock::new(Arc::new(directory)),
                secrets,
                ready: AtomicBool::new(false),
                metrics: ServerMetrics::default(),
            }),
        }
    }

    /// Replaces the selection table (config reload). Requests already past selection keep the
    /// profile they were given.
    pub fn set_directory(&self, directory: Directory) {
        let next = Arc::new(directory);
        *self.inner.directory.write().unwrap_or_else(PoisonError::into_inner) = next;
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

    /// The request counters behind `/metrics`.
    pub(crate) fn metrics(&self) -> &ServerMetrics {
        &self.inner.metrics
    }

    pub(crate) fn secrets(&self) -> &RuntimeSecrets {
        &self.inner.secrets
    }

    /// Applies the selection rules against the table in force now.
    pub(crate) fn select(&self, selection: &Selection<'_>) -> Result<ProfileName, SelectError> {
        // A poisoned lock only means a panic during a swap; the old table is still whole.
        self.inner.directory.read().unwrap_or_else(PoisonError::into_inner).select(selection)
    }
}
