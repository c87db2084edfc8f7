//! The access policy through the router: who may use which profile, which resources, per-user
//! default profiles, the per-uid rate limit, and secret rotation — every refusal in the
//! dialect's own error shape and before any upstream call.

use std::collections::BTreeSet;

use axum::Extension;
use azbroker_core::{AccessPolicy, Caller, ProfileAccess, Resource, ResourceAllowList, Users};

use super::*;
use crate::RateLimit;

/// contoso: everyone; fabrikam: uid 1000 and group 2000, ARM only; others absent (refused).
pub(crate) fn restricted() -> AccessPolicy {
    AccessPolicy::new([
        (name("contoso"), ProfileAccess::open()),
        (
            name("fabrikam"),
            ProfileAccess {
                users: Users::Only { uids: BTreeSet::from([1000]), gids: BTreeSet::from([2000]) },
                resources: Some(ResourceAllowList::new(&[Resource::parse(ARM).unwrap()])),
                remote: false,
            },
        ),
    ])
}

/// The router as a loopback connection owned by `uid` sees it.
pub(crate) fn as_uid(state: AppState, uid: u32) -> Router {
    app(state).layer(Extension(Caller { uid }))
}

fn upstream_calls(st: &AppState) -> u64 {
    st.engine().stats().upstream_calls
}

const Q: &str = "api-version=2018-02-01&resource=https://management.core.windows.net/";

