//! `/metrics`: the Prometheus text exposition, on the admin socket and on every token listener —
//! there only to administrators (the daemon's user, root, members of `admin_group`), since it
//! names every profile, resource and count; anyone else gets 403. Renders run one at a time, and
//! scrapes that arrive while one is under way take its result, so scraping in parallel cannot
//! cost more than one render at a time.
//!
//! Two sources: the request counters this crate keeps ([`ServerMetrics`]: token requests by
//! dialect, profile and status; refusals by reason) and what the engine knows (per-profile
//! cache, upstream and refresh counters, each cache entry's time to expiry), read at scrape
//! time. Recording is two lock-free lookups (`ArcSwap` snapshots, so cores do not contend on a
//! lock word) and one atomic add, with no allocation: label values are `&'static str` or a
//! profile name that is already configured (so clients cannot grow the label set), and the first
//! request of a new label combination copies the small table once, under a mutex.
//!
//! Labels never carry a secret or token: profile names, dialect names, resource strings (as the
//! client sent them) and error kinds only.

mod text;

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use azbroker_core::{FastMap, ProfileName, UPSTREAM_LATENCY_BUCKETS};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};

use crate::body;
use crate::routes::{Endpoint, RouteCtx};
use crate::runtime::Runtime;
use crate::state::AppState;
use text::Exposition;

/// Counters of the requests this crate served or refused.
#[derive(Debug, Default)]
pub(crate) struct ServerMetrics {
    /// Token requests that selected a profile, by profile, then (dialect, status).
    by_profile: ArcSwap<FastMap<ProfileName, Arc<RequestTally>>>,
    /// Serialises additions to `by_profile`.
    grow: Mutex<()>,
    /// Token requests refused before a profile was selected.
    unselected: RequestTally,
    /// Requests refused by the broker itself (guards, auth, bad parameters, selection), by reason.
    denials: Tally<&'static str>,
    /// The last exposition, shared by concurrent scrapes.
    rendered: Rendered,
}

impl ServerMetrics {
    /// Counts one token request.
    pub(crate) fn request(&self, dialect: &'static str, profile: Option<&ProfileName>, status: u16) {
        let Some(profile) = profile else {
            self.unselected.inc((dialect, status));
            return;
        };
        if let Some(t) = self.by_profile.load().get(profile.as_str()) {
            t.inc((dialect, status));
            return;
        }
        let _grow = lock(&self.grow);
        let mut next = FastMap::clone(&self.by_profile.load());
        let tally = next.entry(profile.clone()).or_default().clone();
        self.by_profile.store(Arc::new(next));
        tally.inc((dialect, status));
    }

    /// Counts one refusal (`reason` is the error kind).
    pub(crate) fn denial(&self, reason: &'static str) {
        self.denials.inc(reason);
    }
}

/// One profile's token requests by (dialect, HTTP status).
type RequestTally = Tally<(&'static str, u16)>;

/// Counters keyed by a small set of label values; a linear scan beats hashing here. Readers
/// take a snapshot of the list; a new key copies it (the counters themselves are shared).
#[derive(Debug)]
struct Tally<K> {
    entries: ArcSwap<Vec<(K, Arc<AtomicU64>)>>,
    grow: Mutex<()>,
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self { entries: ArcSwap::from_pointee(Vec::new()), grow: Mutex::new(()) }
    }
}

impl<K: Copy + PartialEq> Tally<K> {
    fn inc(&self, key: K) {
        if let Some((_, n)) = self.entries.load().iter().find(|(k, _)| *k == key) {
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _grow = lock(&self.grow);
        let current = self.entries.load_full();
        match current.iter().find(|(k, _)| *k == key) {
            Some((_, n)) => {
                n.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let mut next = Vec::clone(&current);
                next.push((key, Arc::new(AtomicU64::new(1))));
                self.entries.store(Arc::new(next));
            }
        }
    }

    fn values(&self) -> Vec<(K, u64)> {
        self.entries.load().iter().map(|(k, n)| (*k, n.load(Ordering::Relaxed))).collect()
    }
}

/// `GET /metrics` on a token listener: administrators only.
pub(crate) struct Metrics;

impl Endpoint for Metrics {
    async fn call(ctx: Arc<RouteCtx>, rt: Arc<Runtime>, req: Request) -> Response {
        let uid = crate::conn::caller(req.extensions()).map(|c| c.uid);
        if !is_admin(&ctx.app, &rt, uid).await {
            ctx.app.metrics().denial("metrics_forbidden");
            tracing::debug!(uid, "/metrics refused to a caller who is not an administrator");
            return body::error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "/metrics is served to the daemon's user, root and members of admin_group only (or on the admin socket)",
            );
        }
        response(&ctx.app).await
    }
}

/// The daemon's user, root, or a member of the runtime's `admin_group`.
async fn is_admin(app: &AppState, rt: &Runtime, uid: Option<u32>) -> bool {
    let Some(uid) = uid else { return false };
    if uid == 0 || uid == own_uid() {
        return true;
    }
    match rt.admin_gid() {
        Some(gid) => app.groups().of(uid).await.contains(&gid),
        None => false,
    }
}

/// This process's effective uid (the owner of `/proc/self`).
fn own_uid() -> u32 {
    static UID: OnceLock<u32> = OnceLock::new();
    *UID.get_or_init(|| std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX))
}

/// The last exposition and when its render started: scrapes that arrived before then reuse it.
#[derive(Debug, Default)]
pub(crate) struct Rendered(tokio::sync::Mutex<Option<(Instant, Bytes)>>);

