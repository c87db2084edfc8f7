//! Forced refresh (`azbroker refresh`): fresh upstream tokens on an operator's request, e.g.
//! after a role assignment changed and the cached tokens carry the old claims.
//!
//! A forced refresh ignores the cached token and any backoff, but never starts a second upstream
//! call beside one already under way: it waits for that one (which may have been sent before
//! the change) and then makes its own. The new token replaces the cached one for everybody and
//! its refresh is scheduled as usual.

use tokio::sync::watch;
use tokio::time::Instant;

use super::{CacheState, Engine, EngineError, FlightResult, Grant, lock, read};
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
    profile: ProfileName,
    resource: Resource,
    rx: watch::Receiver<FlightResult>,
    ours: bool,
}

impl Engine {
    /// Refreshes every cache entry that matches the filters (all of them when both are `None`),
    /// concurrently, and returns each outcome sorted by profile and resource. With both a
    /// profile and a resource given, that pair is fetched even if nothing was cached for it.
    pub async fn refresh_matching(
        &self,
        profile: Option<&str>,
        resource: Option<&Resource>,
    ) -> Result<Vec<Refreshed>, EngineError> {
        if let Some(p) = profile {
            self.binding(p)?;
        }
        let mut keys: Vec<(ProfileName, Resource)> = {
            let slots = read(&self.inner.slots);
            slots
                .iter()
                .filter(|(p, _)| profile.is_none_or(|want| p.as_str() == want))
                .flat_map(|(p, by_resource)| by_resource.keys().map(move |r| (p.clone(), r.clone())))
                .filter(|(_, r)| resource.is_none_or(|want| r == want))
                .collect()
        };
        if let (Some(p), Some(r)) = (profile, resource)
            && keys.is_empty()
        {
            keys.push((self.binding(p)?.name.clone(), r.clone()));
        }
        keys.sort();
        let mut pending = Vec::with_capacity(keys.len());
        for (p, r) in keys {
            match self.begin(&p, &r) {
                Ok((rx, ours)) => pending.push(Ok(Pending { profile: p, resource: r, rx, ours })),
                Err(e) => pending.push(Err(Refreshed { profile: p, resource: r, result: Err(e) })),
            }
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(p) => self.finish(p).await,
                Err(done) => done,
            });
        }
        Ok(out)
    }

    /// Starts the fetch for one entry, or joins the one under way (`ours == false`).
    fn begin(
        &self,
        profile: &ProfileName,
        resource: &Resource,
    ) -> Result<(watch::Receiver<FlightResult>, bool), EngineError> {
        let binding = self.binding(profile.as_str())?;
        let slot = self.slot(&binding.name, resource);
        let mut st = lock(&slot.state);
        st.last_demand = Instant::now();
        if let Some(rx) = &st.flight {
            return Ok((rx.clone(), false));
        }
        st.retry_at = None;
        tracing::info!(profile = %profile, resource = %resource, "forced refresh");
        Ok((self.start_fetch(&binding, resource, &slot, &mut st), true))
    }

    async fn finish(&self, mut p: Pending) -> Refreshed {
        if !p.ours {
            // That call may predate whatever the operator changed: wait for it, then ask again.
            let _ = p.rx.wait_for(Option::is_some).await;
            match self.begin(&p.profile, &p.resource) {
                Ok((rx, _)) => p.rx = rx,
                Err(e) => return Refreshed { profile: p.profile, resource: p.resource, result: Err(e) },
            }
        }
        let result = match p.rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or(Err(UpstreamError::Timeout)),
            Err(_) => {
                let result = Err(EngineError::ShuttingDown);
                return Refreshed { profile: p.profile, resource: p.resource, result };
            }
        };
        let result = match (result, self.binding(p.profile.as_str())) {
            (Ok(token), Ok(binding)) => Ok(self.grant(&binding, token, CacheState::Miss)),
            (Err(e), _) => Err(EngineError::Upstream(e)),
            (Ok(_), Err(e)) => Err(e),
        };
        Refreshed { profile: p.profile, resource: p.resource, result }
    }
}
