//! The domain of azbroker: what a profile, a resource, a tenant and an access token are, how a
//! request picks its profile, and the token engine that keeps a per-(profile, resource) cache warm.
//!
//! This crate performs no network I/O of its own and knows no HTTP framework: tokens come from a
//! [`TokenSource`] (implemented by `azbroker-entra`) and leave through the engine's API (used by
//! `azbroker-server`). Time is `tokio::time::Instant` so tests can pause and advance it.

pub mod admin_api;
pub mod engine;
pub mod error;
pub mod keys;
pub mod login;
pub mod metrics;
pub mod names;
pub mod personal;
pub mod policy;
pub mod schedule;
pub mod secret;
pub mod select;
pub mod source;
pub mod token;

pub use admin_api::{
    AdminError, FlowStart, FlowState, FlowStatus, LoginMethod, LoginRequest, LoginState, LoginStatus,
    TenantInfo, TenantNeedingSignIn,
};
pub use engine::refresh::Refreshed;
pub use engine::{
    BoundScope, CacheBounds, CacheKey, CacheState, DEFAULT_CLIENT_WAIT, Engine, EngineConfig, EngineError,
    EntryStatus, FETCH_TIMEOUT, Freshness, Grant, PENDING_RETRY_AFTER, ProfileBinding, StatsSnapshot,
};
pub use error::UpstreamError;
pub use login::{CallbackParams, Redirect, RedirectListener};
pub use metrics::{LastError, LatencySnapshot, ProfileMetrics, UPSTREAM_LATENCY_BUCKETS};
pub use names::{NameError, ProfileName, Resource, TenantId};
pub use policy::{AccessPolicy, Caller, Denial, ProfileAccess, Requester, ResourceAllowList, Users};
pub use secret::Secret;
pub use select::{
    AliasConflict, Directory, IdSelector, ProfileSelectors, SelectError, Selection, TenantCandidate,
    TenantMatch,
};
pub use source::{BoxFuture, FetchRequest, TokenSource};
pub use token::{AccessToken, unix_now};

/// The hash map of the request path's lookups (cache slots, access policy, request counters):
/// foldhash, randomly seeded per map, in place of SipHash, which cost ~185 instructions per lookup
/// of a profile name or resource — five lookups per cache hit (BENCHMARKS.md, "Hot path").
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;
