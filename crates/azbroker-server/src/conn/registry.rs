//! The bound on open connections, enforced without letting idle connections starve real clients:
//! when the bound is reached, the connection idle the longest (connected but not in a request —
//! including one still dribbling its request head) is closed to make room; only when every
//! connection is busy does a new one wait.
//!
//! Marking a request in flight and idle again happens on every request, so it touches only the
//! connection's own atomics: no lock, no clock read (idleness is ordered by a logical tick), and
//! no wake-up unless an admission is waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Open connections and their activity.
pub(crate) struct Connections {
    max: usize,
    state: Mutex<State>,
    changed: Notify,
    /// Logical clock: a connection that became idle at a smaller tick has been idle longer.
    tick: AtomicU64,
    /// Admissions waiting for a connection to become idle (or close).
    waiting: AtomicUsize,
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
    /// Entries told to close that have not closed yet (not counted against `max`).
    evicting: usize,
}

struct Entry {
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
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            state: Mutex::default(),
            changed: Notify::new(),
            tick: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
        })
    }

    /// A place for a new connection, evicting the longest-idle one if the bound is reached.
    /// `shutdown`'s children are the per-connection close tokens.
    pub(crate) async fn admit(self: &Arc<Self>, shutdown: &CancellationToken) -> Admission {
        // Counted before the first look at the connections, so a request that ends after that
        // look sees it and wakes this admission (and also when this future is dropped).
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(a) = self.try_admit(shutdown) {
                return a;
            }
            notified.await;
        }
    }

    fn try_admit(self: &Arc<Self>, shutdown: &CancellationToken) -> Option<Admission> {
        let mut st = self.lock();
        if st.open.len() - st.evicting >= self.max {
            let victim = st
                .open
                .values_mut()
                .filter(|e| e.activity.in_flight.load(Ordering::SeqCst) == 0 && !e.evicted)
                .min_by_key(|e| e.activity.idle_since.load(Ordering::SeqCst))?;
            victim.evicted = true;
            victim.close.cancel();
            st.evicting += 1;
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
        st.open.insert(id, Entry { close: close.clone(), activity: activity.clone(), evicted: false });
        Some(Admission { id, conns: self.clone(), activity, close })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.lock().open.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
        if let Some(e) = st.open.remove(&self.id)
            && e.evicted
        {
            st.evicting -= 1;
        }
        drop(st);
        self.conns.changed.notify_waiters();
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
            if conns.waiting.load(Ordering::SeqCst) > 0 {
                conns.changed.notify_waiters();
            }
        }
    }
}

/// Un-counts a waiting admission when it ends (admitted or dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_idle_connection_makes_room() {
        let conns = Connections::new(2);
        let shutdown = CancellationToken::new();
        let a = conns.admit(&shutdown).await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let b = conns.admit(&shutdown).await;
        let c = conns.admit(&shutdown).await;
        assert!(a.close.is_cancelled(), "the oldest idle one is told to close");
        assert!(!b.close.is_cancelled() && !c.close.is_cancelled());
        drop(a);
        assert_eq!(conns.open(), 2);
    }

    #[tokio::test]
    async fn busy_connections_are_never_evicted_and_a_newcomer_waits_for_one() {
        let conns = Connections::new(1);
        let shutdown = CancellationToken::new();
        let a = conns.admit(&shutdown).await;
        let busy = a.busy();
        let conns2 = conns.clone();
        let s2 = shutdown.clone();
        let waiting = tokio::spawn(async move { conns2.admit(&s2).await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no idle connection to evict: wait");
        assert!(!a.close.is_cancelled());
        drop(busy); // now idle → evictable
        let b = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(a.close.is_cancelled());
        assert!(!b.close.is_cancelled());
    }
}
