//! The token engine: a cache per (login, tenant, resource) kept warm by refreshing ahead of
//! expiry.
//!
//! * **Bindings come from the caller**: the request path passes the [`ProfileBinding`] of the
//!   runtime generation it loaded ([`Engine::get_token_for`]); the engine never looks a profile
//!   up by name for a request, so a reload between selection and the engine call cannot hand a
//!   request another generation's profile. Entries are keyed by the binding's [`CacheKey`]
//!   (login, its configuration, tenant), so a generation that renames a profile or adds an
//!   alias keeps the cache, and two profiles of one generation never share a slot unless they
//!   would get the same token.
//! * **Single-flight**: concurrent misses for one key share one upstream call. The call runs in
//!   its own task, so a client that gives up does not cancel it for the others.
//! * **Refresh ahead**, driven by the engine's scheduler task, not by client demand
//!   ([`crate::schedule::refresh_delay`]); only entries demanded within `idle_ttl` (or listed for
//!   prefetch) keep being refreshed, the rest are evicted.
//! * **Bounded**: each profile, and each user of it, may make only so many entries (and
//!   upstream calls) for distinct resources; idle entries make room, else the request is
//!   refused ([`bound`]).
//! * **Failures**: exponential backoff with jitter honouring `Retry-After`; during backoff no
//!   upstream call is made, and a still-valid cached token keeps being served until its expiry.
//!
//! The engine performs no I/O of its own; it calls [`TokenSource`]s. All timing uses
//! `tokio::time`, so tests pause and advance time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::UpstreamError;
use crate::metrics::{EngineMetrics, ProfileCounters, ProfileMetrics};
use crate::names::{ProfileName, Resource, TenantId};
use crate::policy::ResourceAllowList;
use crate::schedule::{self, backoff_delay, min_servable_remaining, refresh_delay};
use crate::source::{FetchRequest, TokenSource};
use crate::token::AccessToken;

/// Upper bound on one upstream fetch, whatever the source's own timeouts say.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(90);
/// A token with less than this left is never handed out.
pub const MIN_USABLE: Duration = Duration::from_secs(5);

/// Engine tuning, from the `[refresh]` config section.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long before expiry short-lived tokens are refreshed (capped at half their lifetime).
    pub margin: Duration,
    /// Entries not requested for this long stop being refreshed and are evicted.
    pub idle_ttl: Duration,
    /// Longest a caller waits for an upstream call (`[server] client_wait`): then it gets
    /// [`EngineError::Pending`] while the call goes on, and its token serves the retry.
    pub client_wait: Duration,
}

/// Default [`EngineConfig::client_wait`]: under every SDK's per-try limit (Go's is 60 s).
pub const DEFAULT_CLIENT_WAIT: Duration = Duration::from_secs(20);

/// `Retry-After` for [`EngineError::Pending`]: soon, since the call is already under way.
pub const PENDING_RETRY_AFTER: Duration = Duration::from_secs(5);

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(15 * 60),
            idle_ttl: Duration::from_secs(24 * 60 * 60),
            client_wait: DEFAULT_CLIENT_WAIT,
        }
    }
}

/// What a cached token depends on: the login (its name and a digest of its configuration) and
/// the tenant. Bindings with equal keys get the same tokens, so they share cache entries; a
/// changed login or tenant is a new key, and the old entries go at the next
/// [`Engine::set_profiles`].
#[derive(Debug, Clone)]
pub struct CacheKey {
    text: Arc<str>,
    /// A hash of `text`, computed once: the request path hashes this, not the text.
    hash: u64,
}