#[tokio::test]
async fn a_user_outside_the_list_is_refused_in_each_dialects_shape_without_an_upstream_call() {
    let st = state();
    st.set_policy(restricted());
    let stranger = as_uid(st.clone(), 1001);
    let r = send(&stranger, imds(&format!("{Q}&client_id=fabrikam"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.str("error"), "forbidden");
    assert!(
        r.str("error_description").contains("uid 1001") && r.str("error_description").contains("fabrikam")
    );
    let r = send(
        &stranger,
        get(&format!("/p/fabrikam/msi/token?{Q}")).header("X-IDENTITY-HEADER", IDENTITY_HEADER),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json["statusCode"], 403);
    assert!(r.str("message").contains("profiles.fabrikam.allowed_users"));
    assert_eq!(upstream_calls(&st), 0, "a denied request never reaches upstream");

    // The same user on the open profile, and the listed user on the restricted one.
    assert_eq!(send(&stranger, imds(Q)).await.status, StatusCode::OK);
    let member = as_uid(st.clone(), 1000);
    assert_eq!(send(&member, imds(&format!("{Q}&client_id=fabrikam"))).await.status, StatusCode::OK);
    assert_eq!(
        send(&as_uid(st.clone(), 0), imds(&format!("{Q}&client_id=fabrikam"))).await.status,
        StatusCode::OK
    );
    // A profile the policy does not list is refused to everyone but root.
    assert_eq!(send(&member, imds(&format!("{Q}&client_id=slow"))).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_caller_from_another_host_needs_the_profiles_opt_in_and_a_secret_dialect() {
    let st = state();
    let mut profiles = vec![(name("contoso"), ProfileAccess::open())];
    profiles.push((name("fabrikam"), ProfileAccess { remote: true, ..ProfileAccess::open() }));
    st.set_policy(AccessPolicy::new(profiles));
    // The guard admits non-loopback peers only with allow_non_loopback.
    let remote = router(st.clone(), None)
        .into_router()
        .layer(MockConnectInfo(SocketAddr::from(([10, 1, 2, 3], 40_000))));
    let app_service = |profile: &str| {
        get(&format!("/p/{profile}/msi/token?{Q}")).header("X-IDENTITY-HEADER", IDENTITY_HEADER)
    };
    assert_eq!(send(&remote, app_service("fabrikam")).await.status, StatusCode::FORBIDDEN);
    st.set_allow_remote(true);
    let r = send(&remote, app_service("fabrikam")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // A profile without the opt-in, and a dialect without a secret, are refused.
    let r = send(&remote, app_service("contoso")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.str("message").contains("profiles.contoso.allow_remote_callers"), "{}", r.json);
    let r = send(&remote, imds(&format!("{Q}&client_id=fabrikam"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.str("error_description").contains("IDENTITY_HEADER"), "{}", r.json);
    let calls = upstream_calls(&st);
    // A wrong identity header from afar never gets as far as the policy.
    let r =
        send(&remote, get(&format!("/p/fabrikam/msi/token?{Q}")).header("X-IDENTITY-HEADER", "nope")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(upstream_calls(&st), calls);
}

#[tokio::test]
async fn an_unknown_caller_is_refused_by_a_configured_policy() {
    let st = state();
    st.set_policy(restricted());
    let r = send(&app(st.clone()), imds(Q)).await; // no Caller extension
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.str("error_description").contains("could not determine which local user"));
    assert_eq!(upstream_calls(&st), 0);
}

#[tokio::test]
async fn group_members_are_admitted_through_the_resolver() {
    let st = state();
    st.set_policy(restricted());
    let fab = format!("{Q}&client_id=fabrikam");
    assert_eq!(send(&as_uid(st.clone(), 1500), imds(&fab)).await.status, StatusCode::FORBIDDEN);
    st.set_group_resolver(Arc::new(|uid| if uid == 1500 { vec![1500, 2000] } else { vec![uid] }));
    assert_eq!(send(&as_uid(st.clone(), 1500), imds(&fab)).await.status, StatusCode::OK);
    assert_eq!(send(&as_uid(st, 1501), imds(&fab)).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn resources_outside_the_allow_list_are_refused_before_upstream() {
    let st = state();
    st.set_policy(restricted());
    let member = as_uid(st.clone(), 1000);
    let r = send(&member, imds("api-version=1&resource=https://vault.azure.net&client_id=fabrikam")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.str("error_description").contains("profiles.fabrikam.allowed_resources"));
    assert_eq!(upstream_calls(&st), 0);
    // The allow-list compares normalised: host case and one trailing slash do not matter, and the
    // token still echoes (and is cached under) the exact string sent.
    let r =
        send(&member, imds("api-version=1&resource=https://MANAGEMENT.core.windows.net&client_id=fabrikam"))
            .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.str("resource"), "https://MANAGEMENT.core.windows.net");
}

#[tokio::test]
async fn a_users_default_profile_applies_when_the_request_names_none() {
    let profiles = directory("contoso", false);
    let names: Vec<_> = profiles.profile_names().cloned().collect();
    let selectors = names.into_iter().map(|n| (n, azbroker_core::ProfileSelectors::default()));
    let dir =
        Directory::new(selectors, Some(name("contoso")), HashMap::from([(1001, name("fabrikam"))])).unwrap();
    let st = state_with(dir);
    let r = send(&as_uid(st.clone(), 1001), imds(Q)).await;
    assert!(r.str("access_token").starts_with("fake.fabrikam.example."), "{}", r.json);
    let r = send(&as_uid(st.clone(), 1002), imds(Q)).await;
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
    // An explicit prefix still wins over the user's default.
    let r = send(
        &as_uid(st, 1001),
        get(&format!("/p/contoso/metadata/identity/oauth2/token?{Q}")).header("Metadata", "true"),
    )
    .await;
    assert!(r.str("access_token").starts_with("fake.contoso.example."));
}

#[tokio::test]
async fn the_rate_limit_is_per_uid_with_an_integer_retry_after() {
    let st = state();
    st.set_rate_limit(Some(RateLimit { per_second: 0.1, burst: 2 }));
    let alice = as_uid(st.clone(), 1000);
    // Probes without Metadata fail in the dialect and are not counted.
    for _ in 0..5 {
        assert_eq!(
            send(&alice, get(&format!("/metadata/identity/oauth2/token?{Q}"))).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(send(&alice, imds(Q)).await.status, StatusCode::OK);
    assert_eq!(send(&alice, imds(Q)).await.status, StatusCode::OK);
    let r = send(&alice, imds(Q)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().expect("integer Retry-After");
    assert!((1..=10).contains(&secs), "{secs}");
    assert_eq!(send(&as_uid(st.clone(), 1001), imds(Q)).await.status, StatusCode::OK, "own bucket per uid");
    st.set_rate_limit(None);
    assert_eq!(send(&alice, imds(Q)).await.status, StatusCode::OK, "off again");
}

#[tokio::test]
async fn a_rotated_identity_header_keeps_the_old_value_for_the_grace_period_only() {
    let st = state();
    let a = app(st.clone());
    let with = |h: &str| get(&format!("/msi/token?{Q}")).header("X-IDENTITY-HEADER", h.to_owned());
    assert!(st.rotate_secret(SecretId::IdentityHeader, Secret::new("next-value"), Duration::from_secs(60)));
    assert_eq!(send(&a, with("next-value")).await.status, StatusCode::OK);
    assert_eq!(send(&a, with(IDENTITY_HEADER)).await.status, StatusCode::OK, "old value in grace");
    assert!(st.rotate_secret(SecretId::IdentityHeader, Secret::new("third-value"), Duration::ZERO));
    assert_eq!(send(&a, with("next-value")).await.status, StatusCode::UNAUTHORIZED, "no grace left");
    assert_eq!(send(&a, with(IDENTITY_HEADER)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(st.current_secret(SecretId::IdentityHeader).unwrap().expose(), "third-value");
}

#[tokio::test]
async fn malformed_percent_encoding_is_refused() {
    let r = send(&app(state()), imds("api-version=1&resource=https%3A%2F%2Fvault%2")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.str("error_description").contains("percent-encoding"));
}
