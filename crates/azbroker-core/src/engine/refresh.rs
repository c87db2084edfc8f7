//! Forced refresh (`azbroker refresh`): fresh upstream tokens on an operator's request, e.g.
//! after a role assignment changed and the cached tokens carry the old claims.
//!
//! A forced refresh ignores the cached token and any backoff, but never starts a second upstream
//! call beside one already under way: it waits for that one (which may have been sent before
//! the change) and then makes its own. The new token replaces the cached one for everybody and
//! its refresh is scheduled as usual.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{CacheState, Engine, EngineError, FlightResult, Grant, ProfileBinding, grant, lock, read};
use crate::error::UpstreamError;
use crate::names::{ProfileName, Resource};

/// The outcome of refreshing one cache entry.
#[derive(Debug)]
pub struct Refreshed {
    pub profile: ProfileName,
    pub resource: Resource,
    pub result: Result<Grant, EngineError>,
}

/// A fetch this refresh waits on: its own, or one that was already under way.
struct Pending {
    binding: Arc<ProfileBinding>,
    resource: Resource,
    rx: watch::Receiver<FlightResult>,
    ours: bool,
}

impl Engine {
    /// Refreshes every cache entry of the live profiles that matches the filters (all of them
    /// when both are `None`), concurrently, and returns each outcome sorted by profile and
    /// resource. An entry two profiles share is fetched once and reported under the first. With
    /// both a profile and a resource given, that pair is fetched even if nothing was cached.
    pub async fn refresh_matching(
        &self,
        profile: Option<&str>,
        resource: Option<&Resource>,
    ) -> Result<Vec<Refreshed>, EngineError> {
        let wanted: Vec<Arc<ProfileBinding>> = match profile {
            Some(p) => vec![self.binding(p)?],
            None => read(&self.inner.live).all.clone(),
        };
        let mut keys: Vec<(Arc<ProfileBinding>, Resource)> = Vec::new();
        {
            let slots = read(&self.inner.slots);
            let mut seen = HashSet::new();
            for b in &wanted {
                let Some(by_resource) = slots.get(&b.key) else { continue };
                for r in by_resource.keys().filter(|r| resource.is_none_or(|want| *r == want)) {
                    if seen.insert((b.key.clone(), r.clone())) {
                        keys.push((b.clone(), r.clone()));
                    }
                }
            }
        }
        if let (Some(b), Some(r)) = (wanted.first().filter(|_| profile.is_some()), resource)
            && keys.is_empty()
        {
            keys.push((b.clone(), r.clone()));
        }
        keys.sort_by(|(a, ra), (b, rb)| (&a.name, ra).cmp(&(&b.name, rb)));
        let mut pending = Vec::with_capacity(keys.len());
        for (binding, resource) in keys {
            let (rx, ours) = self.begin(&binding, &resource);
            pending.push(Pending { binding, resource, rx, ours });
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(self.finish(p).await);
        }
        Ok(out)
    }

    /// Starts the fetch for one entry, or joins the one under way (`ours == false`).
    fn begin(
        &self,
        binding: &Arc<ProfileBinding>,
        resource: &Resource,
    ) -> (watch::Receiver<FlightResult>, bool) {
        let slot = self.slot(&binding.key, resource);
        let mut st = lock(&slot.state);
        st.last_demand = Instant::now();
        if let Some(rx) = &st.flight {
            return (rx.clone(), false);
        }
        st.retry_at = None;
        tracing::info!(profile = %binding.name, resource = %resource, "forced refresh");
        (self.start_fetch(binding, resource, &slot, &mut st), true)
    }

    async fn finish(&self, mut p: Pending) -> Refreshed {
        if !p.ours {
            // That call may predate whatever the operator changed: wait for it, then ask again.
            let _ = p.rx.wait_for(Option::is_some).await;
            p.rx = self.begin(&p.binding, &p.resource).0;
        }
        let result = match p.rx.wait_for(Option::is_some).await {
            Ok(r) => match r.clone().unwrap_or(Err(UpstreamError::Timeout)) {
                Ok(token) => Ok(grant(&p.binding, token, CacheState::Miss)),
                Err(e) => Err(EngineError::Upstream(e)),
            },
            Err(_) => Err(EngineError::ShuttingDown),
        };
        Refreshed { profile: p.binding.name.clone(), resource: p.resource, result }
    }
}