impl CacheKey {
    /// `login_digest` identifies the login's configuration (a hash of its config section).
    pub fn new(login: &ProfileName, login_digest: &str, tenant: &TenantId) -> Self {
        let text: Arc<str> = Arc::from(format!("{login}\u{0}{login_digest}\u{0}{tenant}"));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&*text, &mut hasher);
        Self { hash: std::hash::Hasher::finish(&hasher), text }
    }

    /// The login part of the key.
    pub fn login(&self) -> &str {
        self.text.split('\u{0}').next().unwrap_or_default()
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        // Equal hashes are only a hint; the texts decide.
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for CacheKey {}

impl PartialOrd for CacheKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CacheKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A profile of one runtime generation as the engine sees it: where its tokens come from.
pub struct ProfileBinding {
    pub name: ProfileName,
    pub tenant: TenantId,
    pub source: Arc<dyn TokenSource>,
    /// Resources warmed at start and kept warm regardless of demand.
    pub prefetch: Vec<Resource>,
    /// The cache entries this profile's tokens live in.
    pub key: CacheKey,
    /// How many entries this profile's requests may create ([`bound`]).
    pub bounds: CacheBounds,
    /// The profile's `allowed_resources` and `prefetch` resources: their entries are never
    /// counted or evicted for room.
    exempt: ResourceAllowList,
    /// The profile's counters, found once on first use (one atomic load per request after).
    counters: OnceLock<Arc<ProfileCounters>>,
    /// The name the entries this profile creates count against.
    budget: Arc<str>,
}

impl ProfileBinding {
    pub fn new(
        name: ProfileName,
        tenant: TenantId,
        source: Arc<dyn TokenSource>,
        prefetch: Vec<Resource>,
        key: CacheKey,
    ) -> Self {
        Self {
            exempt: ResourceAllowList::new(&prefetch),
            budget: Arc::from(name.as_str()),
            name,
            tenant,
            source,
            prefetch,
            key,
            bounds: CacheBounds::default(),
            counters: OnceLock::new(),
        }
    }

    /// This binding with its cache bounds and `allowed_resources` list.
    pub fn with_cache(mut self, bounds: CacheBounds, listed: Option<&[Resource]>) -> Self {
        self.bounds = bounds;
        self.exempt = ResourceAllowList::new(listed.unwrap_or_default().iter().chain(&self.prefetch));
        self
    }
}

impl std::fmt::Debug for ProfileBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileBinding")
            .field("name", &self.name)
            .field("tenant", &self.tenant)
            .field("kind", &self.source.kind())
            .field("prefetch", &self.prefetch)
            .field("key", &self.key)
            .field("bounds", &self.bounds)
            .finish()
    }
}

/// How a grant was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// From the cache, fresh.
    Hit,
    /// This request started the upstream call and waited for it.
    Miss,
    /// Joined an upstream call another request (or the refresher) had started.
    Coalesced,
    /// Upstream is failing; a still-valid older token was served.
    Stale,
}

impl CacheState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
        }
    }
}

/// A token handed to a client.
#[derive(Debug, Clone)]
pub struct Grant {
    pub token: AccessToken,
    pub cache: CacheState,
    /// The application id the token was issued to, when the source knows it.
    pub client_id: Option<String>,
    pub tenant: TenantId,
}

/// How fresh the caller needs the token to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Freshness {
    /// A cached token is fine.
    #[default]
    Cached,
    /// Any token but the one with this SHA-256 (hex) — a client found it rejected.
    NotHash(String),
    /// Always ask upstream (joining a call already under way).
    Fresh,
}

/// Why the engine could not produce a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("profile '{0}' is not configured")]
    UnknownProfile(String),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The upstream call took longer than `client_wait`; it goes on, and a retry after
    /// `retry_after` is likely to be served from its result at once.
    #[error("the token is still being fetched from Entra ID; retry shortly")]
    Pending { retry_after: Duration },
    /// A new resource would pass the profile's cache bound (`scope`), and no idle entry could
    /// make room ([`bound`]).
    #[error("{}", cache_full(profile, *scope, *limit))]
    CacheFull { profile: String, scope: BoundScope, limit: usize, retry_after: Duration },
}

