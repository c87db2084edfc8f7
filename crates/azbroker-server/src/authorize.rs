//! The access decision for a token request, once its profile is known: the caller's uid against
//! the profile's users (and groups), the resource against its allow-list, then the optional
//! per-uid rate limit — all before the engine is asked, so a refused request never causes an
//! upstream call.
//!
//! The rules live in `azbroker_core::policy`; this module only gathers what they need (the
//! caller's groups, looked up through the resolver the binary installs, off the runtime threads
//! and cached briefly).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use azbroker_core::{Caller, Denial, ProfileName, Requester, Resource};
use tokio::time::Instant;

use crate::error::RequestError;
use crate::runtime::Runtime;
use crate::state::AppState;

/// Who is asking: a remote requester is a peer that is neither loopback (nor the link-local IMDS
/// address on that listener) and whose local user is unknown — a peer on this machine whose user
/// the kernel reported counts as local whatever its address. `with_secret`: the request passed
/// its dialect's secret check.
pub(crate) fn requester<'a>(
    caller: Option<&'a Caller>,
    extensions: &http::Extensions,
    link_local: bool,
    with_secret: bool,
) -> Requester<'a> {
    let remote = caller.is_none()
        && crate::guard::peer_of(extensions)
            .is_some_and(|peer| !crate::guard::is_local_peer(peer.ip(), link_local));
    if remote { Requester::Remote { with_secret } } else { Requester::Local(caller) }
}

/// Finds a uid's groups (primary first). Blocking is fine: it runs on the blocking pool.
pub type GroupResolver = Arc<dyn Fn(u32) -> Vec<u32> + Send + Sync>;

/// How long a uid's group list is reused.
const GROUPS_TTL: Duration = Duration::from_secs(60);
/// Bound on cached uids.
const MAX_CACHED: usize = 4096;

/// Decides whether `requester` may have a token of `profile` for `resource`, by the policy of
/// generation `rt`.
pub(crate) async fn authorize(
    app: &AppState,
    rt: &Runtime,
    profile: &ProfileName,
    requester: Requester<'_>,
    resource: &Resource,
) -> Result<(), RequestError> {
    let policy = rt.policy();
    let caller = match requester {
        Requester::Local(caller) => caller,
        Requester::Remote { .. } => None,
    };
    // A personal profile serves its owner's uid and nobody else, whatever the policy says.
    if let Some(owner) = rt.directory().owner(profile)
        && caller.map(|c| c.uid) != Some(owner)
    {
        let denial = match caller {
            Some(c) => Denial::User { uid: c.uid, profile: profile.clone() },
            None => Denial::UnknownCaller,
        };
        return Err(RequestError::Denied(denial));
    }
    // Only a policy with group rules for this profile costs a lookup; otherwise no allocation.
    let looked_up = match caller {
        Some(c) if policy.needs_groups(profile.as_str(), c.uid) => Some(app.groups().of(c.uid).await),
        _ => None,
    };
    let groups: &[u32] = looked_up.as_deref().unwrap_or(&[]);
    policy.check_requester(profile, requester, groups).map_err(RequestError::Denied)?;
    policy.check_resource(profile, resource).map_err(RequestError::Denied)?;
    if let Some(limiter) = rt.rate_limiter() {
        limiter
            .check(caller.map(|c| c.uid))
            .map_err(|secs| RequestError::RateLimited { retry_after_secs: secs })?;
    }
    Ok(())
}

/// Before any body is read: may `requester` use at least one profile of generation `rt`? A caller
/// no profile serves is refused from its request head, so it cannot hold a connection dribbling
/// a body it would be refused for anyway. The refusal is the denial for the first profile that
/// refused it; no profile at all is left to the full decision.
pub(crate) async fn may_use_some_profile(
    app: &AppState,
    rt: &Runtime,
    requester: Requester<'_>,
) -> Result<(), RequestError> {
    let policy = rt.policy();
    let caller = match requester {
        Requester::Local(caller) => caller,
        Requester::Remote { .. } => None,
    };
    let mut groups: Option<Arc<[u32]>> = None;
    let mut refused = None;
    for profile in rt.profiles().keys() {
        if let Some(c) = caller
            && groups.is_none()
            && policy.needs_groups(profile.as_str(), c.uid)
        {
            groups = Some(app.groups().of(c.uid).await);
        }
        match policy.check_requester(profile, requester, groups.as_deref().unwrap_or(&[])) {
            Ok(()) => return Ok(()),
            Err(denial) => {
                refused.get_or_insert(denial);
            }
        }
    }
    refused.map_or(Ok(()), |denial| Err(RequestError::Denied(denial)))
}

/// A uid's groups and when they were looked up.
type Cached = (Arc<[u32]>, Instant);

/// uid → groups, through the installed resolver.
#[derive(Default)]
pub(crate) struct GroupCache {
    resolver: RwLock<Option<GroupResolver>>,
    cache: Mutex<HashMap<u32, Cached>>,
}

impl GroupCache {
    pub(crate) fn set_resolver(&self, resolver: GroupResolver) {
        *self.resolver.write().unwrap_or_else(PoisonError::into_inner) = Some(resolver);
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// The groups of `uid`; empty when no resolver is installed or the lookup fails.
    pub(crate) async fn of(&self, uid: u32) -> Arc<[u32]> {
        let now = Instant::now();
        if let Some((groups, at)) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&uid)
            && now.duration_since(*at) < GROUPS_TTL
        {
            return groups.clone();
        }
        let Some(resolver) = self.resolver.read().unwrap_or_else(PoisonError::into_inner).clone() else {
            return Arc::from([]);
        };
        let groups: Arc<[u32]> = tokio::task::spawn_blocking(move || resolver(uid))
            .await
            .map(Arc::from)
            .unwrap_or_else(|_| Arc::from([]));
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (_, at)| now.duration_since(*at) < GROUPS_TTL);
        }
        cache.insert(uid, (groups.clone(), now));
        groups
    }
}
