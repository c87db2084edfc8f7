//! The daemon under systemd's protocols, without systemd as PID 1: the unit files pass
//! `systemd-analyze verify`; socket activation through the real `systemd-socket-activate`
//! (one unnamed TCP socket, and named sockets for a profile and the admin socket); readiness,
//! reload and watchdog notifications on a `NOTIFY_SOCKET` this test listens on.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azbroker_tests::{binary, free_port, repo_root};
use serde_json::{Value, json};

use super::*;

fn need(tool: &str) {
    let found =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(tool).exists());
    assert!(found, "{tool} (Debian package systemd) is required by this test; .ci/run installs it");
}

/// The repository's unit files with `ExecStart=` pointing at the built binary (verify insists
/// that the executable exists), optionally with a drop-in's lines appended to the service.
fn staged_units(dir: &Path, from: &Path, dropin: Option<&Path>) -> Vec<PathBuf> {
    let bin = binary();
    let mut out = Vec::new();
    for name in ["azbroker.service", "azbroker.socket"] {
        let mut text = std::fs::read_to_string(from.join(name)).unwrap();
        text = text.replace("/usr/bin/azbroker", bin.to_str().unwrap());
        if let (Some(d), true) = (dropin, name.ends_with(".service")) {
            text.push('\n');
            text.push_str(&std::fs::read_to_string(d).unwrap());
        }
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        out.push(path);
    }
    out
}

fn verify(units: &[PathBuf], user: bool, runtime: &Path) {
    let mut cmd = Command::new("systemd-analyze");
    if user {
        cmd.arg("--user").env("XDG_RUNTIME_DIR", runtime);
    }
    let out = cmd.args(["verify", "--man=no"]).args(units).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values, only warning: treat any output as failure.
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify {units:?}:\n{stderr}");
}

#[test]
fn unit_files_pass_systemd_analyze_verify() {
    need("systemd-analyze");
    let root = repo_root().join("systemd");
    let tmp = tempfile::tempdir().unwrap();
    let (system, user, linklocal) = (tmp.path().join("s"), tmp.path().join("u"), tmp.path().join("l"));
    for d in [&system, &user, &linklocal] {
        std::fs::create_dir(d).unwrap();
    }
    verify(&staged_units(&system, &root, None), false, tmp.path());
    verify(&staged_units(&user, &root.join("user"), None), true, tmp.path());
    verify(&staged_units(&linklocal, &root, Some(&root.join("azbroker-link-local.conf"))), false, tmp.path());
    // And verify does catch mistakes (so the checks above mean something).
    let bad = tmp.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let units = staged_units(&bad, &root, None);
    let text =
        std::fs::read_to_string(&units[0]).unwrap().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes");
    std::fs::write(&units[0], text).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&units).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoNewPrivilege"), "verify did not flag a typo");
}

/// The test's end of `$NOTIFY_SOCKET`.
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Self { socket, path }
    }

    /// Datagrams until one contains `want` (bounded by `limit`); returns all of them.
    fn until(&self, want: &str, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.lines().any(|l| l == want);
                seen.push(msg);
                if done {
                    return seen;
                }
            }
        }
        panic!("no {want} within {limit:?}; got {seen:?}");
    }
}

/// `systemd-socket-activate ARGS -- azbroker --config CONFIG serve`, killed on drop.
struct Activated {
    child: Child,
    log: PathBuf,
}

