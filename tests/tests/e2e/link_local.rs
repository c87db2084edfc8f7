//! IMDS on 169.254.169.254:80 (`[server] imds_link_local = true`), exercised **only inside a
//! network namespace this test creates** (`ip netns add`): the daemon adds the address to that
//! namespace's `lo` and removes it on exit, and clients run there with no environment variables at
//! all — exactly how Go, Rust and msrestazure find IMDS on a VM. The namespace cannot reach the
//! host's loopback, so the testkit (fake Entra ID, and fake Resource Manager for `az`) runs inside
//! it as a process of its own (`fake_cloud`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use azbroker_tests::compat::Outcome;
use azbroker_tests::{binary, free_port};

use super::clients::{judge, run, support};
use super::*;

/// A network namespace with only `lo` up, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        remove_orphans();
        let name = format!("azb-e2e-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let ok = Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success());
        assert!(ok, "cannot create network namespace {name} (the link-local tests need root and iproute2)");
        let ns = Self { name };
        assert!(ns.command("ip").args(["link", "set", "lo", "up"]).status().unwrap().success());
        ns
    }

    /// The namespace's name (for `ip ... netns NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` run inside the namespace, with no environment at all.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg("env").arg("-i").arg(program.as_ref());
        cmd.env_clear();
        cmd
    }

    /// Like [`Netns::command`], with exactly the variables `vars`.
    pub fn command_with(&self, vars: &[(&str, &str)], program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg("env").arg("-i");
        cmd.args(vars.iter().map(|(k, v)| format!("{k}={v}"))).arg(program.as_ref());
        cmd.env_clear();
        cmd
    }

    /// Whether 169.254.169.254 is an address of this namespace's `lo`.
    pub fn has_imds_address(&self) -> bool {
        let out =
            self.command("/usr/sbin/ip").args(["-o", "-4", "addr", "show", "dev", "lo"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("169.254.169.254/")
    }
}

/// Deletes namespaces left by test processes that died before their `Drop` ran.
fn remove_orphans() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix("azb-e2e-").and_then(|rest| rest.split('-').next()) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A daemon serving inside a namespace, with the link-local mode on.
pub struct NsDaemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NsDaemon {
    pub fn start(ns: &Netns, authority: &str) -> Result<Self, String> {
        Self::start_with(ns, authority, "")
    }

    /// Like [`NsDaemon::start`] with extra lines for the `[server]` table.
    pub fn start_with(ns: &Netns, authority: &str, server_extra: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[cloud]\nauthority_host = \"{authority}\"\n\n[server]\nlisten = [\"127.0.0.1:{}\"]\ntls_listen = []\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\n\
             imds_link_local = true\ndefault_profile = \"contoso\"\n{server_extra}\n\n\
             [logins.app]\nkind = \"service-principal\"\ntenant = \"{CONTOSO}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\n\
             [profiles.contoso]\nlogin = \"app\"\n\n[profiles.fabrikam]\nlogin = \"app\"\ntenant = \"{FABRIKAM}\"\naliases = [\"{FABRIKAM_ALIAS}\"]\n",
            free_port(),
            dir.path().join("state").display(),
            dir.path().join("run").display(),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
        let child = ns
            .command(binary())
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut daemon = Self { dir, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = daemon.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                daemon.child = None;
                return Err(format!("exited ({status}): {}", daemon.log()));
            }
            if daemon.log().contains(" ready") {
                return Ok(daemon);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("not ready within 30 s: {}", daemon.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (bounded wait).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        terminate(self.child.take().expect("running"))
    }
}

/// SIGTERM to a daemon, then its exit status (bounded wait).
pub fn terminate(mut child: Child) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "daemon did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An absolute path for `program` (there is no PATH inside `env -i`).
pub fn absolute(program: &Path) -> PathBuf {
    if program.is_absolute() {
        return program.to_owned();
    }
    let out = Command::new("sh").arg("-c").arg(format!("command -v {}", program.display())).output().unwrap();
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The testkit running inside a namespace (`fake_cloud`), stopped on drop.
pub struct NsCloud {
    child: Child,
    out: std::io::BufReader<std::process::ChildStdout>,
    pub authority: String,
    pub arm: String,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl NsCloud {
    pub fn start(ns: &Netns) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut child = ns
            .command(env!("CARGO_BIN_EXE_fake_cloud"))
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("fake_cloud said {line:?}"));
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        Self {
            authority: s("authority"),
            arm: s("arm"),
            ca_file: PathBuf::from(s("ca_file")),
            child,
            out,
            _dir: dir,
        }
    }

    /// Sends one steering line (see `fake_cloud`) and waits for its `ok`.
    pub fn steer(&mut self, command: &str) {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().expect("fake_cloud's stdin");
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "fake_cloud answered {command:?} with {line:?}");
    }
}

impl Drop for NsCloud {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The `imds-link-local` column: every client that supports it, run in a fresh namespace with no
/// environment, selecting the fabrikam profile by its alias as a user-assigned client id.
pub fn matrix_column() -> Vec<(&'static str, Outcome)> {
    let ns = Netns::create();
    let cloud = NsCloud::start(&ns);
    let clients = super::clients::clients((&cloud.arm, &cloud.ca_file));
    let clients = &clients;
    let daemon = match NsDaemon::start(&ns, &cloud.authority) {
        Ok(d) => d,
        Err(e) => return clients.iter().map(|c| (c.id, Outcome::Fail(format!("daemon: {e}")))).collect(),
    };
    let home_dir = tempfile::tempdir().unwrap();
    let home = home_dir.path().display().to_string();
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .map(|c| {
                let (ns, home) = (&ns, &home);
                s.spawn(move || {
                    if let Some(why) = support(c.id, "imds-link-local") {
                        return (c.id, Outcome::Unsupported(why));
                    }
                    let mut cmd = ns.command(absolute(&c.program));
                    if c.id == "azureml-core-msi" {
                        // azureml-core cannot even be imported without HOME (it joins
                        // $HOME/.config at import time); every other client gets nothing at all.
                        cmd = ns.command_with(&[("HOME", home.as_str())], absolute(&c.program));
                    }
                    cmd.args(&c.args).args(["--resource", "https://management.azure.com/"]);
                    cmd.args(["--client-id", FABRIKAM_ALIAS, "--allow-non-loopback"]);
                    (c.id, judge(&run(cmd, c.id), FABRIKAM))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    if results.iter().any(|(_, o)| matches!(o, Outcome::Fail(_))) {
        eprintln!("link-local daemon log:\n{}", daemon.log());
    }
    results
}

#[test]
fn link_local_address_is_added_refused_twice_and_removed_on_exit() {
    let ns = Netns::create();
    let cloud = NsCloud::start(&ns);
    assert!(!ns.has_imds_address());
    let mut daemon = NsDaemon::start(&ns, &cloud.authority).expect("daemon starts in the namespace");
    assert!(ns.has_imds_address(), "the daemon added 169.254.169.254 to lo");
    // A second daemon in the same namespace cannot take the address over.
    let second =
        NsDaemon::start(&ns, &cloud.authority).err().expect("a second link-local daemon refuses to start");
    assert!(second.contains("169.254.169.254:80"), "{second}");
    assert!(ns.has_imds_address(), "the refused daemon left the address alone");
    assert!(daemon.stop().success(), "{}", daemon.log());
    assert!(!ns.has_imds_address(), "the address is removed on exit:\n{}", daemon.log());
}

#[test]
fn link_local_mode_refuses_to_shadow_an_imds_that_already_answers() {
    use std::io::BufRead;
    let ns = Netns::create();
    // A stand-in for a real IMDS: something answering on 169.254.169.254:80 although the address
    // is not on lo (a local route and IP_FREEBIND, inside this namespace only).
    let route = ns
        .command("/usr/sbin/ip")
        .args(["route", "add", "local", "169.254.169.254/32", "dev", "lo"])
        .status();
    assert!(route.unwrap().success());
    let script = "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_IP, 15, 1)\n\
                  s.bind(('169.254.169.254', 80))\ns.listen()\nprint('ready', flush=True)\nsys.stdin.read()";
    let mut imds = ns
        .command(absolute(Path::new("python3")))
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(imds.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let err = NsDaemon::start(&ns, "http://127.0.0.1:9").err().expect("the daemon refuses to start");
    assert!(err.contains("already answers") && err.contains("force_link_local"), "{err}");
    assert!(!ns.has_imds_address(), "nothing was added to lo");
    drop(imds.stdin.take());
    let _ = imds.wait();
}