/// The exposition as an HTTP response (also served by the admin API).
pub(crate) async fn response(app: &AppState) -> Response {
    let arrived = Instant::now();
    let text = {
        let mut last = app.metrics().rendered.0.lock().await;
        match &*last {
            Some((started, text)) if *started >= arrived => text.clone(),
            _ => {
                let started = Instant::now();
                let text = Bytes::from(render(app));
                *last = Some((started, text.clone()));
                text
            }
        }
    };
    let mut response = Response::new(Body::from(text));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(text::CONTENT_TYPE));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    *response.status_mut() = StatusCode::OK;
    response
}

/// Every metric, in the text format.
pub fn render(app: &AppState) -> String {
    let engine = app.engine();
    let rt = app.runtime();
    let profiles = engine.metrics();
    let entries = engine.entries();
    let mut e = Exposition::with_capacity(4096 + 512 * profiles.len() + 160 * entries.len());

    e.family("azbroker_build_info", "gauge", "Always 1; the version is a label.");
    e.sample("azbroker_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    e.family("azbroker_ready", "gauge", "1 once listeners are bound and the config is loaded.");
    e.sample("azbroker_ready", &[], u8::from(app.is_ready()));

    requests(&mut e, app.metrics());

    e.family(
        "azbroker_cache_requests_total",
        "counter",
        "Token lookups by outcome: hit, miss (this request called upstream), coalesced (waited for a call under way), stale (upstream failing, an older valid token served).",
    );
    for p in &profiles {
        let name = p.profile.as_str();
        for (result, n) in
            [("hit", p.hits), ("miss", p.misses), ("coalesced", p.coalesced), ("stale", p.stale)]
        {
            e.sample("azbroker_cache_requests_total", &[("profile", name), ("result", result)], n);
        }
    }
    e.family("azbroker_cache_entries", "gauge", "Cached (profile, resource) entries.");
    e.sample("azbroker_cache_entries", &[], entries.len());
    e.family(
        "azbroker_token_expiry_seconds",
        "gauge",
        "Seconds until the cached token of each entry expires.",
    );
    for entry in &entries {
        if let Some(secs) = entry.expires_in_secs {
            let labels = [("profile", entry.profile.as_str()), ("resource", entry.resource.as_str())];
            e.sample("azbroker_token_expiry_seconds", &labels, secs);
        }
    }

    e.family("azbroker_upstream_requests_total", "counter", "Token requests sent upstream.");
    for p in &profiles {
        e.sample("azbroker_upstream_requests_total", &[("profile", p.profile.as_str())], p.upstream_requests);
    }
    e.family("azbroker_upstream_errors_total", "counter", "Failed upstream token requests by error kind.");
    for p in &profiles {
        for (kind, n) in &p.upstream_errors {
            e.sample("azbroker_upstream_errors_total", &[("profile", p.profile.as_str()), ("kind", kind)], n);
        }
    }
    e.family(
        "azbroker_upstream_request_duration_seconds",
        "histogram",
        "Time taken by upstream token requests.",
    );
    for p in &profiles {
        let l = &p.upstream_latency;
        let labels = [("profile", p.profile.as_str())];
        e.histogram(
            "azbroker_upstream_request_duration_seconds",
            &labels,
            &UPSTREAM_LATENCY_BUCKETS,
            &l.cumulative,
            l.sum_secs,
        );
    }
    e.family("azbroker_refreshes_total", "counter", "Background refreshes ahead of expiry (and retries).");
    e.family("azbroker_refresh_failures_total", "counter", "Background refreshes that failed.");
    for p in &profiles {
        let labels = [("profile", p.profile.as_str())];
        e.sample("azbroker_refreshes_total", &labels, p.refreshes);
        e.sample("azbroker_refresh_failures_total", &labels, p.refresh_failures);
    }

    e.family(
        "azbroker_profile_needs_attention",
        "gauge",
        "1 when the profile's latest upstream call failed in a way only a person can fix (sign in again, fix the secret).",
    );
    for p in &profiles {
        e.sample(
            "azbroker_profile_needs_attention",
            &[("profile", p.profile.as_str())],
            u8::from(p.needs_attention),
        );
    }
    e.family(
        "azbroker_logins_needing_attention",
        "gauge",
        "Logins (credential sources) with at least one profile needing attention.",
    );
    let mut sources: Vec<*const ()> = profiles
        .iter()
        .filter(|p| p.needs_attention)
        .filter_map(|p| rt.profiles().get(p.profile.as_str()))
        .map(|b| Arc::as_ptr(&b.source).cast::<()>())
        .collect();
    sources.sort_unstable();
    sources.dedup();
    e.sample("azbroker_logins_needing_attention", &[], sources.len());
    e.finish()
}

fn requests(e: &mut Exposition, m: &ServerMetrics) {
    e.family(
        "azbroker_requests_total",
        "counter",
        "Token requests by dialect, profile (empty when none was selected) and HTTP status.",
    );
    let by_profile = m.by_profile.load_full();
    let mut names: Vec<&ProfileName> = by_profile.keys().collect();
    names.sort();
    let rows = names
        .into_iter()
        .flat_map(|p| by_profile[p.as_str()].values().into_iter().map(move |v| (p.as_str(), v)))
        .chain(m.unselected.values().into_iter().map(|v| ("", v)));
    for (profile, ((dialect, code), n)) in rows {
        let status = code.to_string();
        let labels = [("dialect", dialect), ("profile", profile), ("status", status.as_str())];
        e.sample("azbroker_requests_total", &labels, n);
    }
    drop(by_profile);
    e.family(
        "azbroker_denials_total",
        "counter",
        "Requests the broker refused itself (guards, authentication, parameters, selection), by reason.",
    );
    for (reason, n) in m.denials.values() {
        e.sample("azbroker_denials_total", &[("reason", reason)], n);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
