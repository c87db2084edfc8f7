//! One immutable [`Runtime`] per config generation: everything a request needs to know about the
//! configuration — the selection table (profiles, aliases, per-user defaults), the access policy,
//! the rate limit, whether remote peers are admitted, and each profile's engine binding — built
//! whole from one validated config and published with one atomic swap ([`crate::AppState::publish`]).
//!
//! A request loads the runtime once, at its start, and uses that one snapshot to its end, so it
//! sees exactly one config generation: a reload that renames or reassigns a profile can never
//! make a request select a profile in one generation and be authorised or served by another.
//! Nothing here changes after publication except what a generation learns while it serves (the
//! tenant ids the native API reads from tokens), which dies with it.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use azbroker_core::keys::KeySet;
use azbroker_core::{
    AccessPolicy, CacheState, Directory, EngineError, Grant, ProfileBinding, ProfileName, SelectError,
    Selection,
};

use crate::ratelimit::{RateLimit, RateLimiter};

/// What the daemon builds from one validated config: the parts of a [`Runtime`].
pub struct RuntimeSpec {
    pub directory: Directory,
    pub policy: AccessPolicy,
    pub rate_limit: Option<RateLimit>,
    /// Admit peers that are not loopback (`allow_non_loopback`); the policy still applies.
    pub allow_remote: bool,
    /// Members of this group (`admin_group`) may read `/metrics` on a token listener, besides
    /// the daemon's user and root.
    pub admin_gid: Option<u32>,
    /// One binding per profile (workspaces included).
    pub bindings: Vec<Arc<ProfileBinding>>,
    /// The daemon's own view of this generation (its parsed config), for the admin hooks; the
    /// server never looks inside.
    pub daemon: Arc<dyn Any + Send + Sync>,
}

impl RuntimeSpec {
    /// A spec with the rest at its defaults: no policy restrictions, no rate limit, loopback
    /// peers only, no daemon view.
    pub fn new(directory: Directory, policy: AccessPolicy, bindings: Vec<Arc<ProfileBinding>>) -> Self {
        Self {
            directory,
            policy,
            rate_limit: None,
            allow_remote: false,
            admin_gid: None,
            bindings,
            daemon: Arc::new(()),
        }
    }

    /// The spec `rt` was built from (its rate limit, bindings and daemon view included), to
    /// publish a variant of it (the router tests' reconfiguration).
    #[cfg(test)]
    pub(crate) fn of(rt: &Runtime) -> Self {
        Self {
            directory: rt.directory.clone(),
            policy: rt.policy.clone(),
            rate_limit: rt.rate_limiter.as_ref().map(|l| l.configured()),
            allow_remote: rt.allow_remote,
            admin_gid: rt.admin_gid,
            bindings: rt.profiles.values().cloned().collect(),
            daemon: rt.daemon.clone(),
        }
    }
}

/// Why a spec cannot become a runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("profile '{0}' can be selected but has no token source")]
    Unbound(String),
    #[error("profile '{0}' is bound twice")]
    Duplicate(String),
}

