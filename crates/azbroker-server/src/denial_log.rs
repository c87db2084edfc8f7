//! Rate limit on denial warnings — token requests refused by policy, and admin-socket requests
//! refused to their peer: per (uid, reason), the first [`BURST`] denials of a [`WINDOW`] are
//! written; the rest are only counted, and the first denial after the window brings one summary
//! line with that count. A user with no profile who floods the broker (or its admin socket) thus
//! costs a few lines per window, not one per request.
//!
//! Memory is bounded: at most [`MAX_KEYS`] (uid, reason) pairs are tracked; when the table is
//! full, pairs whose window has passed are dropped, and if every pair is still live the newcomer
//! is counted in one shared overflow slot. Only denials reach this module: a granted request
//! never touches it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Denials written per (uid, reason) and window.
pub(crate) const BURST: u32 = 3;
/// How long a (uid, reason) window lasts.
pub(crate) const WINDOW: Duration = Duration::from_secs(5);
/// Most (uid, reason) pairs tracked at once.
const MAX_KEYS: usize = 1024;

/// What to do with one denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write it; `suppressed` denials of the same key went unwritten in the previous window.
    Log { suppressed: u64 },
    /// Count it only.
    Suppress,
}

type Key = (Option<u32>, &'static str);

/// Where denials are counted while the table is full of live pairs.
const OVERFLOW: Key = (None, "overflow");

/// The summary line: `suppressed` denials of (`uid`, `reason`) were not written.
pub(crate) fn summarise(uid: Option<u32>, reason: &'static str, suppressed: u64) {
    tracing::warn!(
        uid,
        reason,
        suppressed,
        "{suppressed} more denials suppressed (same uid and reason, within {}s)",
        WINDOW.as_secs()
    );
}

#[derive(Debug, Default)]
pub(crate) struct DenialLog {
    windows: Mutex<HashMap<Key, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    written: u32,
    suppressed: u64,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self { started: now, written: 1, suppressed: 0 }
    }
}

impl DenialLog {
    /// Records one denial and says whether to write its warning; writes the summary of the
    /// window before first, when it suppressed any.
    pub(crate) fn should_log(&self, uid: Option<u32>, reason: &'static str, now: Instant) -> bool {
        match self.record(uid, reason, now) {
            Verdict::Log { suppressed } => {
                if suppressed > 0 {
                    summarise(uid, reason, suppressed);
                }
                true
            }
            Verdict::Suppress => false,
        }
    }

    /// Records one denial of `uid` for `reason` at `now`. Writes the summary of any pair it
    /// drops to make room.
    pub(crate) fn record(&self, uid: Option<u32>, reason: &'static str, now: Instant) -> Verdict {
        // Allocates only when a full table drops pairs that have a count to report.
        let mut dropped = Vec::new();
        let verdict = {
            let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
            if !windows.contains_key(&(uid, reason)) && windows.len() >= MAX_KEYS {
                windows.retain(|key, w| {
                    let live = now.duration_since(w.started) < WINDOW;
                    if !live && w.suppressed > 0 {
                        dropped.push((*key, w.suppressed));
                    }
                    live
                });
            }
            if !windows.contains_key(&(uid, reason)) && windows.len() >= MAX_KEYS {
                // Every tracked pair is live: the newcomer is counted in the shared overflow slot.
                Self::step(windows.entry(OVERFLOW).or_insert(Window::new(now)), now)
            } else {
                match windows.get_mut(&(uid, reason)) {
                    Some(w) => Self::step(w, now),
                    None => {
                        windows.insert((uid, reason), Window::new(now));
                        Verdict::Log { suppressed: 0 }
                    }
                }
            }
        };
        for ((uid, reason), suppressed) in dropped {
            summarise(uid, reason, suppressed);
        }
        verdict
    }

    fn step(w: &mut Window, now: Instant) -> Verdict {
        if now.duration_since(w.started) >= WINDOW {
            let suppressed = w.suppressed;
            *w = Window::new(now);
            return Verdict::Log { suppressed };
        }
        if w.written < BURST {
            w.written += 1;
            return Verdict::Log { suppressed: 0 };
        }
        w.suppressed += 1;
        Verdict::Suppress
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_written_the_rest_counted_and_summarised_after_the_window() {
        let log = DenialLog::default();
        let t0 = Instant::now();
        let verdicts: Vec<Verdict> = (0..100).map(|_| log.record(Some(1000), "user", t0)).collect();
        let written = verdicts.iter().filter(|v| matches!(v, Verdict::Log { .. })).count();
        assert_eq!(written, BURST as usize);
        // Another reason, and another uid, have windows of their own.
        assert_eq!(log.record(Some(1000), "resource", t0), Verdict::Log { suppressed: 0 });
        assert_eq!(log.record(Some(1001), "user", t0), Verdict::Log { suppressed: 0 });
        assert_eq!(log.record(Some(1000), "user", t0 + WINDOW / 2), Verdict::Suppress);
        assert_eq!(
            log.record(Some(1000), "user", t0 + WINDOW),
            Verdict::Log { suppressed: 100 - BURST as u64 + 1 }
        );
        assert_eq!(log.record(Some(1000), "user", t0 + WINDOW), Verdict::Log { suppressed: 0 });
    }

    #[test]
    fn the_table_stays_bounded_under_many_uids() {
        let log = DenialLog::default();
        let t0 = Instant::now();
        for uid in 0..(MAX_KEYS as u32 * 3) {
            log.record(Some(uid), "user", t0);
        }
        assert!(log.tracked() <= MAX_KEYS + 1, "{}", log.tracked());
        // Past the window, old pairs make room for new ones.
        assert_eq!(log.record(Some(u32::MAX - 1), "user", t0 + WINDOW), Verdict::Log { suppressed: 0 });
        assert!(log.tracked() <= MAX_KEYS + 1);
    }
}