fn cache_full(profile: &str, scope: BoundScope, limit: usize) -> String {
    let (whose, key) = match scope {
        BoundScope::User => ("this user has", "max_cached_resources_per_user"),
        BoundScope::Profile => ("its users have", "max_cached_resources"),
    };
    format!(
        "Profile '{profile}' serves at most {limit} distinct resources at a time and {whose} asked for \
         that many; retry after the unused ones expire, or ask the broker's administrator to list \
         the resource in profiles.{profile}.allowed_resources or raise {key}"
    )
}

/// One cache entry, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryStatus {
    pub profile: String,
    pub resource: String,
    pub token_hash: Option<String>,
    pub expires_in_secs: Option<u64>,
    pub next_refresh_in_secs: Option<u64>,
    pub idle_secs: u64,
    pub failures: u32,
    pub last_error: Option<String>,
}

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub coalesced: AtomicU64,
    pub stale: AtomicU64,
    pub upstream_calls: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub refreshes: AtomicU64,
    pub evictions: AtomicU64,
}

/// Counter values, for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StatsSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub stale: u64,
    pub upstream_calls: u64,
    pub upstream_errors: u64,
    pub refreshes: u64,
    pub evictions: u64,
    pub entries: u64,
}

/// The engine handle: cheap to clone, shared by every listener.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

type FlightResult = Option<Result<AccessToken, UpstreamError>>;
type Slots = crate::FastMap<CacheKey, Entries>;

/// The bindings of the generation published last: what the refresher keeps warm. The request
/// path never reads it.
#[derive(Default)]
struct Live {
    /// Every binding, sorted by profile name.
    all: Vec<Arc<ProfileBinding>>,
    /// One binding per key (the first by profile name), for refreshes.
    by_key: HashMap<CacheKey, Arc<ProfileBinding>>,
}

impl Live {
    fn new(bindings: &[Arc<ProfileBinding>]) -> Self {
        let mut all = bindings.to_vec();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_key = HashMap::new();
        for b in &all {
            by_key.entry(b.key.clone()).or_insert_with(|| b.clone());
        }
        Self { all, by_key }
    }

    fn named(&self, profile: &str) -> Option<&Arc<ProfileBinding>> {
        self.all.iter().find(|b| b.name.as_str() == profile)
    }

    /// The profile names a key serves, for status (the key's login when none does any more).
    fn names_of(&self, key: &CacheKey) -> Vec<String> {
        let names: Vec<String> =
            self.all.iter().filter(|b| &b.key == key).map(|b| b.name.to_string()).collect();
        if names.is_empty() { vec![key.login().to_owned()] } else { names }
    }
}

struct Inner {
    config: EngineConfig,
    live: RwLock<Live>,
    slots: RwLock<Slots>,
    wake_tx: mpsc::UnboundedSender<Wake>,
    wake_rx: Mutex<Option<mpsc::UnboundedReceiver<Wake>>>,
    tasks: TaskTracker,
    stats: Stats,
    metrics: EngineMetrics,
}

struct Wake {
    at: Instant,
    key: CacheKey,
    resource: Resource,
}

struct Slot {
    state: Mutex<SlotState>,
    /// Who the entry counts against; `None` for entries exempt from the bounds.
    origin: Option<Origin>,
}

struct SlotState {
    token: Option<AccessToken>,
    last_demand: Instant,
    prefetch: bool,
    /// Asked for by a requester other than the one it counts against: never evicted to make
    /// room for that one's own new entries while it holds a token.
    shared: bool,
    flight: Option<watch::Receiver<FlightResult>>,
    failures: u32,
    /// No upstream attempt before this (backoff).
    retry_at: Option<Instant>,
    last_error: Option<UpstreamError>,
    /// The scheduler's pending wake-up for this slot; older heap entries are ignored.
    next_wake: Option<Instant>,
    /// The fetch in flight was started by the refresher (counted as a refresh failure if it fails).
    refreshing: bool,
}