/// The configuration of one generation, immutable once published.
pub struct Runtime {
    generation: u64,
    directory: Directory,
    policy: AccessPolicy,
    rate_limiter: Option<Arc<RateLimiter>>,
    allow_remote: bool,
    admin_gid: Option<u32>,
    profiles: BTreeMap<ProfileName, Arc<ProfileBinding>>,
    /// Tenant ids (`tid`) seen in tokens per profile, for the native API's tenant matching.
    tids: RwLock<HashMap<ProfileName, String>>,
    daemon: Arc<dyn Any + Send + Sync>,
    /// The client keys (`azbroker key create`): inherited by each new generation, replaced whole
    /// by [`crate::AppState::publish_keys`].
    keys: Arc<KeySet>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("generation", &self.generation)
            .field("profiles", &self.profiles.keys().collect::<Vec<_>>())
            .field("allow_remote", &self.allow_remote)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds generation `generation` from `spec`. Every profile the directory can select must
    /// have a binding. `previous` lends its rate limiter's buckets when the limit is unchanged,
    /// so a reload does not refill everybody's bucket.
    pub(crate) fn build(
        generation: u64,
        spec: RuntimeSpec,
        previous: Option<&Runtime>,
    ) -> Result<Self, RuntimeError> {
        let mut profiles = BTreeMap::new();
        for binding in spec.bindings {
            let name = binding.name.clone();
            if profiles.insert(name.clone(), binding).is_some() {
                return Err(RuntimeError::Duplicate(name.to_string()));
            }
        }
        if let Some(missing) = spec.directory.profile_names().find(|p| !profiles.contains_key(*p)) {
            return Err(RuntimeError::Unbound(missing.to_string()));
        }
        let reused = previous
            .and_then(|p| p.rate_limiter.as_ref())
            .filter(|l| Some(l.configured()) == spec.rate_limit)
            .cloned();
        let rate_limiter = reused.or_else(|| spec.rate_limit.map(|l| Arc::new(RateLimiter::new(l))));
        Ok(Self {
            generation,
            directory: spec.directory,
            policy: spec.policy,
            rate_limiter,
            allow_remote: spec.allow_remote,
            admin_gid: spec.admin_gid,
            profiles,
            tids: RwLock::new(HashMap::new()),
            daemon: spec.daemon,
            keys: previous.map(|p| p.keys.clone()).unwrap_or_default(),
        })
    }

    /// Generation `generation`: this one's configuration with the client keys `keys`.
    pub(crate) fn with_keys(&self, generation: u64, keys: Arc<KeySet>) -> Self {
        let tids = self.tids.read().unwrap_or_else(PoisonError::into_inner).clone();
        Self {
            generation,
            directory: self.directory.clone(),
            policy: self.policy.clone(),
            rate_limiter: self.rate_limiter.clone(),
            allow_remote: self.allow_remote,
            admin_gid: self.admin_gid,
            profiles: self.profiles.clone(),
            tids: RwLock::new(tids),
            daemon: self.daemon.clone(),
            keys,
        }
    }

    /// The client keys this generation accepts.
    pub fn keys(&self) -> &Arc<KeySet> {
        &self.keys
    }

    /// Counts up from 1 with every published config.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn policy(&self) -> &AccessPolicy {
        &self.policy
    }

    /// The profiles of this generation and their engine bindings, sorted by name.
    pub fn profiles(&self) -> &BTreeMap<ProfileName, Arc<ProfileBinding>> {
        &self.profiles
    }

    /// The daemon's own view of this generation as a shared handle, when it is a `T`.
    pub fn daemon_arc<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.daemon.clone().downcast().ok()
    }

    /// Applies the selection rules of this generation.
    pub(crate) fn select(&self, selection: &Selection<'_>) -> Result<ProfileName, SelectError> {
        self.directory.select(selection)
    }

    /// The binding of a profile this generation selected.
    pub(crate) fn binding(&self, profile: &ProfileName) -> Result<&Arc<ProfileBinding>, EngineError> {
        self.profiles.get(profile).ok_or_else(|| EngineError::UnknownProfile(profile.to_string()))
    }

    pub(crate) fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.rate_limiter.as_deref()
    }

    pub(crate) fn allow_remote(&self) -> bool {
        self.allow_remote
    }

    /// The group whose members may read `/metrics` on a token listener (`admin_group`).
    pub(crate) fn admin_gid(&self) -> Option<u32> {
        self.admin_gid
    }

    /// Records the tenant id of `grant`'s token for `profile`; returns it. A cache hit is a token
    /// of a tenant already learned for the profile in this generation, so it is not decoded again.
    pub(crate) fn remember_tid(&self, profile: &ProfileName, grant: &Grant) -> Option<String> {
        if grant.cache == CacheState::Hit
            && let Some(tid) = self.learned_tid(profile)
        {
            return Some(tid);
        }
        let tid = crate::dialect::native::jwt_tid(grant.token.secret().expose())?;
        let mut tids = self.tids.write().unwrap_or_else(PoisonError::into_inner);
        tids.insert(profile.clone(), tid.clone());
        Some(tid)
    }

    pub(crate) fn learned_tid(&self, profile: &ProfileName) -> Option<String> {
        self.tids.read().unwrap_or_else(PoisonError::into_inner).get(profile).cloned()
    }
}
