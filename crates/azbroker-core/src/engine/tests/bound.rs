//! The per-profile and per-user bounds on cache entries (issue 11, finding 9).

use super::*;

const ROOM: Duration = Duration::from_secs(61);

fn bounded(
    source: Arc<FakeSource>,
    max_entries: usize,
    max_per_user: usize,
    listed: &[&str],
) -> ProfileBinding {
    let listed: Vec<Resource> = listed.iter().map(|r| res(r)).collect();
    binding("p", source).with_cache(CacheBounds { max_entries, max_per_user }, Some(&listed))
}

async fn ask(engine: &Engine, resource: &str, uid: u32) -> Result<Grant, EngineError> {
    let b = engine.binding("p").unwrap();
    engine.get_token_for(&b, &res(resource), &Freshness::Cached, Some(uid)).await
}

fn scope_of(r: Result<Grant, EngineError>) -> Option<BoundScope> {
    match r {
        Err(EngineError::CacheFull { scope, retry_after, .. }) => {
            assert_eq!(retry_after, EVICT_IDLE);
            Some(scope)
        }
        _ => None,
    }
}

/// An engine under those bounds with one warm entry (`api://warm`, made by the first uid) and
/// one failed one (`api://failing`, by the second).
async fn warm_and_failed(max_entries: usize, max_per_user: usize, (warm, failing): (u32, u32)) -> Engine {
    let src = FakeSource::new(HOUR, Duration::ZERO);
    let (engine, _c) =
        start(EngineConfig::default(), vec![bounded(src.clone(), max_entries, max_per_user, &[])]);
    ask(&engine, "api://warm", warm).await.unwrap();
    src.fail_with(Some(UpstreamError::Unavailable { status: 503, retry_after: None }));
    assert!(ask(&engine, "api://failing", failing).await.is_err());
    src.fail_with(None);
    engine
}

#[tokio::test(start_paused = true)]
async fn one_user_past_its_share_is_refused_and_others_still_get_entries() {
    let src = FakeSource::new(HOUR, Duration::ZERO);
    let (engine, _c) = start(EngineConfig::default(), vec![bounded(src.clone(), 8, 3, &[])]);
    for i in 0..3 {
        ask(&engine, &format!("api://junk{i}"), 1000).await.unwrap();
    }
    let refused = ask(&engine, "api://junk3", 1000).await;
    let text = refused.as_ref().unwrap_err().to_string();
    assert!(
        text.contains("max_cached_resources_per_user") && text.contains("profiles.p.allowed_resources"),
        "{text}"
    );
    assert_eq!(scope_of(refused), Some(BoundScope::User));
    assert_eq!(src.calls(), 3, "a refused resource never reaches upstream");
    // Entries already made keep being served, and another user gets its own.
    assert_eq!(ask(&engine, "api://junk0", 1000).await.unwrap().cache, CacheState::Hit);
    assert_eq!(ask(&engine, "api://vault", 1001).await.unwrap().cache, CacheState::Miss);
    assert_eq!(engine.stats().entries, 4);
}

#[tokio::test(start_paused = true)]
async fn a_users_own_idle_entries_make_room_failed_ones_first() {
    let engine = warm_and_failed(8, 2, (7, 7)).await;
    // Not idle yet: nothing can go.
    assert_eq!(scope_of(ask(&engine, "api://new1", 7).await), Some(BoundScope::User));
    tokio::time::advance(ROOM).await;
    // The failed entry goes first, the warm one stays.
    ask(&engine, "api://new1", 7).await.unwrap();
    let left: Vec<String> = engine.entries().into_iter().map(|e| e.resource).collect();
    assert_eq!(left, ["api://new1", "api://warm"]);
    // Then the least recently demanded warm entry of the same user.
    ask(&engine, "api://new2", 7).await.unwrap();
    let left: Vec<String> = engine.entries().into_iter().map(|e| e.resource).collect();
    assert_eq!(left, ["api://new1", "api://new2"]);
    assert_eq!(engine.stats().evictions, 2);
}

