//! The real serve loop on 127.0.0.1:0: connect info from the socket, graceful shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::serve;

/// Sends one raw HTTP/1.1 request and returns (status line, body).
async fn raw(stream: &mut TcpStream, path: &str, headers: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test]
async fn serves_real_connections_and_drains_on_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let st = state();
    let server = tokio::spawn(serve(listener, router(st.clone(), None), cancel.clone()));

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (status, body) = raw(&mut stream, "/healthz", "").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, r#"{"status":"ok"}"#);

    let imds = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (status, body) = raw(&mut stream, imds, "Metadata: true\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "the real peer address passes the loopback guard: {body}");
    assert!(body.contains("\"access_token\":\"fake.contoso.example."));

    // A request in flight when shutdown starts still gets its answer: cancel once its (300 ms)
    // upstream call has started.
    let calls_before = st.engine().stats().upstream_calls;
    let slow = format!("/p/slow{imds}");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let in_flight = tokio::spawn(async move { raw(&mut stream, &slow, "Metadata: true\r\n").await });
    tokio::time::timeout(Duration::from_secs(5), async {
        while st.engine().stats().upstream_calls == calls_before {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the slow request reaches the engine");
    cancel.cancel();
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), in_flight).await.unwrap().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");

    let result = tokio::time::timeout(Duration::from_secs(5), server).await.expect("serve stops");
    result.unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
}
