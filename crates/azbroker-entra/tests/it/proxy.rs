//! The proxy environment variables (`HTTPS_PROXY`, ...) are honoured for a non-loopback authority.
//!
//! Environment variables cannot be changed safely inside a multi-threaded test process, so the
//! test re-runs itself as a child process with `HTTPS_PROXY` pointing at the loopback stub and
//! checks that the child's request arrived there as a `CONNECT` — no packet leaves loopback.

use std::process::Command;
use std::time::Duration;

use azbroker_core::Secret;
use azbroker_entra::{ClientCredential, EntraClient, HttpSettings, parse_authority_host};

use crate::stub::{Reply, Stub};
use crate::{CLIENT_ID, SECRET, tenant};

const CHILD_MARKER: &str = "AZBROKER_ENTRA_PROXY_TEST_CHILD";
const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

#[tokio::test]
async fn https_proxy_env_is_honoured() {
    if std::env::var_os(CHILD_MARKER).is_some() {
        return child().await;
    }
    let proxy = Stub::start(vec![Reply::raw(403, "text/plain", "proxy says no")]).await;
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["proxy::https_proxy_env_is_honoured", "--exact", "--nocapture", "--test-threads=1"]);
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command.env(CHILD_MARKER, "1").env("HTTPS_PROXY", format!("http://{}", proxy.url().authority()));
    let output = tokio::task::spawn_blocking(move || command.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("child outcome: network"), "{stdout}");

    let seen = proxy.single_request();
    assert_eq!(seen.method, "CONNECT");
    assert_eq!(seen.target, "login.example.invalid:443");
    assert!(!seen.body.contains(SECRET));
}

/// In the child: one request to an https authority that only the proxy can "reach".
async fn child() {
    let authority = parse_authority_host("https://login.example.invalid").unwrap();
    let mut settings = HttpSettings::new(authority);
    settings.timeout = Duration::from_secs(10);
    let client = EntraClient::new(settings).unwrap();
    let credential = ClientCredential::Secret(Secret::new(SECRET));
    let err =
        client.client_credentials(&tenant(), CLIENT_ID, &credential, "api://x/.default").await.unwrap_err();
    println!("child outcome: {}", err.kind());
}