impl Activated {
    fn start(
        listen: &[String],
        fdnames: Option<&str>,
        env: &[(&str, String)],
        config: &Path,
        log: PathBuf,
    ) -> Self {
        need("systemd-socket-activate");
        let mut cmd = Command::new("systemd-socket-activate");
        for l in listen {
            cmd.arg("-l").arg(l);
        }
        if let Some(names) = fdnames {
            cmd.arg(format!("--fdname={names}"));
        }
        // It hands the daemon no environment but what -E names.
        for (k, v) in env {
            cmd.arg("-E").arg(format!("{k}={v}"));
        }
        let file = std::fs::File::create(&log).unwrap();
        cmd.arg(binary())
            .arg("--config")
            .arg(config)
            .args(["--log-level", "debug", "serve"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        Self { child: cmd.spawn().unwrap(), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        // systemd-socket-activate execs the daemon in its own process: same pid.
        assert!(
            Command::new("kill")
                .args([&format!("-{sig}"), &self.child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "did not exit within {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits until systemd-socket-activate listens, and connects once, which makes it exec the
/// daemon (the connection then waits in the passed socket's backlog).
fn trigger(port: u16) -> std::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) => assert!(Instant::now() < deadline, "systemd-socket-activate does not listen: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, listen: u16, auth: &Authority, extra_profile_keys: &str) -> PathBuf {
    let profiles = format!(
        "[profiles.contoso]\nlogin = \"app\"\n\n[profiles.fabrikam]\nlogin = \"app\"\ntenant = \"{FABRIKAM}\"\n{extra_profile_keys}\n"
    );
    let body = sp_config(&auth.url(), CONTOSO, CLIENT_ID, CLIENT_SECRET, &profiles);
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{listen}\"]\ntls_listen = []\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\ndefault_profile = \"contoso\"\n\n{body}",
        dir.join("state").display(),
        dir.join("run").display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn tid_of(auth: &Authority, body: &Value) -> String {
    let claims = auth.verify(body["access_token"].as_str().unwrap()).unwrap();
    claims["tid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unnamed_socket_readiness_reload_watchdog_and_stop() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let unused = free_port();
    // The config names another port: with a passed socket the daemon binds nothing itself.
    let config = write_config(dir.path(), unused, &auth, "");
    let notify = Notify::bind(dir.path());
    let env = [("NOTIFY_SOCKET", notify.path.display().to_string()), ("WATCHDOG_USEC", "200000".to_owned())];
    let mut daemon =
        Activated::start(&[format!("127.0.0.1:{port}")], None, &env, &config, dir.path().join("log"));

    // systemd-socket-activate starts the daemon on the first connection, which then waits in
    // the passed socket's backlog and is answered once the daemon serves.
    let url = format!(
        "http://127.0.0.1:{port}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://r"
    );
    let connected = Instant::now();
    drop(trigger(port));
    let r = http().get(&url).header("Metadata", "true").send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", daemon.log());
    assert_eq!(tid_of(&auth, &r.json().await.unwrap()), azbroker_testkit::tenant_guid(CONTOSO));
    let seen = notify.until("READY=1", Duration::from_secs(10));
    eprintln!("socket-activated: first connection to READY=1 within {:?} (incl. exec)", connected.elapsed());
    assert!(seen.iter().any(|m| m.contains("STATUS=serving")), "{seen:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", unused)).is_err(),
        "the config's listen address is not bound"
    );
    assert!(daemon.log().contains("not in the config's listen addresses"), "{}", daemon.log());
    notify.until("WATCHDOG=1", Duration::from_secs(5));
    notify.until("WATCHDOG=1", Duration::from_secs(5));

    daemon.signal("HUP");
    let seen = notify.until("READY=1", Duration::from_secs(10));
    assert!(seen.iter().any(|m| m.lines().any(|l| l == "RELOADING=1")), "{seen:?}");

    daemon.signal("TERM");
    notify.until("STOPPING=1", Duration::from_secs(10));
    assert_eq!(daemon.wait(Duration::from_secs(20)).code(), Some(0), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_sockets_become_profile_listeners_and_the_admin_socket() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let (general, fabrikam) = (free_port(), free_port());
    let config = write_config(dir.path(), general, &auth, &format!("listen = [\"127.0.0.1:{fabrikam}\"]"));
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    let admin = dir.path().join("run/admin.sock");
    let listen =
        [format!("127.0.0.1:{general}"), format!("127.0.0.1:{fabrikam}"), admin.display().to_string()];
    let mut daemon =
        Activated::start(&listen, Some("http:fabrikam:admin"), &[], &config, dir.path().join("log"));
    drop(trigger(general));

    // The fabrikam socket serves fabrikam without any /p/ prefix; the general one the default.
    let q = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://r";
    let r = http()
        .get(format!("http://127.0.0.1:{fabrikam}{q}"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", daemon.log());
    assert_eq!(tid_of(&auth, &r.json().await.unwrap()), azbroker_testkit::tenant_guid(FABRIKAM));
    let r =
        http().get(format!("http://127.0.0.1:{general}{q}")).header("Metadata", "true").send().await.unwrap();
    assert_eq!(tid_of(&auth, &r.json().await.unwrap()), azbroker_testkit::tenant_guid(CONTOSO));

    // The CLI reaches the daemon over the passed admin socket.
    let out =
        Command::new(binary()).arg("--config").arg(&config).args(["status", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), daemon.log());
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sockets = status["sockets"].as_array().unwrap();
    assert_eq!(sockets.len(), 4, "{status}");
    assert!(sockets[..3].iter().all(|s| s["origin"] == "systemd"), "{status}");
    // contoso has no listener of its own from systemd: the daemon opened one for it.
    assert_eq!(
        (&sockets[3]["origin"], &sockets[3]["profile"]),
        (&json!("auto"), &json!("contoso")),
        "{status}"
    );
    assert!(
        sockets.iter().any(|s| s["profile"] == "fabrikam" && s["address"] == format!("127.0.0.1:{fabrikam}"))
    );
    assert_eq!(sockets[2]["address"], admin.display().to_string());

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)).code(), Some(0), "{}", daemon.log());
    assert!(admin.exists(), "a socket systemd passed is not the daemon's to remove");
}

#[test]
fn a_socket_named_after_no_profile_is_refused_at_start() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &auth, "");
    let mut daemon = Activated::start(
        &[format!("127.0.0.1:{port}")],
        Some("fabrikma"),
        &[],
        &config,
        dir.path().join("log"),
    );
    // Trigger the exec, then expect a clean refusal naming the fix.
    drop(trigger(port));
    let status = daemon.wait(Duration::from_secs(20));
    assert!(!status.success());
    let log = daemon.log();
    assert!(log.contains("'fabrikma'") && log.contains("FileDescriptorName="), "{log}");
}

#[test]
fn readiness_does_not_wait_for_logins_or_prefetch() {
    let auth = Authority::start();
    auth.register_app(CLIENT_ID, CLIENT_SECRET);
    let dir = tempfile::tempdir().unwrap();
    // A prefetch against a slow upstream must not delay readiness.
    auth.inject(azbroker_testkit::Fault::Latency(Duration::from_secs(3)), Some(1));
    let config =
        write_config(dir.path(), free_port(), &auth, "prefetch = [\"https://management.azure.com/\"]");
    let notify = Notify::bind(dir.path());
    let started = Instant::now();
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
        .spawn()
        .unwrap();
    notify.until("READY=1", Duration::from_secs(10));
    let ready = started.elapsed();
    // Causal, not timed: the prefetch's token had not been issued yet when READY=1 came.
    let issued_at_ready = auth.issued_tokens();
    eprintln!("exec to READY=1: {ready:?} (a prefetch delayed 3 s upstream still under way)");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
    assert_eq!(issued_at_ready, 0, "readiness waited for the prefetch");
    assert_eq!(status.code(), Some(0), "{status:?}\n{log}");
}
