//! The engine's per-profile counters: cache outcomes, upstream calls with their latency and
//! errors by kind, refreshes, and each profile's last upstream error — read at scrape time.
//!
//! Cost on the request path is one relaxed atomic add: every cache slot holds an `Arc` of its
//! profile's [`ProfileCounters`], resolved once when the slot is created. Upstream calls (rare)
//! also take a short mutex for the error tally. Nothing here formats output; `azbroker-server`
//! renders the Prometheus text, the admin API the status JSON. No value here is a secret: error
//! messages are [`UpstreamError`]'s own `Display`, which never contains a token or secret.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::error::UpstreamError;
use crate::names::ProfileName;
use crate::token::unix_now;

/// Upper bounds (seconds) of the upstream latency histogram buckets; `+Inf` is implied.
pub const UPSTREAM_LATENCY_BUCKETS: [f64; 12] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Counters of one profile since it was first configured (they survive reloads and evictions,
/// so they only ever grow).
#[derive(Debug, Default)]
pub(crate) struct ProfileCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) upstream_requests: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) refresh_failures: AtomicU64,
    /// Non-cumulative counts per bucket of [`UPSTREAM_LATENCY_BUCKETS`], the last one `+Inf`.
    latency_buckets: [AtomicU64; UPSTREAM_LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    outcomes: Mutex<Outcomes>,
}

#[derive(Debug, Default)]
struct Outcomes {
    errors: Vec<(&'static str, u64)>,
    last_error: Option<LastError>,
    last_success_unix: Option<u64>,
    /// The latest call failed in a way only a person can fix.
    attention: bool,
}

/// The most recent upstream failure of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// [`UpstreamError::kind`].
    pub kind: &'static str,
    pub message: String,
    /// Wall-clock time of the failure, Unix seconds.
    pub at_unix: u64,
    /// Someone must act on the login (sign in again, fix the secret); waiting will not help.
    pub needs_attention: bool,
}

impl ProfileCounters {
    /// Records one finished upstream call.
    pub(crate) fn upstream_finished<T>(&self, elapsed: Duration, result: &Result<T, UpstreamError>) {
        let secs = elapsed.as_secs_f64();
        let bucket = UPSTREAM_LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(UPSTREAM_LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let mut o = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(_) => {
                o.last_success_unix = Some(unix_now());
                o.attention = false;
            }
            Err(err) => {
                o.attention = needs_attention(err);
                let kind = err.kind();
                match o.errors.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, n)) => *n += 1,
                    None => o.errors.push((kind, 1)),
                }
                o.last_error = Some(LastError {
                    kind,
                    message: err.to_string(),
                    at_unix: unix_now(),
                    needs_attention: needs_attention(err),
                });
            }
        }
    }

    fn snapshot(&self, profile: &ProfileName) -> ProfileMetrics {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let o = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut errors = o.errors.clone();
        errors.sort_unstable();
        let mut cumulative = 0;
        let buckets = self
            .latency_buckets
            .iter()
            .map(|b| {
                cumulative += load(b);
                cumulative
            })
            .collect();
        ProfileMetrics {
            profile: profile.clone(),
            hits: load(&self.hits),
            misses: load(&self.misses),
            coalesced: load(&self.coalesced),
            stale: load(&self.stale),
            upstream_requests: load(&self.upstream_requests),
            upstream_errors: errors,
            refreshes: load(&self.refreshes),
            refresh_failures: load(&self.refresh_failures),
            upstream_latency: LatencySnapshot {
                cumulative: buckets,
                sum_secs: load(&self.latency_sum_micros) as f64 / 1e6,
            },
            needs_attention: o.attention,
            last_error: o.last_error.clone(),
            last_success_unix: o.last_success_unix,
        }
    }
}

/// Errors only a person can fix: the credential itself is refused or missing.
fn needs_attention(err: &UpstreamError) -> bool {
    matches!(
        err,
        UpstreamError::InvalidGrant { .. }
            | UpstreamError::InteractionRequired { .. }
            | UpstreamError::InvalidClient { .. }
            | UpstreamError::LoginRequired { .. }
            | UpstreamError::Config(_)
    )
}

