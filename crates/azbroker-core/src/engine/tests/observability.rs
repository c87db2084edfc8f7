//! Forced refresh and the per-profile counters, under paused time with the scripted source.

use super::*;

#[tokio::test(start_paused = true)]
async fn forced_refresh_fetches_new_tokens_for_matching_entries_only() {
    let a = FakeSource::new(HOUR, MS50);
    let b = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("a", a.clone()), binding("b", b.clone())]);
    let (x, y) = (res("api://x"), res("api://y"));
    let old_ax = engine.get_token("a", &x).await.unwrap().token;
    engine.get_token("a", &y).await.unwrap();
    engine.get_token("b", &x).await.unwrap();
    assert_eq!((a.calls(), b.calls()), (2, 1));

    let done = engine.refresh_matching(Some("a"), Some(&x)).await.unwrap();
    assert_eq!(done.len(), 1);
    let fresh = done[0].result.as_ref().unwrap();
    assert_ne!(fresh.token.secret().expose(), old_ax.secret().expose());
    assert_eq!((a.calls(), b.calls()), (3, 1));
    // Everybody gets the new token from the cache now.
    let g = engine.get_token("a", &x).await.unwrap();
    assert_eq!(g.cache, CacheState::Hit);
    assert_eq!(g.token.secret().expose(), fresh.token.secret().expose());

    // By profile: both of a's entries; with no filter: all three.
    let done = engine.refresh_matching(Some("a"), None).await.unwrap();
    let keys: Vec<_> = done.iter().map(|d| (d.profile.as_str(), d.resource.as_str())).collect();
    assert_eq!(keys, [("a", "api://x"), ("a", "api://y")]);
    assert_eq!(engine.refresh_matching(None, None).await.unwrap().len(), 3);
    assert_eq!((a.calls(), b.calls()), (7, 2));
    // By resource across profiles.
    let done = engine.refresh_matching(None, Some(&x)).await.unwrap();
    assert_eq!(done.iter().map(|d| d.profile.as_str()).collect::<Vec<_>>(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn forced_refresh_of_an_uncached_pair_fetches_it_and_unknown_profiles_fail() {
    let a = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("a", a.clone())]);
    let done = engine.refresh_matching(Some("a"), Some(&res("api://new"))).await.unwrap();
    assert!(done[0].result.is_ok());
    assert_eq!(engine.get_token("a", &res("api://new")).await.unwrap().cache, CacheState::Hit);
    assert!(matches!(
        engine.refresh_matching(Some("nope"), None).await,
        Err(EngineError::UnknownProfile(p)) if p == "nope"
    ));
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn forced_refresh_ignores_backoff_and_reports_the_error() {
    let a = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("a", a.clone())]);
    let x = res("api://x");
    a.fail_with(Some(UpstreamError::InvalidGrant { codes: vec![], description: "expired".into() }));
    assert!(engine.get_token("a", &x).await.is_err());
    assert!(engine.get_token("a", &x).await.is_err());
    assert_eq!(a.calls(), 1, "backing off");
    // The operator fixed the credential: a forced refresh tries at once.
    a.fail_with(None);
    let done = engine.refresh_matching(Some("a"), Some(&x)).await.unwrap();
    assert!(done[0].result.is_ok());
    assert_eq!(a.calls(), 2);
    a.fail_with(Some(UpstreamError::Network("reset".into())));
    let done = engine.refresh_matching(Some("a"), Some(&x)).await.unwrap();
    assert!(matches!(done[0].result, Err(EngineError::Upstream(UpstreamError::Network(_)))));
    // The cached token keeps being served.
    assert_eq!(engine.get_token("a", &x).await.unwrap().cache, CacheState::Hit);
}

#[tokio::test(start_paused = true)]
async fn forced_refresh_waits_for_a_call_in_flight_then_makes_its_own() {
    let a = FakeSource::new(HOUR, Duration::from_millis(500));
    let (engine, _c) = start(EngineConfig::default(), vec![binding("a", a.clone())]);
    let x = res("api://x");
    let e = engine.clone();
    let x2 = x.clone();
    let client = tokio::spawn(async move { e.get_token("a", &x2).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.calls(), 1);
    let done = engine.refresh_matching(Some("a"), Some(&x)).await.unwrap();
    let first = client.await.unwrap().unwrap();
    assert_eq!(a.calls(), 2);
    assert_ne!(done[0].result.as_ref().unwrap().token.secret().expose(), first.token.secret().expose());
}

#[tokio::test(start_paused = true)]
async fn counters_per_profile_track_cache_upstream_and_refreshes() {
    let a = FakeSource::new(Duration::from_secs(120), MS50);
    let b = FakeSource::new(HOUR, MS50);
    let (engine, _c) = start(EngineConfig::default(), vec![binding("a", a.clone()), binding("b", b.clone())]);
    let x = res("api://x");
    let mut handles = Vec::new();
    for _ in 0..4 {
        let e = engine.clone();
        let x = x.clone();
        handles.push(tokio::spawn(async move { e.get_token("a", &x).await }));
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    engine.get_token("a", &x).await.unwrap();
    b.fail_with(Some(UpstreamError::InvalidClient {
        error: "invalid_client".into(),
        codes: vec![7000215],
        description: "bad secret".into(),
    }));
    assert!(engine.get_token("b", &x).await.is_err());
    // a's 120 s token is refreshed ahead once a minute; make the second refresh fail.
    tokio::time::sleep(Duration::from_secs(70)).await;
    a.fail_with(Some(UpstreamError::Unavailable { status: 503, retry_after: None }));
    tokio::time::sleep(Duration::from_secs(60)).await;

    let m = engine.metrics();
    let names: Vec<_> = m.iter().map(|p| p.profile.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let (ma, mb) = (&m[0], &m[1]);
    assert_eq!((ma.misses, ma.coalesced, ma.hits), (1, 3, 1));
    assert!(ma.refreshes >= 2, "{ma:?}");
    assert!(ma.refresh_failures >= 1, "{ma:?}");
    assert_eq!(ma.upstream_requests, 1 + ma.refreshes);
    // Latency is recorded when a call finishes; with ±10 % jitter a refresh may still be in flight.
    let unfinished = ma.upstream_requests - ma.upstream_latency.count();
    assert!(unfinished <= 1, "{unfinished} calls without a latency: {ma:?}");
    assert!(ma.upstream_errors.iter().any(|(k, n)| *k == "unavailable" && *n >= 1), "{ma:?}");
    assert!(!ma.needs_attention, "a transient outage needs nobody");
    // b's broken secret is retried on the backoff schedule, every attempt failing alike.
    assert_eq!(mb.misses, 1);
    assert_eq!(mb.upstream_errors, vec![("invalid_client", mb.upstream_requests)]);
    assert!(mb.needs_attention);
    assert_eq!(mb.last_error.as_ref().unwrap().kind, "invalid_client");
    // Removing a profile drops its counters; the others keep counting from where they were.
    engine.set_profiles(&arcs(vec![binding("a", a)]));
    let m = engine.metrics();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].misses, 1);
}
