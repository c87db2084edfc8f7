//! User logins end to end, through the real CLI and daemon: device-code sign-in, one refresh
//! token redeemed in a second tenant, restart keeping the login (with rotation retiring old
//! refresh tokens), the store holding no plaintext, a wrong key refused, revocation and MFA
//! yielding errors that name the command, Ctrl-C, browser sign-in, tenants, logout.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use azbroker_testkit::tenant_guid;
use serde_json::Value;

use super::*;

pub const ALICE: &str = "alice@contoso.onmicrosoft.com";
const VAULT: &str = "https://vault.azure.net";

/// A daemon with one user login `me` and profiles `home` (the login's authority) and `fabrikam`.
pub fn user_daemon(auth: &Authority, extra: &str) -> Daemon {
    auth.add_user(ALICE, &[CONTOSO, FABRIKAM]);
    auth.set_device_code_timing(Duration::from_secs(1), Duration::from_secs(120));
    let url = auth.url();
    let body = format!(
        "[cloud]\nauthority_host = \"{url}\"\narm_endpoint = \"{url}\"\n\n\
         # the person\n[logins.me]\nkind = \"user\"\n\n\
         [profiles.home]\nlogin = \"me\"\n\n[profiles.fabrikam]\nlogin = \"me\"\ntenant = \"{FABRIKAM}\"\n{extra}"
    );
    Daemon::start_with_server(&body, "default_profile = \"home\"", &[]).expect("daemon starts")
}