/// One profile's counters at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileMetrics {
    pub profile: ProfileName,
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub stale: u64,
    pub upstream_requests: u64,
    /// `(UpstreamError::kind, count)`, sorted by kind.
    pub upstream_errors: Vec<(&'static str, u64)>,
    pub refreshes: u64,
    pub refresh_failures: u64,
    pub upstream_latency: LatencySnapshot,
    /// The latest upstream call failed in a way only a person can fix, and none succeeded since.
    pub needs_attention: bool,
    pub last_error: Option<LastError>,
    pub last_success_unix: Option<u64>,
}

/// The upstream latency histogram of one profile.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySnapshot {
    /// Cumulative counts for each bound of [`UPSTREAM_LATENCY_BUCKETS`], then `+Inf` (= count).
    pub cumulative: Vec<u64>,
    pub sum_secs: f64,
}

impl LatencySnapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

/// Every profile's counters, keyed by profile name.
#[derive(Debug, Default)]
pub(crate) struct EngineMetrics {
    profiles: Mutex<HashMap<ProfileName, Arc<ProfileCounters>>>,
}

impl EngineMetrics {
    /// The counters of `profile`, created on first use (when its first cache slot is made).
    pub(crate) fn profile(&self, profile: &ProfileName) -> Arc<ProfileCounters> {
        self.lock().entry(profile.clone()).or_default().clone()
    }

    /// Forgets the counters of profiles that are no longer configured.
    pub(crate) fn retain(&self, keep: impl Fn(&ProfileName) -> bool) {
        self.lock().retain(|name, _| keep(name));
    }

    /// A snapshot of every profile that has counters, sorted by name.
    pub(crate) fn snapshot(&self) -> Vec<ProfileMetrics> {
        let profiles: Vec<_> = self.lock().iter().map(|(n, c)| (n.clone(), c.clone())).collect();
        let mut out: Vec<_> = profiles.iter().map(|(n, c)| c.snapshot(n)).collect();
        out.sort_by(|a, b| a.profile.cmp(&b.profile));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProfileName, Arc<ProfileCounters>>> {
        self.profiles.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ProfileName {
        ProfileName::parse(s).unwrap()
    }

    #[test]
    fn latency_lands_in_cumulative_buckets() {
        let m = EngineMetrics::default();
        let c = m.profile(&name("p"));
        c.upstream_finished::<()>(Duration::from_millis(5), &Ok(()));
        c.upstream_finished::<()>(Duration::from_millis(300), &Ok(()));
        c.upstream_finished::<()>(Duration::from_secs(120), &Err(UpstreamError::Timeout));
        let s = &m.snapshot()[0];
        let l = &s.upstream_latency;
        assert_eq!(l.cumulative.len(), UPSTREAM_LATENCY_BUCKETS.len() + 1);
        assert_eq!(l.cumulative[0], 1, "5 ms <= 10 ms");
        assert_eq!(l.cumulative[4], 1, "300 ms > 250 ms");
        assert_eq!(l.cumulative[5], 2, "300 ms <= 500 ms");
        assert_eq!(l.cumulative[UPSTREAM_LATENCY_BUCKETS.len() - 1], 2, "120 s only in +Inf");
        assert_eq!(l.count(), 3);
        assert!((l.sum_secs - 120.305).abs() < 1e-6, "{}", l.sum_secs);
        assert_eq!(s.upstream_errors, vec![("timeout", 1)]);
    }

    #[test]
    fn attention_follows_the_latest_outcome() {
        let m = EngineMetrics::default();
        let c = m.profile(&name("p"));
        let grant = UpstreamError::InvalidGrant { codes: vec![70008], description: "expired".into() };
        c.upstream_finished::<()>(Duration::ZERO, &Err(grant));
        let s = &m.snapshot()[0];
        assert!(s.needs_attention);
        assert_eq!(s.last_error.as_ref().unwrap().kind, "invalid_grant");
        // A transient error is recorded but needs nobody's attention.
        c.upstream_finished::<()>(Duration::ZERO, &Err(UpstreamError::Network("reset".into())));
        assert!(!m.snapshot()[0].needs_attention);
        assert_eq!(m.snapshot()[0].upstream_errors, vec![("invalid_grant", 1), ("network", 1)]);
    }

    #[test]
    fn removed_profiles_are_forgotten_and_the_rest_kept() {
        let m = EngineMetrics::default();
        m.profile(&name("a")).hits.fetch_add(2, Ordering::Relaxed);
        m.profile(&name("b"));
        m.retain(|n| n.as_str() == "a");
        let s = m.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].profile.as_str(), s[0].hits), ("a", 2));
    }
}
