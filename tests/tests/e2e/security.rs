//! Caller identity and hardening through the real daemon: another local user (via `setpriv`)
//! refused on a restricted profile and served on an open one, per-user default profiles, a
//! resource outside the allow-list refused without an upstream call, hundreds of idle
//! connections that do not block a real client, `rotate-secrets` with its grace period,
//! `admin_group` readers, and no secret in any output of a whole run.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use azbroker_testkit::tenant_guid;
use serde_json::Value;

use super::*;

const ARM: &str = "https://management.azure.com/";
const NOBODY: &str = "65534";
const SHARED: &str = "shared.onmicrosoft.com";

/// Makes the daemon's directory reachable for another user (the state directory stays 0700).
pub(super) fn open_up(daemon: &Daemon) {
    for dir in [daemon.dir.path().to_path_buf(), daemon.dir.path().join("run")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&daemon.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// One raw IMDS GET sent by a shell running as uid 65534: (status, JSON body).
fn imds_as_nobody(daemon: &Daemon, path_and_query: &str) -> (u16, Value) {
    let request = format!(
        "GET {path_and_query} HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nMetadata: true\\r\\nConnection: close\\r\\n\\r\\n"
    );
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; printf '{request}' >&3; timeout 20 cat <&3",
        port = daemon.addr.port()
    );
    let out = as_nobody(&["bash", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub(super) fn as_nobody(cmd: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--"])
        .args(cmd)
        .output()
        .expect("setpriv (util-linux) runs")
}

pub(super) fn nobody_cli(daemon: &Daemon, args: &[&str]) -> Output {
    let bin = azbroker_tests::binary();
    let config = daemon.config_path.to_str().unwrap().to_owned();
    let mut cmd = vec![bin.to_str().unwrap(), "--config", &config];
    cmd.extend_from_slice(args);
    as_nobody(&cmd)
}

fn three_profiles(extra_server: &str) -> (Authority, Daemon) {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let profiles = format!(
        "[profiles.contoso]\nlogin = \"app\"\nallowed_users = [\"*\"]\n\n\
         [profiles.fabrikam]\nlogin = \"app\"\ntenant = \"{FABRIKAM}\"\nallowed_users = [\"root\"]\nallowed_resources = [\"{ARM}\"]\n\n\
         [profiles.shared]\nlogin = \"app\"\ntenant = \"{SHARED}\"\nallowed_users = [\"nobody\", \"root\"]\n\n\
         [users.nobody]\ndefault_profile = \"shared\"\n"
    );
    let body = sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, &profiles);
    let server = format!("default_profile = \"contoso\"\n{extra_server}");
    let daemon = Daemon::start_with_server(&body, &server, &[]).expect("daemon starts");
    (auth, daemon)
}

fn tid(auth: &Authority, body: &Value) -> String {
    let claims = auth.verify(body["access_token"].as_str().expect("a token")).unwrap();
    claims["tid"].as_str().unwrap().to_owned()
}

const TOKEN: &str = "/metadata/identity/oauth2/token?api-version=2018-02-01";

/// An IMDS GET from this (root) process.
async fn imds_get(daemon: &Daemon, path_and_query: &str) -> reqwest::Response {
    http().get(daemon.url(path_and_query)).header("Metadata", "true").send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused_on_a_restricted_profile_and_served_on_an_open_one() {
    let (auth, daemon) = three_profiles("");
    let q = format!("resource={ARM}");
    let (status, body) = imds_as_nobody(&daemon, &format!("/p/fabrikam{TOKEN}&{q}"));
    assert_eq!(status, 403, "{body}");
    let why = body["error_description"].as_str().unwrap();
    assert!(why.contains("uid 65534") && why.contains("profiles.fabrikam.allowed_users"), "{why}");
    assert_eq!(
        auth.requests_for(FABRIKAM, "client_credentials", "https://management.azure.com//.default"),
        0
    );

    let (status, body) = imds_as_nobody(&daemon, &format!("/p/contoso{TOKEN}&{q}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(tid(&auth, &body), tenant_guid(CONTOSO));
    // No selector at all: nobody's own default profile, not the global default.
    let (status, body) = imds_as_nobody(&daemon, &format!("{TOKEN}&{q}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(tid(&auth, &body), tenant_guid(SHARED));

    // The daemon's own user (root here) is served on the restricted profile.
    let r = imds_get(&daemon, &format!("/p/fabrikam{TOKEN}&{q}")).await;
    assert_eq!(r.status(), 200);
    let log = daemon.log();
    let denial = log.lines().find(|l| l.contains("denied by policy")).expect("the denial is logged");
    assert!(denial.contains("uid=65534") && denial.contains("fabrikam"), "{denial}");
    assert!(log.lines().any(|l| l.contains("token granted") && l.contains("uid=65534")), "audit has the uid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_outside_the_allow_list_is_refused_without_an_upstream_call() {
    let (auth, daemon) = three_profiles("");
    let before = auth.token_requests();
    let r = imds_get(&daemon, &format!("/p/fabrikam{TOKEN}&resource=https://vault.azure.net")).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("allowed_resources"), "{body}");
    assert_eq!(auth.token_requests(), before, "no upstream call for a refused resource");
    // Absurd resources and hostile requests are refused before upstream too.
    for (query, header) in [
        (format!("resource=https://x/{}", "a".repeat(3000)), None),
        ("resource=https://x/a%20b".to_owned(), None),
        ("resource=https%3A%2F%2Fx%2".to_owned(), None),
        (format!("resource={ARM}&resource={ARM}"), None),
        (format!("resource={ARM}"), Some(("X-Forwarded-For", "10.0.0.1"))),
        (format!("resource={ARM}"), Some(("Host", "evil.example"))),
    ] {
        let mut req = http().get(daemon.url(&format!("{TOKEN}&{query}"))).header("Metadata", "true");
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 400, "{query} {header:?}");
    }
    assert_eq!(auth.token_requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_idle_connections_do_not_block_a_real_client() {
    let (_auth, daemon) = two_tenants_with_limits("[server.limits]\nmax_connections = 64\n");
    let mut idle = Vec::new();
    for i in 0..450 {
        let mut s = std::net::TcpStream::connect(daemon.addr).unwrap();
        if i % 3 == 0 {
            s.write_all(b"GET /metadata/identity/oauth2/token HTTP/1.1\r\nHost: 127").unwrap();
        }
        idle.push(s);
    }
    let started = Instant::now();
    let r = http()
        .get(daemon.url(&format!("{TOKEN}&resource={ARM}")))
        .header("Metadata", "true")
        .send()
        .await
        .expect("served while 450 idle connections are open");
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(20));
    // The oldest idle connections were closed to make room.
    let mut closed = 0;
    for s in idle.iter_mut().take(100) {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut b = [0u8; 1];
        if matches!(s.read(&mut b), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert!(closed > 50, "{closed} of the 100 oldest idle connections closed");
}

fn two_tenants_with_limits(server_extra: &str) -> (Authority, Daemon) {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let body =
        sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, "[profiles.contoso]\nlogin = \"app\"\n");
    // Sub-tables of [server] must follow its plain keys; the harness appends the rest.
    let daemon = Daemon::start_with_server(&body, server_extra, &[]).expect("daemon starts");
    (auth, daemon)
}

pub(super) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(super) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn app_service_status(daemon: &Daemon, header: &str) -> u16 {
    http()
        .get(daemon.url(&format!("/msi/token?api-version=2019-08-01&resource={ARM}")))
        .header("X-IDENTITY-HEADER", header)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secrets_keep_the_old_value_for_the_grace_period_and_no_output_holds_a_secret() {
    let (_auth, daemon) = three_profiles("rotate_grace = \"2s\"\nadmin_group = \"nogroup\"");
    open_up(&daemon);
    let mut outputs: Vec<String> = Vec::new();
    let mut record = |o: &Output| outputs.push(format!("{}{}", stdout(o), stderr(o)));
    let old = env_value(&daemon.env(&[]).unwrap(), "IDENTITY_HEADER");
    assert_eq!(app_service_status(&daemon, &old).await, 200);
    let wrong = "wrong-identity-header-presented-by-an-attacker";
    assert_eq!(app_service_status(&daemon, wrong).await, 401);
    let mut tokens = Vec::new();
    let r = imds_get(&daemon, &format!("/p/fabrikam{TOKEN}&resource={ARM}")).await;
    tokens.push(r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned());
    let (_, body) = imds_as_nobody(&daemon, &format!("{TOKEN}&resource={ARM}"));
    tokens.push(body["access_token"].as_str().unwrap().to_owned());

    // admin_group: nobody (primary group nogroup) reads status and its env, but changes nothing.
    let o = nobody_cli(&daemon, &["status"]);
    assert!(o.status.success(), "{}", stderr(&o));
    record(&o);
    let o = nobody_cli(&daemon, &["env", "--format", "dotenv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("IDENTITY_HEADER={old}")), "env asks the daemon: {}", stdout(&o));
    let o = nobody_cli(&daemon, &["rotate-secrets"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("may only read"), "{}", stderr(&o));
    record(&o);

    let o = daemon.cli(&["rotate-secrets"]).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("rotated: identity-header"), "{}", stdout(&o));
    record(&o);
    let new = env_value(&daemon.env(&[]).unwrap(), "IDENTITY_HEADER");
    assert_ne!(new, old);
    let file = daemon.dir.path().join("state/identity-header");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(app_service_status(&daemon, &new).await, 200);
    assert_eq!(app_service_status(&daemon, &old).await, 200, "old value within the grace period");
    // The grace period ends: wait (bounded) for the old value to be refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app_service_status(&daemon, &old).await != 401 {
        assert!(std::time::Instant::now() < deadline, "old value still accepted after the grace period");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app_service_status(&daemon, &new).await, 200);

    for args in [&["status", "--json"][..], &["check-config"][..], &["reload"][..]] {
        let o = daemon.cli(args).unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        record(&o);
    }
    let mut raw = std::net::TcpStream::connect(daemon.addr).unwrap();
    let big = format!(
        "GET {TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Identity-Header: {new}\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(20_000)
    );
    let _ = raw.write_all(big.as_bytes());
    let mut reply = String::new();
    let _ = raw.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");

    let mut daemon = daemon;
    daemon.stop().unwrap();
    outputs.push(daemon.log());
    let everything = outputs.join("\n");
    let mut secrets = vec![CLIENT_SECRET.to_owned(), old, new, wrong.to_owned()];
    for t in &tokens {
        secrets.push(t.clone());
        secrets.push(t.rsplit('.').next().unwrap().to_owned()); // the signature alone
    }
    for s in &secrets {
        assert!(!everything.contains(s.as_str()), "a secret appears in the output: {}…", &s[..8]);
    }
    assert!(everything.contains("token granted"), "the run was logged at all");
}
