//! The admin socket as the CLI uses it: `status` (table and JSON), `reload` with a good and a bad
//! config, the socket's mode, and a clear refusal for another user.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::Value;

use super::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_reload_over_the_admin_socket() {
    let (_auth, daemon) = two_tenants("");
    let socket = daemon.dir.path().join("run/admin.sock");
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    // One cached token, so status has an entry to show.
    let q = "api-version=2018-02-01&resource=https://vault.azure.net";
    let r = http()
        .get(daemon.url(&format!("/p/fabrikam/metadata/identity/oauth2/token?{q}")))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();

    let out = daemon.cli(&["status", "--json"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["ready"], true);
    assert_eq!(status["default_profile"], "contoso");
    assert_eq!(status["profiles"], serde_json::json!(["contoso", "fabrikam"]));
    assert_eq!(status["listeners"][0], daemon.addr.to_string());
    assert_eq!(status["logins"][0]["name"], "app");
    assert_eq!(status["entries"][0]["profile"], "fabrikam");
    assert_eq!(status["entries"][0]["resource"], "https://vault.azure.net");
    assert!(!stdout(&out).contains(&token), "status never prints a token");
    assert!(!stdout(&out).contains(CLIENT_SECRET), "status never prints a client secret");

    let out = daemon.cli(&["status"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("profiles:  contoso (default), fabrikam"), "{table}");
    assert!(table.contains("https://vault.azure.net"), "{table}");

    // A broken config is rejected by the daemon with every problem, and the old one keeps
    // serving. (The CLI itself would refuse to read a broken file, so it reads a good copy that
    // names the same runtime directory, while the daemon re-reads its own, broken, file.)
    let good = std::fs::read_to_string(&daemon.config_path).unwrap();
    let cli_config = daemon.dir.path().join("cli.toml");
    std::fs::write(&cli_config, &good).unwrap();
    std::fs::write(&daemon.config_path, format!("{good}\n[profiles.bad]\nlogin = \"nope\"\nbogus = 1\n"))
        .unwrap();
    let out = Command::new(azbroker_tests::binary())
        .arg("--config")
        .arg(&cli_config)
        .arg("reload")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("rejected") && err.contains("nope") && err.contains("bogus"), "{err}");
    let out = Command::new(azbroker_tests::binary())
        .arg("--config")
        .arg(&cli_config)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["profiles"], serde_json::json!(["contoso", "fabrikam"]));
    assert!(daemon.log().contains("config reload rejected"));

    // A good one applies at once; the unchanged profile keeps its cached token.
    std::fs::write(
        &daemon.config_path,
        format!("{good}\n[profiles.third]\nlogin = \"app\"\ntenant = \"third.example\"\n"),
    )
    .unwrap();
    let out = daemon.cli(&["reload"]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("3 profile(s)"), "{}", stdout(&out));
    let out = daemon.cli(&["status", "--json"]).unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["profiles"], serde_json::json!(["contoso", "fabrikam", "third"]));
    assert_eq!(status["entries"].as_array().unwrap().len(), 1, "fabrikam's token survived the reload");
}

#[test]
fn status_without_a_daemon_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, format!("[server]\nruntime_dir = \"{}\"\n", dir.path().join("run").display()))
        .unwrap();
    let out = Command::new(azbroker_tests::binary())
        .arg("--config")
        .arg(&config)
        .arg("status")
        .env("AZBROKER_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is `azbroker serve` running"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused_with_a_clear_message() {
    if !std::path::Path::new("/usr/bin/setpriv").exists() {
        panic!("setpriv (util-linux) is required by this test; .ci/run installs it");
    }
    let (_auth, daemon) = two_tenants("");
    // The other user must be able to read the config to find the socket at all.
    let shared = tempfile::Builder::new().prefix("azb-admin").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = shared.path().join("c.toml");
    std::fs::copy(&daemon.config_path, &config).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(azbroker_tests::binary())
        .arg("--config")
        .arg(&config)
        .arg("status")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("permission denied") && err.contains("admin socket"), "{err}");
}