pub async fn imds_token(daemon: &Daemon, profile: &str, resource: &str) -> (u16, Value) {
    let url = daemon.url(&format!(
        "/p/{profile}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}"
    ));
    let r = http().get(url).header("Metadata", "true").send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn tid_of(auth: &Authority, body: &Value) -> String {
    auth.verify(body["access_token"].as_str().unwrap()).unwrap()["tid"].as_str().unwrap().to_owned()
}

/// Runs `azbroker login ARGS` to completion with device codes approved as they appear.
pub fn login(daemon: &Daemon, auth: &Authority, args: &[&str]) -> std::process::Output {
    auth.auto_approve_device_codes(Some(ALICE));
    let mut all = vec!["login"];
    all.extend_from_slice(args);
    let out = daemon.cli(&all).unwrap();
    auth.auto_approve_device_codes(None);
    assert!(out.status.success(), "login failed: {}\n{}", String::from_utf8_lossy(&out.stderr), daemon.log());
    out
}

fn status(daemon: &Daemon) -> Value {
    let out = daemon.cli(&["status", "--json"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn login_status(daemon: &Daemon, name: &str) -> Value {
    status(daemon)["logins"].as_array().unwrap().iter().find(|l| l["name"] == name).cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_login_serves_every_tenant_and_survives_restart() {
    let auth = Authority::start();
    let mut daemon = user_daemon(&auth, "");
    // Before any sign-in, clients are told exactly what to run.
    let (code, body) = imds_token(&daemon, "fabrikam", VAULT).await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["error_description"].as_str().unwrap().contains("run `azbroker login --login me`"),
        "{body}"
    );
    assert_eq!(login_status(&daemon, "me")["state"], "not_signed_in");

    // Sign in: the CLI prints Entra's message with the code and waits for the approval.
    let mut child = Command::new(azbroker_tests::binary())
        .arg("--config")
        .arg(&daemon.config_path)
        .args(["login", "--login", "me", "--device-code"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let message = lines.next().unwrap().unwrap();
    let codes = auth.pending_user_codes();
    assert_eq!(codes.len(), 1);
    assert!(message.contains(&codes[0]) && message.contains("/devicelogin"), "{message}");
    assert!(auth.approve_device_code(&codes[0], ALICE));
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "login did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(exit.success(), "{rest:?}\n{}", daemon.log());
    assert!(rest.iter().any(|l| l.contains(&format!("Signed in as {ALICE}"))), "{rest:?}");
    // From now on a refresh token that has been redeemed stops working: the daemon must keep
    // the rotated one every time, across restarts too.
    auth.set_rotation_revokes_old(true);

    let (code, body) = imds_token(&daemon, "fabrikam", VAULT).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(tid_of(&auth, &body), tenant_guid(FABRIKAM));
    let (code, body) = imds_token(&daemon, "home", VAULT).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(tid_of(&auth, &body), tenant_guid(CONTOSO));
    let claims = auth.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["upn"], ALICE);
    let me = login_status(&daemon, "me");
    assert_eq!((me["state"].as_str(), me["account"].as_str()), (Some("signed_in"), Some(ALICE)));

    // The store: private, and no token, refresh token or user name in it.
    let store = daemon.dir.path().join("state/logins.store");
    assert_eq!(std::fs::metadata(&store).unwrap().mode() & 0o777, 0o600);
    let bytes = std::fs::read(&store).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    for rt in auth.issued_refresh_tokens() {
        assert!(!text.contains(&rt[5..40]), "a refresh token is in the store in plaintext");
    }
    assert!(!text.contains("alice") && !text.contains(body["access_token"].as_str().unwrap()));

    // Restart: the login is still there and the latest refresh token works.
    daemon.restart(&[]).unwrap();
    let (code, body) = imds_token(&daemon, "fabrikam", "https://storage.azure.com").await;
    assert_eq!(code, 200, "{body}\n{}", daemon.log());
    assert_eq!(tid_of(&auth, &body), tenant_guid(FABRIKAM));

    // The tenants the user can reach, from ARM.
    let out = daemon.cli(&["tenants", "--login", "me", "--json"]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tenants: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> =
        tenants.as_array().unwrap().iter().map(|t| t["tenant_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![tenant_guid(CONTOSO), tenant_guid(FABRIKAM)]);
    let out = daemon.cli(&["tenants"]).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(FABRIKAM));

    // Logout forgets the refresh token and the cached tokens.
    let out = daemon.cli(&["logout", "--login", "me"]).unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Signed out"));
    let (code, body) = imds_token(&daemon, "fabrikam", VAULT).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(login_status(&daemon, "me")["state"], "not_signed_in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_under_another_key_is_refused_and_kept() {
    let auth = Authority::start();
    let mut daemon = user_daemon(&auth, "");
    login(&daemon, &auth, &[]);
    daemon.stop().unwrap();
    let store = daemon.dir.path().join("state/logins.store");
    let before = std::fs::read(&store).unwrap();

    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("azbroker.key"), [0x5au8; 32]).unwrap();
    let out = Command::new(azbroker_tests::binary())
        .arg("--config")
        .arg(&daemon.config_path)
        .arg("serve")
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to open the login store") && err.contains("another key"), "{err}");
    assert_eq!(std::fs::read(&store).unwrap(), before, "the store was not touched");

    // With the right key everything is still there.
    daemon.restart(&[]).unwrap();
    let (code, body) = imds_token(&daemon, "fabrikam", VAULT).await;
    assert_eq!(code, 200, "{body}");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_locked_out() {
    let auth = Authority::start();
    let daemon = user_daemon(&auth, "");
    let other = daemon.dir.path().join("other.toml");
    let text = std::fs::read_to_string(&daemon.config_path).unwrap();
    let text = text.replace(&daemon.addr.to_string(), "127.0.0.1:0").replace(
        &format!("{}", daemon.dir.path().join("run").display()),
        &format!("{}", daemon.dir.path().join("run2").display()),
    );
    std::fs::write(&other, text).unwrap();
    // Deleting whatever lock file there may be does not free the store (issue 11, finding 13).
    let state = daemon.dir.path().join("state");
    let _ = std::fs::remove_file(state.join("logins.lock"));
    let out =
        Command::new(azbroker_tests::binary()).arg("--config").arg(&other).arg("serve").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process") && err.contains(&state.display().to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_login_and_mfa_tenant_name_the_command_and_a_sign_in_clears_them() {
    let auth = Authority::start();
    let daemon = user_daemon(&auth, "");
    login(&daemon, &auth, &[]);
    assert_eq!(imds_token(&daemon, "home", VAULT).await.0, 200);

    auth.revoke_refresh_tokens(ALICE);
    let (code, body) = imds_token(&daemon, "home", "https://storage.azure.com").await;
    assert_eq!(code, 400, "{body}");
    let text = body["error_description"].as_str().unwrap();
    assert!(text.contains("run `azbroker login --login me`") && text.contains("AADSTS50173"), "{text}");
    // No retry storm: other resources and tenants fail at once without asking Entra again.
    let upstream = auth.token_requests();
    for resource in ["https://storage.azure.com", "https://graph.microsoft.com", "api://x"] {
        for profile in ["home", "fabrikam"] {
            assert_eq!(imds_token(&daemon, profile, resource).await.0, 400);
        }
    }
    assert_eq!(auth.token_requests(), upstream);
    let me = login_status(&daemon, "me");
    assert_eq!(me["state"], "needs_sign_in");
    assert_eq!(me["command"], "azbroker login --login me");
    let table = String::from_utf8_lossy(&daemon.cli(&["status"]).unwrap().stdout).into_owned();
    assert!(table.contains("NEEDS SIGN-IN") && table.contains("run `azbroker login --login me`"), "{table}");

    // Signing in again clears it at once: the very next request succeeds.
    login(&daemon, &auth, &["--login", "me"]);
    let (code, body) = imds_token(&daemon, "home", "https://storage.azure.com").await;
    assert_eq!(code, 200, "{body}");

    // Fabrikam starts demanding MFA: only that tenant needs a sign-in, at that tenant.
    auth.require_interaction(FABRIKAM, 50076);
    let (code, body) = imds_token(&daemon, "fabrikam", VAULT).await;
    assert_eq!(code, 400, "{body}");
    let text = body["error_description"].as_str().unwrap();
    assert!(text.contains(&format!("run `azbroker login --login me --tenant {FABRIKAM}`")), "{text}");
    assert_eq!(imds_token(&daemon, "home", VAULT).await.0, 200, "the home tenant is unaffected");
    let me = login_status(&daemon, "me");
    assert_eq!(me["state"], "signed_in");
    assert_eq!(me["tenants_needing_sign_in"][0]["tenant"], FABRIKAM);
    login(&daemon, &auth, &["--tenant", FABRIKAM]);
    let (code, body) = imds_token(&daemon, "fabrikam", VAULT).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(tid_of(&auth, &body), tenant_guid(FABRIKAM));
}

#[test]
fn ctrl_c_cancels_the_sign_in() {
    let auth = Authority::start();
    let daemon = user_daemon(&auth, "");
    let mut child = Command::new(azbroker_tests::binary())
        .arg("--config")
        .arg(&daemon.config_path)
        .arg("login")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while auth.pending_user_codes().is_empty() {
        assert!(Instant::now() < deadline, "no device code was requested");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Interrupt once the CLI is waiting on the flow (it has printed its progress line, so its
    // Ctrl-C handler is in place), not after a guessed delay.
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let (waiting_tx, waiting_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("Ctrl-C cancels") {
                let _ = waiting_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    if waiting_rx.recv_timeout(Duration::from_secs(20)).is_err() {
        let _ = child.kill();
        panic!("the CLI never waited for the sign-in: {}", reader.join().unwrap_or_default());
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    let err = reader.join().expect("stderr reader");
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("cancelled"), "{err}");
    // The daemon stopped the flow: approving now signs nobody in.
    let code = auth.pending_user_codes().pop().unwrap();
    auth.approve_device_code(&code, ALICE);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(login_status(&daemon, "me")["state"], "not_signed_in");
    assert!(daemon.log().contains("sign-in cancelled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sign_in_with_pkce_and_a_loopback_redirect() {
    let auth = Authority::start();
    let daemon = user_daemon(&auth, "");
    // The "browser" follows the authorize URL: the fake signs the scripted user in and redirects
    // to the daemon's loopback listener.
    let browser = daemon.dir.path().join("browser");
    std::fs::write(
        &browser,
        "#!/bin/sh\nexec python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=20).read()' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&browser, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let browser_login = || {
        Command::new(azbroker_tests::binary())
            .arg("--config")
            .arg(&daemon.config_path)
            .args(["login", "--browser"])
            .env("BROWSER", &browser)
            .env("no_proxy", "*")
            .env_remove("http_proxy")
            .output()
            .unwrap()
    };
    auth.set_browser_user(Some(ALICE));
    let out = browser_login();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\n{}", String::from_utf8_lossy(&out.stderr), daemon.log());
    assert!(
        stdout.contains("Opened a browser") && stdout.contains(&format!("Signed in as {ALICE}")),
        "{stdout}"
    );
    let (code, body) = imds_token(&daemon, "fabrikam", VAULT).await;
    assert_eq!(code, 200, "{body}");

    // A user who cancels in the browser: the CLI reports the failure.
    auth.set_browser_user(None);
    let out = browser_login();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access_denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
