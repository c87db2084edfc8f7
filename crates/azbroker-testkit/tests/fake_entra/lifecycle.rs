//! Starting, addressing and stopping the server.

use std::time::Duration;

use azbroker_testkit::Fault;

use crate::*;

#[tokio::test]
async fn url_and_addr_describe_a_loopback_listener() {
    let fake = fake().await;
    assert!(fake.addr().ip().is_loopback());
    assert_ne!(fake.addr().port(), 0);
    assert_eq!(fake.url(), format!("http://127.0.0.1:{}", fake.addr().port()));
    assert!(!fake.url().ends_with('/'));
    let resp = http().get(format!("{}/nothing/here", fake.url())).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn shutdown_is_idempotent_and_stops_serving() {
    let fake = fake().await;
    // A client that keeps its idle keep-alive connection must not hold up shutdown.
    let pooled = http();
    let resp = pooled.get(format!("{}/common/discovery/v2.0/keys", fake.url())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    fake.shutdown();
    fake.shutdown();
    tokio::time::timeout(Duration::from_secs(2), fake.stopped()).await.unwrap();
    assert!(http().post(token_url(&fake, TENANT)).send().await.is_err());
    assert!(pooled.get(format!("{}/common/discovery/v2.0/keys", fake.url())).send().await.is_err());
}

#[tokio::test]
async fn shutdown_interrupts_injected_latency() {
    let fake = fake().await;
    fake.inject(Fault::Latency(Duration::from_secs(60)), None);
    let pending = tokio::spawn({
        let fake = fake.clone();
        async move { client_credentials(&fake, TENANT, VAULT).await.status() }
    });
    // Shut down while the request is in flight (before or during its injected wait: either way
    // the wait gives up at shutdown).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.token_requests() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the request never arrived");
        tokio::task::yield_now().await;
    }
    fake.shutdown();
    let status = tokio::time::timeout(Duration::from_secs(2), pending).await.unwrap().unwrap();
    assert_eq!(status, 503);
    tokio::time::timeout(Duration::from_secs(2), fake.stopped()).await.unwrap();
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let fake = fake().await;
    let addr = fake.addr();
    let clone = fake.clone();
    drop(fake);
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok(), "a clone keeps it alive");
    drop(clone);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "server still accepting after the last drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