impl Engine {
    /// Creates an engine serving `profiles`. Call [`Engine::run`] to start refreshing.
    pub fn new(config: EngineConfig, profiles: Vec<ProfileBinding>) -> Self {
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        let bindings: Vec<_> = profiles.into_iter().map(Arc::new).collect();
        Self {
            inner: Arc::new(Inner {
                config,
                live: RwLock::new(Live::new(&bindings)),
                slots: RwLock::new(Slots::default()),
                wake_tx,
                wake_rx: Mutex::new(Some(wake_rx)),
                tasks: TaskTracker::new(),
                stats: Stats::default(),
                metrics: EngineMetrics::default(),
            }),
        }
    }

    /// A token for `resource` in the live profile named `profile`, from the cache when fresh
    /// enough. For callers without a runtime snapshot (tests, benches); the request path uses
    /// [`Engine::get_token_for`].
    pub async fn get_token(&self, profile: &str, resource: &Resource) -> Result<Grant, EngineError> {
        self.get_token_with(profile, resource, &Freshness::Cached).await
    }

    /// Like [`Engine::get_token`], with a freshness requirement.
    pub async fn get_token_with(
        &self,
        profile: &str,
        resource: &Resource,
        freshness: &Freshness,
    ) -> Result<Grant, EngineError> {
        let binding = self.binding(profile)?;
        self.get_token_for(&binding, resource, freshness, None).await
    }

    /// A token for `resource` as `binding` (a profile of the generation the caller loaded)
    /// gets it: from the cache when fresh enough and acceptable, else from the one upstream
    /// call for its key. `uid` is the requester's local user (`None`: not known — client keys,
    /// remote callers), whose share of the profile's entries a new entry counts against.
    pub async fn get_token_for(
        &self,
        binding: &Arc<ProfileBinding>,
        resource: &Resource,
        freshness: &Freshness,
        uid: Option<u32>,
    ) -> Result<Grant, EngineError> {
        let counters = self.counters(binding);
        let slot = self.admit(binding, resource, uid)?;
        let now = Instant::now();
        let (mut rx, started) = {
            let mut st = lock(&slot.state);
            st.last_demand = now;
            if !st.shared && slot.origin.as_ref().is_some_and(|o| o.uid != uid) {
                st.shared = true;
            }
            if let Some(token) = &st.token {
                let fresh = token.remaining(now) >= min_servable_remaining(token.lifetime());
                let acceptable = match freshness {
                    Freshness::Cached => true,
                    Freshness::NotHash(h) => !token.sha256().eq_ignore_ascii_case(h),
                    Freshness::Fresh => false,
                };
                if fresh && acceptable {
                    self.inner.stats.hits.fetch_add(1, Ordering::Relaxed);
                    counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(grant(binding, token.clone(), CacheState::Hit));
                }
            }
            match &st.flight {
                Some(rx) => (rx.clone(), false),
                None => {
                    if st.retry_at.is_some_and(|at| at > now) {
                        return self.serve_during_backoff(binding, &st, now, freshness);
                    }
                    (self.start_fetch(binding, resource, &slot, &mut st), true)
                }
            }
        };
        let (counter, per_profile) = if started {
            (&self.inner.stats.misses, &counters.misses)
        } else {
            (&self.inner.stats.coalesced, &counters.coalesced)
        };
        counter.fetch_add(1, Ordering::Relaxed);
        per_profile.fetch_add(1, Ordering::Relaxed);
        // Bounded by `client_wait`: the fetch runs in its own task, so giving up here leaves it
        // going for the retry (and for every other caller).
        let waited = tokio::time::timeout(self.inner.config.client_wait, rx.wait_for(Option::is_some)).await;
        let result = match waited {
            Ok(Ok(r)) => r.clone().unwrap_or(Err(UpstreamError::Timeout)),
            Ok(Err(_)) => return Err(EngineError::ShuttingDown),
            Err(_) => {
                let st = lock(&slot.state);
                return match usable_token(&st, Instant::now(), freshness) {
                    Some(old) => {
                        self.inner.stats.stale.fetch_add(1, Ordering::Relaxed);
                        counters.stale.fetch_add(1, Ordering::Relaxed);
                        Ok(grant(binding, old, CacheState::Stale))
                    }
                    None => Err(EngineError::Pending { retry_after: PENDING_RETRY_AFTER }),
                };
            }
        };
        match result {
            Ok(token) => {
                let state = if started { CacheState::Miss } else { CacheState::Coalesced };
                Ok(grant(binding, token, state))
            }
            Err(err) => {
                let st = lock(&slot.state);
                match usable_token(&st, Instant::now(), freshness) {
                    Some(old) => {
                        self.inner.stats.stale.fetch_add(1, Ordering::Relaxed);
                        counters.stale.fetch_add(1, Ordering::Relaxed);
                        Ok(grant(binding, old, CacheState::Stale))
                    }
                    None => Err(EngineError::Upstream(err)),
                }
            }
        }
    }

