//! Injected faults: every kind, `times` counting, FIFO stacking, "until cleared", and that
//! discovery endpoints are never affected.

use std::time::{Duration, Instant};

use azbroker_testkit::Fault;

use crate::*;

#[tokio::test]
async fn latency_delays_then_answers_normally() {
    let fake = fake().await;
    fake.inject(Fault::Latency(Duration::from_millis(300)), Some(1));
    let started = Instant::now();
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn status_faults_count_down_with_times() {
    let fake = fake().await;
    fake.inject(Fault::Status(503), Some(2));
    for _ in 0..2 {
        expect_error(client_credentials(&fake, TENANT, VAULT).await, 503, "temporarily_unavailable", 90_033)
            .await;
    }
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    assert_eq!(fake.token_requests(), 3);
    assert_eq!(fake.issued_tokens(), 1);
}

#[tokio::test]
async fn throttle_sends_retry_after() {
    let fake = fake().await;
    fake.inject(Fault::Throttle { retry_after_secs: 7 }, Some(1));
    let resp = client_credentials(&fake, TENANT, VAULT).await;
    assert_eq!(resp.headers()["retry-after"], "7");
    expect_error(resp, 429, "temporarily_unavailable", 90_055).await;
    let resp = client_credentials(&fake, TENANT, VAULT).await;
    assert!(resp.headers().get("retry-after").is_none());
    expect_token(resp).await;
}

#[tokio::test]
async fn reset_breaks_the_connection() {
    let fake = fake().await;
    fake.inject(Fault::Reset, Some(2));
    for _ in 0..2 {
        let result = http()
            .post(token_url(&fake, TENANT))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", SECRET),
                ("scope", VAULT),
            ])
            .send()
            .await;
        let err = result.expect_err("a reset must not produce a response");
        assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    }
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    assert_eq!(fake.token_requests(), 3);
    assert_eq!(fake.issued_tokens(), 1);
}

#[tokio::test]
async fn garbage_is_a_200_that_is_not_json() {
    let fake = fake().await;
    fake.inject(Fault::Garbage, Some(1));
    let resp = client_credentials(&fake, TENANT, VAULT).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let text = resp.text().await.unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
}

#[tokio::test]
async fn definitive_error_faults() {
    let fake = fake().await;
    fake.inject(Fault::InvalidGrant, Some(1));
    fake.inject(Fault::InteractionRequired, Some(1));
    let body =
        expect_error(client_credentials(&fake, TENANT, VAULT).await, 400, "invalid_grant", 700_082).await;
    assert!(description(&body).contains("expired due to inactivity"));
    let body =
        expect_error(client_credentials(&fake, TENANT, ARM).await, 400, "interaction_required", 50_076).await;
    assert!(
        description(&body)
            .contains("multi-factor authentication to access 'https://management.core.windows.net/'")
    );
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
}

#[tokio::test]
async fn faults_stack_fifo_and_none_lasts_until_cleared() {
    let fake = fake().await;
    fake.inject(Fault::Status(500), Some(1));
    fake.inject(Fault::Throttle { retry_after_secs: 1 }, Some(1));
    fake.inject(Fault::Status(502), None);
    fake.inject(Fault::Garbage, Some(1));
    expect_error(client_credentials(&fake, TENANT, VAULT).await, 500, "temporarily_unavailable", 90_033)
        .await;
    expect_error(client_credentials(&fake, TENANT, VAULT).await, 429, "temporarily_unavailable", 90_055)
        .await;
    for _ in 0..3 {
        expect_error(client_credentials(&fake, TENANT, VAULT).await, 502, "temporarily_unavailable", 90_033)
            .await;
    }
    // Faults never touch discovery.
    let keys = http().get(format!("{}/common/discovery/v2.0/keys", fake.url())).send().await.unwrap();
    assert_eq!(keys.status(), 200);
    fake.clear_faults();
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
    fake.inject(Fault::Garbage, Some(0));
    expect_token(client_credentials(&fake, TENANT, VAULT).await).await;
}