#[tokio::test(start_paused = true)]
async fn a_warm_entry_another_user_asks_for_is_never_given_up_for_its_makers_new_one() {
    let src = FakeSource::new(HOUR, Duration::ZERO);
    let (engine, _c) = start(EngineConfig::default(), vec![bounded(src.clone(), 8, 1, &[])]);
    ask(&engine, "api://arm", 1).await.unwrap();
    assert_eq!(ask(&engine, "api://arm", 2).await.unwrap().cache, CacheState::Hit);
    tokio::time::advance(ROOM).await;
    assert_eq!(scope_of(ask(&engine, "api://junk", 1).await), Some(BoundScope::User));
    assert_eq!(ask(&engine, "api://arm", 2).await.unwrap().cache, CacheState::Hit);
}

#[tokio::test(start_paused = true)]
async fn at_the_profile_bound_only_idle_tokenless_entries_go_never_warm_ones() {
    let engine = warm_and_failed(2, 2, (1, 2)).await;
    tokio::time::advance(ROOM).await;
    // Another user's new resource takes the failed entry's place...
    ask(&engine, "api://third", 3).await.unwrap();
    // ...but never the idle warm one: the profile is full.
    assert_eq!(scope_of(ask(&engine, "api://fourth", 3).await), Some(BoundScope::Profile));
    tokio::time::advance(ROOM).await;
    assert_eq!(scope_of(ask(&engine, "api://fourth", 4).await), Some(BoundScope::Profile));
    assert_eq!(ask(&engine, "api://warm", 1).await.unwrap().cache, CacheState::Hit);
}

#[tokio::test(start_paused = true)]
async fn listed_and_prefetched_resources_are_never_counted_nor_evicted() {
    let src = FakeSource::new(HOUR, Duration::ZERO);
    let mut b = bounded(src.clone(), 1, 1, &["https://vault.azure.net"]);
    b.prefetch = vec![res("api://warmed")];
    let (engine, _c) = start(EngineConfig::default(), vec![b]);
    ask(&engine, "api://junk1", 5).await.unwrap();
    // Listed (compared like allowed_resources: one trailing slash aside) and
    // prefetched resources are served past the bound.
    ask(&engine, "https://vault.azure.net/", 5).await.unwrap();
    ask(&engine, "api://warmed", 5).await.unwrap();
    tokio::time::advance(ROOM).await;
    tokio::time::advance(ROOM).await;
    // Making room takes the junk entry, never the listed one.
    ask(&engine, "api://junk2", 5).await.unwrap();
    assert_eq!(scope_of(ask(&engine, "api://junk3", 5).await), Some(BoundScope::User));
    let left: Vec<String> = engine.entries().into_iter().map(|e| e.resource).collect();
    assert_eq!(left, ["api://junk2", "api://warmed", "https://vault.azure.net/"]);
}

#[tokio::test(start_paused = true)]
async fn profiles_sharing_a_key_have_budgets_of_their_own() {
    let src = FakeSource::new(HOUR, Duration::ZERO);
    let bounds = CacheBounds { max_entries: 1, max_per_user: 1 };
    let a = keyed("a", "shared", "v1", src.clone()).with_cache(bounds, None);
    let b = keyed("b", "shared", "v1", src.clone()).with_cache(bounds, None);
    let (engine, _c) = start(EngineConfig::default(), vec![a, b]);
    let (a, b) = (engine.binding("a").unwrap(), engine.binding("b").unwrap());
    let get = |binding: &Arc<ProfileBinding>, r: &str| {
        let (engine, binding, r) = (engine.clone(), binding.clone(), res(r));
        async move { engine.get_token_for(&binding, &r, &Freshness::Cached, Some(9)).await }
    };
    get(&a, "api://one").await.unwrap();
    assert!(matches!(get(&a, "api://two").await, Err(EngineError::CacheFull { .. })));
    get(&b, "api://two").await.unwrap();
    // The entries are still shared.
    assert_eq!(get(&b, "api://one").await.unwrap().cache, CacheState::Hit);
}