    /// Runs the refresh scheduler until `cancel` fires, then waits for in-flight fetches.
    /// Warms every profile's `prefetch` resources first. Call once.
    pub async fn run(&self, cancel: CancellationToken) {
        let Some(mut wake_rx) = lock(&self.inner.wake_rx).take() else {
            tracing::error!("Engine::run called twice; the second call does nothing");
            return;
        };
        self.warm_prefetch();
        let mut heap: BinaryHeap<Reverse<(Instant, u64, CacheKey, Resource)>> = BinaryHeap::new();
        let mut seq = 0u64;
        loop {
            let next = heap.peek().map(|Reverse((at, ..))| *at);
            tokio::select! {
                () = cancel.cancelled() => break,
                msg = wake_rx.recv() => match msg {
                    Some(w) => {
                        seq += 1;
                        heap.push(Reverse((w.at, seq, w.key, w.resource)));
                    }
                    None => break,
                },
                () = sleep_until_opt(next) => {
                    let now = Instant::now();
                    while let Some(Reverse((at, ..))) = heap.peek() {
                        if *at > now {
                            break;
                        }
                        if let Some(Reverse((at, _, key, resource))) = heap.pop() {
                            self.on_wake(at, &key, &resource);
                        }
                    }
                }
            }
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Takes the bindings of a newly published generation: they are what the refresher keeps
    /// warm from now on. Entries whose key no binding has any more are dropped; entries of
    /// unchanged keys stay, whatever the profiles using them are called now.
    pub fn set_profiles(&self, bindings: &[Arc<ProfileBinding>]) {
        let live = Live::new(bindings);
        write(&self.inner.slots).retain(|key, _| live.by_key.contains_key(key));
        self.inner.metrics.retain(|name| live.named(name.as_str()).is_some());
        *write(&self.inner.live) = live;
        self.warm_prefetch();
    }

    /// Drops every cached token of `login` (all logins when `None`), e.g. after logout.
    pub fn forget(&self, login: Option<&str>) {
        let mut slots = write(&self.inner.slots);
        match login {
            Some(l) => slots.retain(|key, _| key.login() != l),
            None => slots.clear(),
        }
    }

    /// Clears the failure state (backoff, negative cache) of every entry of `login`, keeping
    /// cached tokens: after a sign-in fixed what was failing, the next request goes upstream at
    /// once instead of waiting out the backoff.
    pub fn reset_backoff(&self, login: &str) {
        let slots = read(&self.inner.slots);
        for slot in slots.iter().filter(|(key, _)| key.login() == login).flat_map(|(_, m)| m.values()) {
            let mut st = lock(&slot.state);
            st.failures = 0;
            st.retry_at = None;
            st.last_error = None;
        }
    }

    /// The live profile named `profile` (the generation published last).
    pub fn binding(&self, profile: &str) -> Result<Arc<ProfileBinding>, EngineError> {
        read(&self.inner.live)
            .named(profile)
            .cloned()
            .ok_or_else(|| EngineError::UnknownProfile(profile.to_owned()))
    }

    /// Every cache entry, once per live profile that uses it, sorted by profile then resource.
    pub fn entries(&self) -> Vec<EntryStatus> {
        let now = Instant::now();
        let live = read(&self.inner.live);
        let slots = read(&self.inner.slots);
        let mut out = Vec::new();
        for (key, by_resource) in slots.iter() {
            let names = live.names_of(key);
            for (resource, slot) in by_resource.iter() {
                let st = lock(&slot.state);
                for profile in &names {
                    out.push(EntryStatus {
                        profile: profile.clone(),
                        resource: resource.to_string(),
                        token_hash: st.token.as_ref().map(AccessToken::hash),
                        expires_in_secs: st.token.as_ref().map(|t| t.remaining(now).as_secs()),
                        next_refresh_in_secs: st
                            .next_wake
                            .map(|w| w.saturating_duration_since(now).as_secs()),
                        idle_secs: now.saturating_duration_since(st.last_demand).as_secs(),
                        failures: st.failures,
                        last_error: st.last_error.as_ref().map(ToString::to_string),
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.profile, &a.resource).cmp(&(&b.profile, &b.resource)));
        out
    }

    /// Counter values.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.inner.stats;
        let entries = read(&self.inner.slots).values().map(|m| m.len() as u64).sum();
        StatsSnapshot {
            hits: s.hits.load(Ordering::Relaxed),
            misses: s.misses.load(Ordering::Relaxed),
            coalesced: s.coalesced.load(Ordering::Relaxed),
            stale: s.stale.load(Ordering::Relaxed),
            upstream_calls: s.upstream_calls.load(Ordering::Relaxed),
            upstream_errors: s.upstream_errors.load(Ordering::Relaxed),
            refreshes: s.refreshes.load(Ordering::Relaxed),
            evictions: s.evictions.load(Ordering::Relaxed),
            entries,
        }
    }

    /// Per-profile counters, for metrics and status.
    pub fn metrics(&self) -> Vec<ProfileMetrics> {
        self.inner.metrics.snapshot()
    }

    /// The counters of `binding`'s profile (looked up on its first use only).
    fn counters<'b>(&self, binding: &'b ProfileBinding) -> &'b Arc<ProfileCounters> {
        binding.counters.get_or_init(|| self.inner.metrics.profile(&binding.name))
    }

    fn serve_during_backoff(
        &self,
        binding: &ProfileBinding,
        st: &SlotState,
        now: Instant,
        freshness: &Freshness,
    ) -> Result<Grant, EngineError> {
        if let Some(old) = usable_token(st, now, freshness) {
            self.inner.stats.stale.fetch_add(1, Ordering::Relaxed);
            self.counters(binding).stale.fetch_add(1, Ordering::Relaxed);
            return Ok(grant(binding, old, CacheState::Stale));
        }
        let mut err = st.last_error.clone().unwrap_or(UpstreamError::Timeout);
        // Tell the client how long the backoff lasts, so its own retry lines up with ours.
        let wait = st.retry_at.map(|at| at.saturating_duration_since(now));
        match &mut err {
            UpstreamError::Throttled { retry_after } | UpstreamError::Unavailable { retry_after, .. } => {
                *retry_after = wait.map(|w| w.max(Duration::from_secs(1)));
            }
            _ => {}
        }
        Err(EngineError::Upstream(err))
    }

    /// The entry of `resource` for a request of `binding` by `uid`: the existing one, or a new
    /// one within the profile's bounds ([`bound`]).
    fn admit(
        &self,
        binding: &ProfileBinding,
        resource: &Resource,
        uid: Option<u32>,
    ) -> Result<Arc<Slot>, EngineError> {
        if let Some(slot) = self.existing(&binding.key, resource) {
            return Ok(slot);
        }
        let exempt = binding.exempt.allows(resource);
        let mut slots = write(&self.inner.slots);
        let entries = slots.entry(binding.key.clone()).or_default();
        if let Some(slot) = entries.get(resource) {
            return Ok(slot.clone());
        }
        let origin = (!exempt).then(|| Origin { profile: binding.budget.clone(), uid });
        if let Some(origin) = &origin {
            match entries.make_room(origin, binding.bounds, Instant::now()) {
                Ok(evicted) => {
                    self.inner.stats.evictions.fetch_add(evicted, Ordering::Relaxed);
                }
                Err(scope) => {
                    let limit = match scope {
                        BoundScope::User => binding.bounds.max_per_user,
                        BoundScope::Profile => binding.bounds.max_entries,
                    };
                    if entries.is_empty() {
                        slots.remove(&binding.key);
                    }
                    return Err(EngineError::CacheFull {
                        profile: binding.name.to_string(),
                        scope,
                        limit,
                        retry_after: EVICT_IDLE,
                    });
                }
            }
        }
        let slot = Arc::new(Slot::new(false, origin));
        entries.insert(resource.clone(), slot.clone());
        Ok(slot)
    }

    fn existing(&self, key: &CacheKey, resource: &Resource) -> Option<Arc<Slot>> {
        read(&self.inner.slots).get(key).and_then(|m| m.get(resource.as_str())).cloned()
    }

    /// The entry of `resource`, made outside the bounds when missing (prefetch, an operator's
    /// refresh).
    fn slot(&self, key: &CacheKey, resource: &Resource) -> Arc<Slot> {
        if let Some(slot) = self.existing(key, resource) {
            return slot;
        }
        let mut slots = write(&self.inner.slots);
        let entries = slots.entry(key.clone()).or_default();
        if let Some(slot) = entries.get(resource) {
            return slot.clone();
        }
        let slot = Arc::new(Slot::new(false, None));
        entries.insert(resource.clone(), slot.clone());
        slot
    }

    /// Starts the single upstream call for a slot; the caller holds the slot's lock.
    fn start_fetch(
        &self,
        binding: &Arc<ProfileBinding>,
        resource: &Resource,
        slot: &Arc<Slot>,
        st: &mut SlotState,
    ) -> watch::Receiver<FlightResult> {
        let (tx, rx) = watch::channel(None);
        st.flight = Some(rx.clone());
        st.next_wake = None;
        let engine = self.clone();
        let binding = binding.clone();
        let slot = slot.clone();
        let request = FetchRequest { tenant: binding.tenant.clone(), resource: resource.clone() };
        self.inner.stats.upstream_calls.fetch_add(1, Ordering::Relaxed);
        let counters = self.counters(&binding).clone();
        counters.upstream_requests.fetch_add(1, Ordering::Relaxed);
        self.inner.tasks.spawn(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(FETCH_TIMEOUT, binding.source.fetch(&request)).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::Timeout),
            };
            counters.upstream_finished(started.elapsed(), &result);
            engine.finish_fetch(&binding, &request.resource, &slot, &result);
            // Receivers may all be gone (clients gave up); the result is in the slot anyway.
            let _ = tx.send(Some(result));
        });
        rx
    }

    fn finish_fetch(
        &self,
        binding: &ProfileBinding,
        resource: &Resource,
        slot: &Slot,
        result: &Result<AccessToken, UpstreamError>,
    ) {
        let now = Instant::now();
        let mut st = lock(&slot.state);
        st.flight = None;
        if std::mem::take(&mut st.refreshing) && result.is_err() {
            self.counters(binding).refresh_failures.fetch_add(1, Ordering::Relaxed);
        }
        let wake = match result {
            Ok(token) => {
                let delay = refresh_delay(token.lifetime(), self.inner.config.margin, schedule::jitter());
                st.token = Some(token.clone());
                st.failures = 0;
                st.retry_at = None;
                st.last_error = None;
                token.received_at + delay
            }
            Err(err) => {
                self.inner.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                st.failures = st.failures.saturating_add(1);
                let delay =
                    backoff_delay(st.failures, err.retry_after(), err.is_definitive(), schedule::jitter());
                tracing::warn!(
                    profile = %binding.name, resource = %resource, error = %err, failures = st.failures,
                    retry_in_ms = delay.as_millis() as u64, "upstream token request failed"
                );
                st.retry_at = Some(now + delay);
                st.last_error = Some(err.clone());
                now + delay
            }
        };
        st.next_wake = Some(wake);
        let _ =
            self.inner.wake_tx.send(Wake { at: wake, key: binding.key.clone(), resource: resource.clone() });
    }

    /// A scheduled wake-up: refresh the entry if it is still wanted (and still live), evict it if
    /// not.
    fn on_wake(&self, at: Instant, key: &CacheKey, resource: &Resource) {
        let Some(slot) = read(&self.inner.slots).get(key).and_then(|m| m.get(resource)).cloned() else {
            return;
        };
        let binding = read(&self.inner.live).by_key.get(key).cloned();
        let now = Instant::now();
        let mut st = lock(&slot.state);
        if st.next_wake != Some(at) || st.flight.is_some() {
            return; // superseded by a newer schedule or a fetch already under way
        }
        st.next_wake = None;
        let demanded =
            st.prefetch || now.saturating_duration_since(st.last_demand) <= self.inner.config.idle_ttl;
        let Some(binding) = binding.filter(|_| demanded) else {
            drop(st);
            self.evict(key, resource, &slot);
            return;
        };
        self.inner.stats.refreshes.fetch_add(1, Ordering::Relaxed);
        self.counters(&binding).refreshes.fetch_add(1, Ordering::Relaxed);
        st.refreshing = true;
        tracing::debug!(profile = %binding.name, resource = %resource, "refreshing ahead of expiry");
        self.start_fetch(&binding, resource, &slot, &mut st);
    }

    fn evict(&self, key: &CacheKey, resource: &Resource, slot: &Arc<Slot>) {
        let mut slots = write(&self.inner.slots);
        if let Some(m) = slots.get_mut(key) {
            if m.get(resource).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                m.remove(resource);
                self.inner.stats.evictions.fetch_add(1, Ordering::Relaxed);
            }
            if m.is_empty() {
                slots.remove(key);
            }
        }
    }

    fn warm_prefetch(&self) {
        let bindings = read(&self.inner.live).all.clone();
        for binding in bindings {
            for resource in &binding.prefetch {
                let slot = self.slot(&binding.key, resource);
                let mut st = lock(&slot.state);
                st.prefetch = true;
                if st.token.is_none() && st.flight.is_none() {
                    self.start_fetch(&binding, resource, &slot, &mut st);
                }
            }
        }
    }
}

