//! Running it as a service: config file watching, draining on SIGTERM, forced refresh, metrics,
//! status details and doctor — each through the real binary and its CLI.

use std::process::Command;
use std::time::{Duration, Instant};

use azbroker_testkit::Fault;
use serde_json::Value;

use super::*;

const VAULT: &str = "https://vault.azure.net";

async fn imds_token(daemon: &Daemon, profile: &str, resource: &str) -> reqwest::Response {
    let url = daemon.url(&format!(
        "/p/{profile}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}"
    ));
    http().get(url).header("Metadata", "true").send().await.unwrap()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not happen within {limit:?}");
}

fn status_json(daemon: &Daemon) -> Value {
    let out = daemon.cli(&["status", "--json"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_applies_edits_and_rejects_broken_files() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let body =
        sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, "[profiles.contoso]\nlogin = \"app\"\n");
    let daemon = Daemon::start(&body, &["--watch-config"]).unwrap();
    assert_eq!(imds_token(&daemon, "contoso", VAULT).await.status(), 200);
    let good = std::fs::read_to_string(&daemon.config_path).unwrap();

    replace_file(
        &daemon.config_path,
        &format!("{good}\n[profiles.extra]\nlogin = \"app\"\ntenant = \"extra.example\"\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = imds_token(&daemon, "extra", VAULT).await;
        if r.status() == 200 {
            let claims =
                auth.verify(r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap()).unwrap();
            assert_eq!(claims["tid"], azbroker_testkit::tenant_guid("extra.example"));
            break;
        }
        assert!(Instant::now() < deadline, "the edit was not applied:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // contoso's cached token survived the reload: no new upstream call for it.
    let before = auth.token_requests();
    assert_eq!(imds_token(&daemon, "contoso", VAULT).await.status(), 200);
    assert_eq!(auth.token_requests(), before);

    // Changed: extra now redeems in another tenant; removed: gone again.
    replace_file(
        &daemon.config_path,
        &format!("{good}\n[profiles.extra]\nlogin = \"app\"\ntenant = \"other.example\"\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = imds_token(&daemon, "extra", VAULT).await;
        let tid =
            auth.verify(r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap()).unwrap()["tid"]
                .clone();
        if tid == azbroker_testkit::tenant_guid("other.example") {
            break;
        }
        assert!(Instant::now() < deadline, "the change was not applied:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replace_file(&daemon.config_path, &good);
    let deadline = Instant::now() + Duration::from_secs(15);
    while imds_token(&daemon, "extra", VAULT).await.status() != 400 {
        assert!(Instant::now() < deadline, "the removal was not applied:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let before = auth.token_requests();
    replace_file(&daemon.config_path, "[server]\nbogus = true\n");
    wait_for("the rejection", Duration::from_secs(15), || daemon.log().contains("config reload rejected"));
    assert!(daemon.log().contains("server.bogus"), "the reasons are logged");
    assert_eq!(imds_token(&daemon, "contoso", VAULT).await.status(), 200, "the old config keeps serving");
    assert_eq!(auth.token_requests(), before, "with its cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let (auth, mut daemon) = two_tenants("");
    auth.inject(Fault::Latency(Duration::from_millis(1500)), Some(1));
    let url = daemon
        .url(&format!("/p/fabrikam/metadata/identity/oauth2/token?api-version=2018-02-01&resource={VAULT}"));
    let request = tokio::spawn(async move { http().get(url).header("Metadata", "true").send().await });
    wait_for("the upstream call", Duration::from_secs(10), || auth.token_requests() >= 1);
    daemon.signal("TERM").unwrap();
    let r = request.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(r.status(), 200);
    assert_eq!(daemon.stop().unwrap().code(), Some(0), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_outliving_the_drain_deadline_does_not_hold_up_the_exit() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    auth.inject(Fault::Latency(Duration::from_secs(30)), Some(1));
    let body =
        sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, "[profiles.contoso]\nlogin = \"app\"\n");
    let mut daemon = Daemon::start(&body, &["--drain-timeout", "500ms"]).unwrap();
    let url = daemon.url(&format!("/metadata/identity/oauth2/token?api-version=2018-02-01&resource={VAULT}"));
    let request = tokio::spawn(async move { http().get(url).header("Metadata", "true").send().await });
    wait_for("the upstream call", Duration::from_secs(10), || auth.token_requests() >= 1);
    assert_eq!(daemon.stop().unwrap().code(), Some(0), "{}", daemon.log());
    assert!(daemon.log().contains("did not finish within 500ms"), "{}", daemon.log());
    request.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_metrics_and_status_show_what_happened() {
    let (auth, daemon) = two_tenants("");
    assert_eq!(imds_token(&daemon, "fabrikam", VAULT).await.status(), 200);
    let old = status_json(&daemon)["entries"][0]["token_hash"].as_str().unwrap().to_owned();

    // A forced refresh: one new upstream call, a new token in the cache.
    let before = auth.token_requests();
    let out = daemon.cli(&["refresh", "--profile", "fabrikam", "--resource", VAULT]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("refreshed") && text.contains(VAULT), "{text}");
    assert_eq!(auth.token_requests(), before + 1);
    let status = status_json(&daemon);
    let new = status["entries"][0]["token_hash"].as_str().unwrap();
    assert_ne!(new, old);
    assert!(text.contains(new), "{text}");

    // Status: sockets, exports and per-login health.
    assert_eq!(status["sockets"][0]["address"], daemon.addr.to_string());
    assert_eq!(status["sockets"][0]["origin"], "config");
    assert_eq!(status["exports"]["app-service"]["IDENTITY_ENDPOINT"], daemon.url("/msi/token"));
    let header = env_value(&daemon.env(&[]).unwrap(), "IDENTITY_HEADER");
    assert!(!status.to_string().contains(&header), "status never shows the identity header");
    assert_eq!(status["logins"][0]["profiles"], serde_json::json!(["contoso", "fabrikam"]));
    assert_eq!(status["logins"][0]["needs_attention"], false);

    // The login breaks: refresh says so (exit 1), status and metrics flag it.
    auth.inject(Fault::InvalidGrant, None);
    let out = daemon.cli(&["refresh", "--profile", "fabrikam"]).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("FAILED"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = status_json(&daemon);
    assert_eq!(status["logins"][0]["needs_attention"], true, "{status}");
    assert_eq!(status["logins"][0]["last_upstream_error"]["kind"], "invalid_grant");
    let table = String::from_utf8_lossy(&daemon.cli(&["status"]).unwrap().stdout).into_owned();
    assert!(table.contains("NEEDS ATTENTION") && table.contains("IDENTITY_ENDPOINT="), "{table}");

    let metrics = http().get(daemon.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    for line in [
        r#"azbroker_requests_total{dialect="imds",profile="fabrikam",status="200"} 1"#,
        r#"azbroker_upstream_errors_total{profile="fabrikam",kind="invalid_grant"} 1"#,
        "azbroker_logins_needing_attention 1",
        "azbroker_ready 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing:\n{metrics}");
    }
    assert!(!metrics.contains(CLIENT_SECRET) && !metrics.contains(&header));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_setup_and_says_what_to_fix() {
    let (_auth, mut daemon) = two_tenants("");
    let vars = daemon.env(&[]).unwrap();
    let config_path = daemon.config_path.clone();
    let doctor = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(azbroker_tests::binary());
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.arg("--config").arg(&config_path).arg("doctor").output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let endpoint = env_value(&vars, "IDENTITY_ENDPOINT");
    let header = env_value(&vars, "IDENTITY_HEADER");
    let (code, text) = doctor(&[("IDENTITY_ENDPOINT", &endpoint), ("IDENTITY_HEADER", &header)]);
    assert_eq!(code, Some(0), "{text}");
    for ok in [
        "[ ok ] config",
        "[ ok ] state dir",
        &format!("[ ok ] listener {}", daemon.addr),
        "[ ok ] admin socket",
        "[ ok ] clock",
        "[ ok ] env IDENTITY_ENDPOINT",
    ] {
        assert!(text.contains(ok), "{ok} missing:\n{text}");
    }
    assert!(!text.contains(&header), "doctor never prints the identity header");

    let (code, text) = doctor(&[
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token"),
        ("IDENTITY_HEADER", &header),
        ("IDENTITY_SERVER_THUMBPRINT", "0000"),
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("[FAIL] env IDENTITY_ENDPOINT")
            && text.contains("[warn] env IDENTITY_SERVER_THUMBPRINT"),
        "{text}"
    );
    assert!(text.contains("fix: eval \"$(azbroker env)\""), "{text}");

    daemon.stop().unwrap();
    let (code, text) = doctor(&[("IDENTITY_ENDPOINT", &endpoint), ("IDENTITY_HEADER", &header)]);
    assert_eq!(code, Some(1));
    assert!(text.contains("nothing is listening") && text.contains("systemctl start azbroker"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_one_debug_line_per_request() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let body =
        sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, "[profiles.contoso]\nlogin = \"app\"\n");
    let daemon = Daemon::start(&body, &["--log-format", "json"]).unwrap();
    for _ in 0..2 {
        assert_eq!(imds_token(&daemon, "contoso", VAULT).await.status(), 200);
    }
    let request_lines = || -> Vec<Value> {
        let lines =
            daemon.log().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect::<Vec<_>>();
        lines.into_iter().filter(|l| l["message"] == "token request").collect()
    };
    // Lines arrive through the daemon's log thread: wait (bounded) for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut requests = request_lines();
    while requests.len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        requests = request_lines();
    }
    assert_eq!(requests.len(), 2, "{}", daemon.log());
    for (r, cache) in requests.iter().zip(["miss", "hit"]) {
        assert_eq!(r["level"], "DEBUG");
        assert_eq!(
            (r["profile"].as_str(), r["dialect"].as_str(), r["resource"].as_str()),
            (Some("contoso"), Some("imds"), Some(VAULT))
        );
        assert_eq!((r["status"].as_u64(), r["cache"].as_str()), (Some(200), Some(cache)));
        assert!(r["latency_us"].is_u64(), "{r}");
    }
}

/// `[server] client_wait`: with Entra ID hanging, the client is answered 503 + Retry-After (IMDS
/// shape) once the wait is up, not when the upstream call ends; the call goes on, and its token
/// answers the retry without a second upstream call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upstream_releases_the_client_after_client_wait() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    auth.inject(Fault::Latency(Duration::from_secs(4)), Some(1));
    let body =
        sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, "[profiles.contoso]\nlogin = \"app\"\n");
    let daemon = Daemon::start_with_server(&body, "client_wait = \"1s\"", &[]).unwrap();
    let url = daemon.url(&format!("/metadata/identity/oauth2/token?api-version=2018-02-01&resource={VAULT}"));
    let started = Instant::now();
    let r = http().get(&url).header("Metadata", "true").send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status(), 503);
    assert!(waited >= Duration::from_secs(1) && waited < Duration::from_secs(3), "{waited:?}");
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown", "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http().get(&url).header("Metadata", "true").send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "never served:\n{}", daemon.log());
    }
    assert_eq!(auth.token_requests(), 1, "one upstream call served both attempts");
}
