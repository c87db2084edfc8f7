//! The bounds on open connections — one for the listener, one per local user — enforced without
//! ever waiting: a newcomer over a bound takes the place of the connection idle the longest
//! (connected but not in a request, including one still dribbling its request head or its TLS
//! handshake) — among its own user's connections when that user is at its share, among all
//! otherwise — and when every candidate is busy the newcomer is refused at once ([`Refused`]),
//! so the accept loop never stops and one user can never hold every place.
//!
//! Marking a request in flight and idle again happens on every request, so it touches only the
//! connection's own atomics: no lock, no clock read (idleness is ordered by a logical tick).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Whose share a connection counts against: its local user, or — when the kernel could not say
/// (another host, a failed lookup) — its peer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    Uid(u32),
    Unknown(IpAddr),
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its owner already has its share of connections, all of them in a request.
    OwnerFull,
    /// The listener has its bound of connections, all of them in a request.
    Full,
}

/// Open connections and their activity.
pub(crate) struct Connections {
    max: usize,
    per_owner: usize,
    state: Mutex<State>,
    /// Logical clock: a connection that became idle at a smaller tick has been idle longer.
    tick: AtomicU64,
}

/// What a connection's requests update.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// The tick at which it last became idle (or was admitted).
    idle_since: AtomicU64,
}

#[derive(Default)]
struct State {
    next_id: u64,
    open: HashMap<u64, Entry>,
    /// Entries told to close that have not closed yet (counted against no bound).
    evicting: usize,
    /// Connections per owner, evicting ones not included.
    owned: HashMap<Owner, usize>,
}

struct Entry {
    owner: Owner,
    close: CancellationToken,
    activity: Arc<Activity>,
    evicted: bool,
}

/// One admitted connection; dropping it frees its place.
pub(crate) struct Admission {
    id: u64,
    conns: Arc<Connections>,
    activity: Arc<Activity>,
    /// Cancelled when this connection should finish its current request and close.
    pub(crate) close: CancellationToken,
}

impl Connections {
    /// At most `max` connections, at most `per_owner` of them one owner's.
    pub(crate) fn new(max: usize, per_owner: usize) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            max,
            per_owner: per_owner.clamp(1, max),
            state: Mutex::default(),
            tick: AtomicU64::new(0),
        })
    }

    /// A place for `owner`'s new connection, now or never: the longest-idle connection of the
    /// owner (at its share) or of anyone (at the listener's bound) is closed to make room; with
    /// no idle one to close, the newcomer is refused. `shutdown`'s children are the
    /// per-connection close tokens.
    pub(crate) fn admit(
        self: &Arc<Self>,
        owner: Owner,
        shutdown: &CancellationToken,
    ) -> Result<Admission, Refused> {
        let mut st = self.lock();
        if st.owned.get(&owner).copied().unwrap_or(0) >= self.per_owner {
            st.evict_idlest(|e| e.owner == owner).ok_or(Refused::OwnerFull)?;
            tracing::debug!(?owner, "per-user connection share reached; closing its longest-idle connection");
        } else if st.open.len() - st.evicting >= self.max {
            st.evict_idlest(|_| true).ok_or(Refused::Full)?;
            tracing::debug!(
                open = st.open.len(),
                "connection limit reached; closing the longest-idle connection"
            );
        }
        let id = st.next_id;
        st.next_id += 1;
        let close = shutdown.child_token();
        let activity = Arc::new(Activity::default());
        activity.idle_since.store(self.tick.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
        st.open.insert(id, Entry { owner, close: close.clone(), activity: activity.clone(), evicted: false });
        *st.owned.entry(owner).or_default() += 1;
        Ok(Admission { id, conns: self.clone(), activity, close })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().open.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Tells the longest-idle connection among those `eligible` to close; `None` when every one
    /// is in a request.
    fn evict_idlest(&mut self, eligible: impl Fn(&Entry) -> bool) -> Option<()> {
        let victim = self
            .open
            .values_mut()
            .filter(|e| !e.evicted && e.activity.in_flight.load(Ordering::SeqCst) == 0 && eligible(e))
            .min_by_key(|e| e.activity.idle_since.load(Ordering::SeqCst))?;
        victim.evicted = true;
        victim.close.cancel();
        let owner = victim.owner;
        self.evicting += 1;
        self.forget_owned(owner);
        Some(())
    }

    fn forget_owned(&mut self, owner: Owner) {
        if let Some(n) = self.owned.get_mut(&owner) {
            *n -= 1;
            if *n == 0 {
                self.owned.remove(&owner);
            }
        }
    }
}

impl Admission {
    /// True when no request is in flight on this connection.
    pub(crate) fn is_idle(&self) -> bool {
        self.activity.in_flight.load(Ordering::SeqCst) == 0
    }

    /// Marks a request in flight until the guard drops.
    pub(crate) fn busy(&self) -> Busy<'_> {
        self.activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy { admission: self }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut st = self.conns.lock();
        if let Some(e) = st.open.remove(&self.id) {
            if e.evicted {
                st.evicting -= 1;
            } else {
                st.forget_owned(e.owner);
            }
        }
    }
}

/// A request in flight on one connection.
pub(crate) struct Busy<'a> {
    admission: &'a Admission,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let Admission { activity, conns, .. } = self.admission;
        if activity.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            activity.idle_since.store(conns.tick.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Owner = Owner::Uid(1000);
    const B: Owner = Owner::Uid(1001);

    #[test]
    fn the_longest_idle_connection_makes_room() {
        let conns = Connections::new(2, 2);
        let shutdown = CancellationToken::new();
        let a = conns.admit(A, &shutdown).unwrap();
        let b = conns.admit(B, &shutdown).unwrap();
        let c = conns.admit(B, &shutdown).unwrap();
        assert!(a.close.is_cancelled(), "the oldest idle one is told to close");
        assert!(!b.close.is_cancelled() && !c.close.is_cancelled());
        drop(a);
        assert_eq!(conns.open(), 2);
    }

    #[test]
    fn busy_connections_are_never_evicted_and_a_newcomer_is_refused_at_once() {
        let conns = Connections::new(1, 1);
        let shutdown = CancellationToken::new();
        let a = conns.admit(A, &shutdown).unwrap();
        let busy = a.busy();
        assert_eq!(conns.admit(B, &shutdown).err(), Some(Refused::Full));
        assert!(!a.close.is_cancelled());
        drop(busy); // now idle → evictable
        let b = conns.admit(B, &shutdown).unwrap();
        assert!(a.close.is_cancelled());
        assert!(!b.close.is_cancelled());
    }

    #[test]
    fn one_owner_never_takes_more_than_its_share() {
        let conns = Connections::new(10, 2);
        let shutdown = CancellationToken::new();
        let a1 = conns.admit(A, &shutdown).unwrap();
        let a2 = conns.admit(A, &shutdown).unwrap();
        let (_b1, _b2) = (a1.busy(), a2.busy());
        assert_eq!(conns.admit(A, &shutdown).err(), Some(Refused::OwnerFull), "all of A's are busy");
        let b = conns.admit(B, &shutdown).expect("another owner still gets in");
        drop(_b1);
        // At its share, A's own idle connection makes room, not B's.
        let a3 = conns.admit(A, &shutdown).unwrap();
        assert!(a1.close.is_cancelled() && !b.close.is_cancelled() && !a3.close.is_cancelled());
        drop(a1);
        assert_eq!(conns.open(), 4 - 1);
    }
}