/// The grant of `token` to a request of `binding`'s profile.
fn grant(binding: &ProfileBinding, token: AccessToken, cache: CacheState) -> Grant {
    Grant {
        token,
        cache,
        client_id: binding.source.client_id().map(str::to_owned),
        tenant: binding.tenant.clone(),
    }
}

impl Slot {
    fn new(prefetch: bool, origin: Option<Origin>) -> Self {
        Self {
            origin,
            state: Mutex::new(SlotState {
                token: None,
                last_demand: Instant::now(),
                prefetch,
                shared: false,
                flight: None,
                failures: 0,
                retry_at: None,
                last_error: None,
                next_wake: None,
                refreshing: false,
            }),
        }
    }
}

/// A cached token that may still be handed out when nothing better can be had.
fn usable_token(st: &SlotState, now: Instant, freshness: &Freshness) -> Option<AccessToken> {
    let token = st.token.as_ref()?;
    if token.remaining(now) < MIN_USABLE {
        return None;
    }
    match freshness {
        Freshness::NotHash(h) if token.sha256().eq_ignore_ascii_case(h) => None,
        _ => Some(token.clone()),
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

// A poisoned lock means a panic while holding it; the data is plain cache state, still coherent
// enough to keep serving, so recover rather than take the daemon down.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub mod bound;
pub mod refresh;

pub use bound::{BoundScope, CacheBounds};
use bound::{EVICT_IDLE, Entries, Origin};

#[cfg(test)]
mod tests;
