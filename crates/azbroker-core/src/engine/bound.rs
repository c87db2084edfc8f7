//! The bound on cache entries (issue 11, finding 9): how many distinct resources a profile, and
//! each user of it, may make the engine cache and fetch.
//!
//! Without it, a profile without `allowed_resources` let any local user allowed on it create one
//! entry, and one upstream call, per distinct resource string. Now every entry a request creates
//! is counted against the profile that asked and the requester (a local uid; callers without
//! one — client keys, remote callers — share one count). When a new entry would pass either
//! bound, the engine first evicts an entry that is idle — not in flight (so nobody waits on
//! it), not demanded for [`EVICT_IDLE`] — and only if none can go refuses with
//! [`super::EngineError::CacheFull`]:
//!
//! * at the **per-user** bound, the requester's own entries of that profile are candidates:
//!   those without a usable token first, then the least recently demanded of those no other
//!   requester has asked for;
//! * at the **per-profile** bound, only entries without a usable token (failed, expired) are,
//!   whoever made them: a warm entry is never given up for another user's new resource.
//!
//! Entries of resources in the profile's `allowed_resources` and its `prefetch` list are never
//! counted and never evicted for room (the lists are finite, so neither is their number). The
//! counts are by profile name: profiles sharing one cache key (same login and tenant) share its
//! entries but each has its own budget, so one cannot fill another's.
//!
//! Idleness alone also bounds upstream calls: a user at its share gets at most one new entry per
//! idle entry per [`EVICT_IDLE`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Freshness, Slot, lock, usable_token};
use crate::names::Resource;

/// Default [`CacheBounds::max_entries`] (`max_cached_resources`).
pub const DEFAULT_MAX_CACHED_RESOURCES: usize = 256;
/// Default [`CacheBounds::max_per_user`] (`max_cached_resources_per_user`).
pub const DEFAULT_MAX_CACHED_RESOURCES_PER_USER: usize = 64;
/// An entry not demanded for this long may be evicted to make room; also the `Retry-After` of
/// a refusal, since by then the requester's own entries have become candidates.
pub const EVICT_IDLE: Duration = Duration::from_secs(60);

/// How many cache entries one profile's requests may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    /// Entries of the profile, all requesters together.
    pub max_entries: usize,
    /// Entries of the profile one requester made.
    pub max_per_user: usize,
}

impl Default for CacheBounds {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_CACHED_RESOURCES,
            max_per_user: DEFAULT_MAX_CACHED_RESOURCES_PER_USER,
        }
    }
}

/// Which bound refused a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundScope {
    /// The requester's share of the profile.
    User,
    /// The profile's own.
    Profile,
}

/// Who an entry is counted against: the profile that created it and the requester.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Origin {
    /// The profile's name, shared with its binding (an entry adds a count, not a copy).
    pub profile: Arc<str>,
    pub uid: Option<u32>,
}

/// The entries of one cache key, with the counts the bounds are checked against.
#[derive(Default)]
pub(super) struct Entries {
    slots: crate::FastMap<Resource, Arc<Slot>>,
    per_profile: HashMap<Arc<str>, usize>,
    per_user: HashMap<Origin, usize>,
}

impl std::ops::Deref for Entries {
    type Target = crate::FastMap<Resource, Arc<Slot>>;

    fn deref(&self) -> &Self::Target {
        &self.slots
    }
}

impl Entries {
    /// Adds `slot`, counting it against its origin (if any).
    pub fn insert(&mut self, resource: Resource, slot: Arc<Slot>) {
        if let Some(o) = &slot.origin {
            *self.per_profile.entry(o.profile.clone()).or_default() += 1;
            *self.per_user.entry(o.clone()).or_default() += 1;
        }
        if let Some(old) = self.slots.insert(resource, slot) {
            self.uncount(&old);
        }
    }

    /// Removes the entry of `resource`; `Some` when there was one.
    pub fn remove(&mut self, resource: &Resource) -> Option<Arc<Slot>> {
        let slot = self.slots.remove(resource)?;
        self.uncount(&slot);
        Some(slot)
    }

    /// Makes room for one more entry of `origin` under `bounds`, evicting at most one idle
    /// entry per bound; returns how many it evicted, or the bound that stays full.
    pub fn make_room(
        &mut self,
        origin: &Origin,
        bounds: CacheBounds,
        now: Instant,
    ) -> Result<u64, BoundScope> {
        let mut evicted = 0;
        if self.per_user.get(origin).copied().unwrap_or(0) >= bounds.max_per_user {
            let victim = self.victim(now, |o| o == origin, true).ok_or(BoundScope::User)?;
            self.remove(&victim);
            evicted += 1;
        }
        if self.per_profile.get(&origin.profile).copied().unwrap_or(0) >= bounds.max_entries {
            let victim =
                self.victim(now, |o| o.profile == origin.profile, false).ok_or(BoundScope::Profile)?;
            self.remove(&victim);
            evicted += 1;
        }
        Ok(evicted)
    }

    /// The entry to evict among those counted against an origin `mine` accepts (exempt entries
    /// count against none): idle, not in flight, not prefetched; tokenless ones first, then (only when `warm_too`) the least
    /// recently demanded warm one that only its maker asked for.
    fn victim(&self, now: Instant, mine: impl Fn(&Origin) -> bool, warm_too: bool) -> Option<Resource> {
        self.slots
            .iter()
            .filter(|(_, slot)| slot.origin.as_ref().is_some_and(&mine))
            .filter_map(|(resource, slot)| {
                let st = lock(&slot.state);
                let idle = now.saturating_duration_since(st.last_demand);
                if st.flight.is_some() || st.prefetch || idle < EVICT_IDLE {
                    return None;
                }
                let warm = usable_token(&st, now, &Freshness::Cached).is_some();
                (!warm || (warm_too && !st.shared)).then_some(((warm, st.last_demand), resource))
            })
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, resource)| resource.clone())
    }

    fn uncount(&mut self, slot: &Slot) {
        let Some(o) = &slot.origin else { return };
        if let Some(n) = self.per_profile.get_mut(&o.profile) {
            *n -= 1;
            if *n == 0 {
                self.per_profile.remove(&o.profile);
            }
        }
        if let Some(n) = self.per_user.get_mut(o) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(o);
            }
        }
    }
}
