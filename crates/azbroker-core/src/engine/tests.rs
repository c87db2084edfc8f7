//! Engine behaviour under paused time with a scripted source.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::secret::Secret;
use crate::source::BoxFuture;

struct FakeSource {
    /// Tells tokens of different sources apart.
    id: u64,
    calls: AtomicU64,
    lifetime: Mutex<Duration>,
    latency: Duration,
    failing: AtomicBool,
    error: Mutex<UpstreamError>,
}

impl FakeSource {
    fn new(lifetime: Duration, latency: Duration) -> Arc<Self> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            calls: AtomicU64::new(0),
            lifetime: Mutex::new(lifetime),
            latency,
            failing: AtomicBool::new(false),
            error: Mutex::new(UpstreamError::Unavailable { status: 503, retry_after: None }),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn fail_with(&self, err: Option<UpstreamError>) {
        match err {
            Some(e) => {
                *self.error.lock().unwrap() = e;
                self.failing.store(true, Ordering::SeqCst);
            }
            None => self.failing.store(false, Ordering::SeqCst),
        }
    }
}

impl TokenSource for FakeSource {
    fn fetch<'a>(&'a self, req: &'a FetchRequest) -> BoxFuture<'a, Result<AccessToken, UpstreamError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.latency).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(self.error.lock().unwrap().clone());
            }
            let lifetime = *self.lifetime.lock().unwrap();
            Ok(AccessToken::new(
                Secret::new(format!("tok-{}-{}-{}-{n}", self.id, req.tenant, req.resource)),
                lifetime,
            ))
        })
    }

    fn client_id(&self) -> Option<&str> {
        Some("app-id")
    }

    fn kind(&self) -> &'static str {
        "fake"
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const MS50: Duration = Duration::from_millis(50);

/// A profile `name` on a login of its own called `name`.
fn binding(name: &str, source: Arc<FakeSource>) -> ProfileBinding {
    keyed(name, name, "v1", source)
}

/// A profile `name` on login `login` whose configuration digest is `digest`.
fn keyed(name: &str, login: &str, digest: &str, source: Arc<FakeSource>) -> ProfileBinding {
    let tenant = TenantId::parse("contoso.example").unwrap();
    let key = CacheKey::new(&ProfileName::parse(login).unwrap(), digest, &tenant);
    ProfileBinding::new(ProfileName::parse(name).unwrap(), tenant, source, vec![], key)
}

fn arcs(bindings: Vec<ProfileBinding>) -> Vec<Arc<ProfileBinding>> {
    bindings.into_iter().map(Arc::new).collect()
}

fn res(s: &str) -> Resource {
    Resource::parse(s).unwrap()
}

