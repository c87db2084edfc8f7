//! The daemon as a process: exit codes, restarts, reload, shutdown, the offline demo mode.

use std::process::Command;
use std::time::Duration;

use azbroker_tests::{binary, free_port, wait_for_bound};
use serde_json::Value;

use super::*;

#[test]
fn invalid_config_exits_64_and_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\nbogus = 1\n[refresh]\nmargin = \"later\"\n[profiles.x]\nlogin = \"none\"\n"),
    )
    .unwrap();
    let out = Command::new(binary()).arg("--config").arg(&path).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("3 problem"), "{err}");
    assert!(
        err.contains("server.bogus") && err.contains("refresh.margin") && err.contains("profiles.x.login")
    );
    // Nothing is listening.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_header_survives_restart_and_sigterm_exits_zero() {
    let (_auth, mut daemon) = two_tenants("");
    let before = daemon.env(&[]).unwrap();
    let listeners = daemon.listeners_path();
    let mode =
        std::fs::metadata(&listeners).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    assert_eq!(mode.unwrap() & 0o777, 0o600, "listeners.json is private while serving");
    let status = daemon.stop().unwrap();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(!listeners.exists(), "listeners.json is removed at exit");
    daemon.restart(&[]).unwrap();
    let after = daemon.env(&[]).unwrap();
    assert_eq!(env_value(&before, "IDENTITY_HEADER"), env_value(&after, "IDENTITY_HEADER"));
    let header_file = daemon.dir.path().join("state/identity-header");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&header_file).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(daemon.dir.path().join("state")).unwrap().mode() & 0o777, 0o700);
    // The token subcommand works against the running daemon.
    let out = daemon
        .cli(&["token", "--profile", "fabrikam", "--resource", "https://management.azure.com/"])
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let claims = azbroker_testkit::decode_claims(v["accessToken"].as_str().unwrap()).unwrap();
    assert_eq!(claims["tid"], azbroker_testkit::tenant_guid(FABRIKAM));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_applies_good_config_and_rejects_bad() {
    let (auth, daemon) = two_tenants("");
    let original = std::fs::read_to_string(&daemon.config_path).unwrap();
    // Add a profile.
    let added = format!("{original}\n[profiles.extra]\nlogin = \"app\"\ntenant = \"extra.example\"\n");
    std::fs::write(&daemon.config_path, added).unwrap();
    daemon.signal("HUP").unwrap();
    let url = daemon.url("/p/extra/metadata/identity/oauth2/token?api-version=1&resource=api://r");
    let mut ok = false;
    for _ in 0..100 {
        let r = http().get(&url).header("Metadata", "true").send().await.unwrap();
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            let claims = auth.verify(body["access_token"].as_str().unwrap()).unwrap();
            assert_eq!(claims["tid"], azbroker_testkit::tenant_guid("extra.example"));
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "reload did not add the profile:\n{}", daemon.log());
    // A broken config is rejected and the running one keeps serving.
    std::fs::write(&daemon.config_path, "[server]\nnonsense = true\n").unwrap();
    daemon.signal("HUP").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !daemon.log().contains("config reload rejected") {
        assert!(
            std::time::Instant::now() < deadline,
            "the broken config was not rejected:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = http().get(&url).header("Metadata", "true").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_authority_mode_needs_no_config_and_no_account() {
    let dir = tempfile::tempdir().unwrap();
    // Only listeners and private dirs: no logins, no profiles. (Tests never bind the default
    // ports: both listeners take port 0 and the daemon reports what it bound.)
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\n",
        dir.path().join("s").display(),
        dir.path().join("r").display()
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&path)
        .args(["serve", "--local-authority"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (addr, _) = wait_for_bound(&dir.path().join("r"), Duration::from_secs(30)).unwrap_or_else(|e| {
        let _ = child.kill();
        panic!("{e:#}")
    });
    let url = format!(
        "http://{addr}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"
    );
    let mut body = None;
    for _ in 0..200 {
        if let Ok(r) = http().get(&url).header("Metadata", "true").send().await
            && r.status() == 200
        {
            body = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let body = body.expect("local authority served a token");
    let claims = azbroker_testkit::decode_claims(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["tid"], azbroker_testkit::tenant_guid("local.azbroker.invalid"));
    assert_eq!(claims["aud"], "https://management.azure.com/");
}