fn start(config: EngineConfig, bindings: Vec<ProfileBinding>) -> (Engine, CancellationToken) {
    let engine = Engine::new(config, bindings);
    let cancel = CancellationToken::new();
    let e = engine.clone();
    let c = cancel.clone();
    tokio::spawn(async move { e.run(c).await });
    (engine, cancel)
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_upstream_call() {
    let src = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    let r = res("https://management.azure.com/");
    let mut handles = Vec::new();
    for _ in 0..128 {
        let e = engine.clone();
        let r = r.clone();
        handles.push(tokio::spawn(async move { e.get_token("p", &r).await }));
    }
    let mut tokens = std::collections::HashSet::new();
    let mut states = Vec::new();
    for h in handles {
        let g = h.await.unwrap().unwrap();
        tokens.insert(g.token.secret().expose().to_owned());
        states.push(g.cache);
    }
    assert_eq!(src.calls(), 1);
    assert_eq!(tokens.len(), 1);
    assert_eq!(states.iter().filter(|s| **s == CacheState::Miss).count(), 1);
    let g = engine.get_token("p", &r).await.unwrap();
    assert_eq!(g.cache, CacheState::Hit);
    assert_eq!(g.client_id.as_deref(), Some("app-id"));
    assert_eq!(src.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn distinct_resources_are_fetched_in_parallel() {
    let src = FakeSource::new(HOUR, Duration::from_millis(500));
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for i in 0..64 {
        let e = engine.clone();
        handles.push(tokio::spawn(async move { e.get_token("p", &res(&format!("api://r{i}"))).await }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(src.calls(), 64);
    assert!(t0.elapsed() < Duration::from_millis(1000), "serialised: {:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn refreshes_ahead_without_client_demand() {
    let src = FakeSource::new(Duration::from_secs(120), MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    let r = res("api://x");
    let first = engine.get_token("p", &r).await.unwrap().token;
    assert_eq!(src.calls(), 1);
    // 120 s tokens are refreshed about 60 s (±10 %) after issue, with no request in between.
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(src.calls(), 1);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(src.calls(), 2);
    let g = engine.get_token("p", &r).await.unwrap();
    assert_eq!(g.cache, CacheState::Hit);
    assert_ne!(g.token.secret().expose(), first.secret().expose());
    // Over ten minutes, about one refresh a minute: never a loop.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let calls = src.calls();
    assert!((10..=14).contains(&calls), "calls = {calls}");
}

#[tokio::test(start_paused = true)]
async fn serves_cached_token_through_an_outage_without_hammering() {
    let src = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    let r = res("api://x");
    let first = engine.get_token("p", &r).await.unwrap().token;
    src.fail_with(Some(UpstreamError::Unavailable { status: 503, retry_after: None }));
    // Refresh point is ~45 min; keep asking every 10 s until 58 min.
    let mut served_stale = 0;
    for _ in 0..(58 * 6) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let g = engine.get_token("p", &r).await.unwrap();
        assert_eq!(g.token.secret().expose(), first.secret().expose());
        if g.cache == CacheState::Stale {
            served_stale += 1;
        }
    }
    assert!(served_stale > 0);
    // Backoff doubles from 1 s: ~10 attempts in the ~13 failing minutes, not hundreds.
    let calls = src.calls();
    assert!((3..=14).contains(&calls), "calls = {calls}");
    // Recovery: the next scheduled attempt succeeds and clients get a new token.
    src.fail_with(None);
    tokio::time::sleep(Duration::from_secs(300)).await;
    let g = engine.get_token("p", &r).await.unwrap();
    assert_ne!(g.token.secret().expose(), first.secret().expose());
}

#[tokio::test(start_paused = true)]
async fn failing_login_is_not_retried_per_request() {
    let src = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    src.fail_with(Some(UpstreamError::InvalidGrant { codes: vec![700082], description: "expired".into() }));
    let r = res("api://x");
    for _ in 0..50 {
        let err = engine.get_token("p", &r).await.unwrap_err();
        assert!(matches!(err, EngineError::Upstream(UpstreamError::InvalidGrant { .. })));
    }
    assert_eq!(src.calls(), 1);
    // Definitive errors wait at least 30 s before the next attempt.
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(src.calls(), 1);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(src.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn reset_backoff_lets_the_next_request_through_at_once() {
    let src = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    src.fail_with(Some(UpstreamError::LoginRequired {
        login: "me".into(),
        tenant: None,
        reason: "r".into(),
    }));
    let r = res("api://x");
    assert!(engine.get_token("p", &r).await.is_err());
    assert!(engine.get_token("p", &r).await.is_err());
    assert_eq!(src.calls(), 1, "the failure is negatively cached");
    src.fail_with(None);
    engine.reset_backoff("p");
    engine.reset_backoff("unknown-login");
    assert!(engine.get_token("p", &r).await.is_ok());
    assert_eq!(src.calls(), 2);
    assert_eq!(engine.entries()[0].failures, 0);
}

#[tokio::test(start_paused = true)]
async fn throttling_reports_the_remaining_backoff() {
    let src = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    src.fail_with(Some(UpstreamError::Throttled { retry_after: Some(Duration::from_secs(120)) }));
    let r = res("api://x");
    assert!(engine.get_token("p", &r).await.is_err());
    tokio::time::sleep(Duration::from_secs(20)).await;
    match engine.get_token("p", &r).await.unwrap_err() {
        EngineError::Upstream(UpstreamError::Throttled { retry_after: Some(ra) }) => {
            assert!(ra <= Duration::from_secs(100) && ra >= Duration::from_secs(90), "{ra:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(src.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn nearly_expired_token_is_replaced_while_upstream_is_healthy() {
    let src = FakeSource::new(HOUR, MS50);
    // A huge margin is capped at half the lifetime; make the refresher slow instead by idling it:
    let (engine, cancel) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    cancel.cancel(); // no background refresh: only client demand drives fetches here
    tokio::task::yield_now().await;
    let r = res("api://x");
    let first = engine.get_token("p", &r).await.unwrap().token;
    tokio::time::sleep(Duration::from_secs(56 * 60)).await; // 4 min left
    let g = engine.get_token("p", &r).await.unwrap();
    assert_eq!(g.cache, CacheState::Miss);
    assert_ne!(g.token.secret().expose(), first.secret().expose());
    assert_eq!(src.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn very_short_lived_tokens_are_served_as_they_are() {
    let src = FakeSource::new(Duration::from_secs(60), MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    let r = res("api://x");
    engine.get_token("p", &r).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let g = engine.get_token("p", &r).await.unwrap();
    assert_eq!(g.cache, CacheState::Hit);
}

#[tokio::test(start_paused = true)]
async fn rejected_hash_forces_a_new_token() {
    let src = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    let r = res("api://x");
    let first = engine.get_token("p", &r).await.unwrap().token;
    let g = engine.get_token_with("p", &r, &Freshness::NotHash(first.sha256().to_uppercase())).await.unwrap();
    assert_ne!(g.token.secret().expose(), first.secret().expose());
    let again = engine.get_token_with("p", &r, &Freshness::NotHash(first.sha256())).await.unwrap();
    assert_eq!(again.cache, CacheState::Hit);
    assert_eq!(src.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn idle_entries_stop_refreshing_and_are_evicted() {
    let src = FakeSource::new(Duration::from_secs(120), MS50);
    let config = EngineConfig { idle_ttl: Duration::from_secs(600), ..EngineConfig::default() };
    let (engine, _c) = start(config, vec![binding("p", src.clone())]);
    engine.get_token("p", &res("api://x")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let calls = src.calls();
    assert!((9..=13).contains(&calls), "calls = {calls}");
    assert_eq!(engine.stats().entries, 0);
    assert_eq!(engine.stats().evictions, 1);
}

#[tokio::test(start_paused = true)]
async fn prefetch_warms_at_start_and_stays_warm() {
    let src = FakeSource::new(Duration::from_secs(120), MS50);
    let mut b = binding("p", src.clone());
    b.prefetch = vec![res("api://warm")];
    let config = EngineConfig { idle_ttl: Duration::from_secs(60), ..EngineConfig::default() };
    let (engine, _c) = start(config, vec![b]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(src.calls(), 1);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(src.calls() >= 9, "prefetch entries ignore idle_ttl");
    assert_eq!(engine.get_token("p", &res("api://warm")).await.unwrap().cache, CacheState::Hit);
}

#[tokio::test(start_paused = true)]
async fn unknown_profile_is_an_error() {
    let src = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src)]);
    let err = engine.get_token("nope", &res("api://x")).await.unwrap_err();
    assert_eq!(err, EngineError::UnknownProfile("nope".into()));
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_unchanged_profiles_cache() {
    let a = FakeSource::new(HOUR, MS50);
    let b = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("a", a.clone()), binding("b", b.clone())]);
    let r = res("api://x");
    engine.get_token("a", &r).await.unwrap();
    engine.get_token("b", &r).await.unwrap();
    let changed = keyed("b", "b", "v2", b.clone());
    engine.set_profiles(&arcs(vec![binding("a", a.clone()), changed]));
    assert_eq!(engine.get_token("a", &r).await.unwrap().cache, CacheState::Hit);
    assert_eq!(engine.get_token("b", &r).await.unwrap().cache, CacheState::Miss);
    engine.set_profiles(&arcs(vec![binding("a", a)]));
    assert!(engine.get_token("b", &r).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_renamed_profile_keeps_its_cache() {
    let src = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![keyed("old", "me", "v1", src.clone())]);
    let r = res("api://x");
    let first = engine.get_token("old", &r).await.unwrap();
    engine.set_profiles(&arcs(vec![keyed("new", "me", "v1", src.clone())]));
    let again = engine.get_token("new", &r).await.unwrap();
    assert_eq!(again.cache, CacheState::Hit);
    assert_eq!(again.token.hash(), first.token.hash());
    assert_eq!(src.calls(), 1);
    assert_eq!(engine.entries().iter().map(|e| e.profile.as_str()).collect::<Vec<_>>(), ["new"]);
}

#[tokio::test(start_paused = true)]
async fn profiles_with_one_key_share_entries_and_profiles_with_two_never_do() {
    let shared = FakeSource::new(HOUR, MS50);
    let other = FakeSource::new(HOUR, MS50);
    let bindings = vec![
        keyed("a", "me", "v1", shared.clone()),
        keyed("b", "me", "v1", shared.clone()),
        keyed("c", "you", "v1", other.clone()),
    ];
    let (engine, _c) = start(EngineConfig::default(), bindings);
    let r = res("api://x");
    let a = engine.get_token("a", &r).await.unwrap();
    let b = engine.get_token("b", &r).await.unwrap();
    let c = engine.get_token("c", &r).await.unwrap();
    assert_eq!((a.cache, b.cache, c.cache), (CacheState::Miss, CacheState::Hit, CacheState::Miss));
    assert_eq!(a.token.hash(), b.token.hash());
    assert_ne!(a.token.hash(), c.token.hash());
    assert_eq!((shared.calls(), other.calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_binding_of_an_older_generation_gets_its_own_tokens() {
    // Generation 1: "a" on login x. Generation 2 gives the name "a" to login y. A request that
    // loaded generation 1 must get login x's token, never the entry generation 2 filled.
    let x = FakeSource::new(HOUR, MS50);
    let y = FakeSource::new(HOUR, MS50);
    let gen1 = Arc::new(keyed("a", "x", "v1", x.clone()));
    let (engine, _c) = start(EngineConfig::default(), vec![]);
    engine.set_profiles(std::slice::from_ref(&gen1));
    let r = res("api://x");
    let from_x = engine.get_token_for(&gen1, &r, &Freshness::Cached, None).await.unwrap();
    engine.set_profiles(&arcs(vec![keyed("a", "y", "v1", y.clone())]));
    let from_y = engine.get_token("a", &r).await.unwrap();
    assert_ne!(from_x.token.hash(), from_y.token.hash());
    let late = engine.get_token_for(&gen1, &r, &Freshness::Cached, None).await.unwrap();
    assert_ne!(
        late.token.hash(),
        from_y.token.hash(),
        "an older generation's request got a newer key's token"
    );
    assert_eq!((x.calls(), y.calls()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_entries() {
    let src = FakeSource::new(HOUR, Duration::ZERO);
    let bounds = CacheBounds { max_entries: 10_000, max_per_user: 10_000 };
    let (engine, _c) =
        start(EngineConfig::default(), vec![binding("p", src.clone()).with_cache(bounds, None)]);
    for i in 0..10_000 {
        engine.get_token("p", &res(&format!("api://r{i}"))).await.unwrap();
    }
    assert_eq!(engine.stats().entries, 10_000);
    assert_eq!(engine.get_token("p", &res("api://r5")).await.unwrap().cache, CacheState::Hit);
}

#[tokio::test(start_paused = true)]
async fn abandoned_requests_do_not_cancel_the_fetch() {
    let src = FakeSource::new(HOUR, Duration::from_secs(2));
    let (engine, _c) = start(EngineConfig::default(), vec![binding("p", src.clone())]);
    let r = res("api://x");
    let _ = tokio::time::timeout(Duration::from_millis(100), engine.get_token("p", &r)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(engine.get_token("p", &r).await.unwrap().cache, CacheState::Hit);
    assert_eq!(src.calls(), 1);
}

mod bound;
mod observability;

/// A hung upstream holds a caller at most `client_wait`; the single call goes on and its token
/// serves the retry at once, with no second upstream call.
#[tokio::test(start_paused = true)]
async fn a_slow_upstream_call_releases_the_caller_after_client_wait_and_serves_the_retry() {
    let src = FakeSource::new(HOUR, Duration::from_secs(60));
    let config = EngineConfig { client_wait: Duration::from_secs(20), ..EngineConfig::default() };
    let (engine, _c) = start(config, vec![binding("p", src.clone())]);
    let r = res("https://management.azure.com/");
    let t0 = Instant::now();
    let err = engine.get_token("p", &r).await.unwrap_err();
    assert_eq!(err, EngineError::Pending { retry_after: PENDING_RETRY_AFTER });
    assert_eq!(t0.elapsed(), Duration::from_secs(20));
    // A second caller joins the same call and is released at its own deadline.
    let err = engine.get_token("p", &r).await.unwrap_err();
    assert!(matches!(err, EngineError::Pending { .. }));
    assert_eq!(t0.elapsed(), Duration::from_secs(40));
    tokio::time::sleep(Duration::from_secs(21)).await;
    let g = engine.get_token("p", &r).await.unwrap();
    assert_eq!(g.cache, CacheState::Hit, "the call went on and its token serves the retry");
    assert_eq!(src.calls(), 1);
}

/// A call that ends within `client_wait` is answered as before.
#[tokio::test(start_paused = true)]
async fn a_call_within_client_wait_is_answered() {
    let src = FakeSource::new(HOUR, Duration::from_secs(19));
    let config = EngineConfig { client_wait: Duration::from_secs(20), ..EngineConfig::default() };
    let (engine, _c) = start(config, vec![binding("p", src.clone())]);
    let g = engine.get_token("p", &res("api://x")).await.unwrap();
    assert_eq!(g.cache, CacheState::Miss);
}
