//! The daemon that starts itself: as a real non-root user with a config of their own, the first
//! `azbroker token` finds no daemon, starts one in the background and prints a token; two
//! concurrent first commands leave exactly one daemon; `azbroker stop` ends it; autostart off, or
//! a config file of another user, starts nothing and the error names `azbroker serve`; a daemon
//! that cannot start shows its own error and its log's path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use azbroker_tests::users::LocalUser;
use azbroker_tests::{Authority, binary, free_port, sp_config};

use crate::{CLIENT_ID, CLIENT_SECRET, CONTOSO};

const VAULT: &str = "https://vault.azure.net";

/// A user's own setup: a directory of theirs with a config (listening on `port`) whose state and
/// runtime directories are inside it.
struct Setup {
    user: LocalUser,
    dir: tempfile::TempDir,
    config: PathBuf,
    _auth: Authority,
}

impl Setup {
    fn new(port: u16) -> Option<Self> {
        let user = LocalUser::ensure("azb-autostart")?;
        let auth = Authority::start();
        auth.register_app(CLIENT_ID, CLIENT_SECRET);
        let dir = tempfile::Builder::new().prefix("azb-autostart").tempdir_in("/tmp").unwrap();
        let config = dir.path().join("config.toml");
        let body = sp_config(
            &auth.url(),
            CONTOSO,
            CLIENT_ID,
            CLIENT_SECRET,
            "[profiles.contoso]\nlogin = \"app\"\n",
        );
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = []\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\n\n{body}",
                dir.path().join("state").display(),
                dir.path().join("run").display()
            ),
        )
        .unwrap();
        for p in [dir.path(), &config] {
            std::os::unix::fs::chown(p, Some(user.uid), Some(user.gid)).unwrap();
        }
        Some(Self { user, dir, config, _auth: auth })
    }

    /// `azbroker --config CONFIG ARGS` as the user.
    fn azbroker(&self, args: &[&str]) -> Command {
        let mut cmd = self.user.command(binary());
        cmd.arg("--config").arg(&self.config).args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.azbroker(args).output().expect("azbroker runs")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("state/daemon.log")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        // A test that failed half-way leaves no daemon behind.
        for pid in daemons(&self.config) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// The live `azbroker ... serve` processes for `config` (a zombie has no command line).
fn daemons(config: &Path) -> Vec<u32> {
    let wanted = config.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            raw.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.contains(&wanted) && args.iter().any(|a| a == "serve") {
            out.push(pid);
        }
    }
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn first_commands_start_exactly_one_daemon_and_stop_ends_it() {
    let Some(s) = Setup::new(free_port()) else { return };
    assert!(daemons(&s.config).is_empty());
    // Two first commands at once: both get a token, from one daemon.
    let spawn =
        || s.azbroker(&["token", "--resource", VAULT]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let (first, second) = (spawn().unwrap(), spawn().unwrap());
    let outputs = [first.wait_with_output().unwrap(), second.wait_with_output().unwrap()];
    for out in &outputs {
        assert!(out.status.success(), "token failed: {}{}", text(&out.stderr), text(&out.stdout));
        let token: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
        let jwt = token["accessToken"].as_str().expect("an access token");
        assert_eq!(jwt.split('.').count(), 3, "a JWT");
        assert_eq!(token["profile"], "contoso", "the default (only) profile");
    }
    let started: Vec<_> = outputs.iter().filter(|o| text(&o.stderr).contains("started the daemon")).collect();
    assert_eq!(started.len(), 1, "exactly one command started the daemon");
    assert!(text(&started[0].stderr).contains(&s.log_path().display().to_string()));
    let running = daemons(&s.config);
    assert_eq!(running.len(), 1, "exactly one daemon: {running:?}");
    let pid = running[0];
    // It runs as the user, in a session of its own, with no descriptor of the caller's.
    let status_line = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status_line.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.split_whitespace().nth(1) == Some(&s.user.uid.to_string()), "{uid_line}");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    assert_eq!(fields[3], pid.to_string(), "session id is its own pid (setsid): {stat}");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap(), Path::new("/dev/null"));
    for fd in [1, 2] {
        assert_eq!(std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap(), s.log_path());
    }

    // Later commands use it; status says who started it.
    let status = s.run(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stdout).contains("started:   autostarted by the CLI"), "{}", text(&status.stdout));
    assert!(!text(&status.stderr).contains("started the daemon"), "nothing new was started");
    assert_eq!(daemons(&s.config), vec![pid]);

    let stop = s.run(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(
        text(&stop.stdout).contains(&format!("stopped the daemon (pid {pid})")),
        "{}",
        text(&stop.stdout)
    );
    assert!(daemons(&s.config).is_empty(), "the daemon is gone after stop");
    assert!(!s.dir.path().join("run/admin.sock").exists());
    let log = std::fs::read_to_string(s.log_path()).unwrap();
    assert!(log.contains("stop asked for on the admin socket") && log.contains("stopped"), "{log}");
    let again = s.run(&["stop"]);
    assert!(again.status.success() && text(&again.stdout).contains("no daemon is running"));
}

#[test]
fn with_autostart_off_nothing_starts_and_the_error_names_azbroker_serve() {
    let Some(s) = Setup::new(free_port()) else { return };
    let flag = s.run(&["--no-autostart", "token", "--resource", VAULT]);
    let env = s.azbroker(&["status"]).env("AZBROKER_NO_AUTOSTART", "1").output().unwrap();
    for out in [flag, env] {
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("azbroker serve"), "{}", text(&out.stderr));
    }
    assert!(daemons(&s.config).is_empty(), "autostart off starts nothing");
    assert!(!s.log_path().exists());
}

#[test]
fn a_config_file_of_another_user_never_autostarts() {
    let Some(s) = Setup::new(free_port()) else { return };
    // The same config, but root's (readable by the user).
    let roots = s.dir.path().join("root-config.toml");
    std::fs::copy(&s.config, &roots).unwrap();
    let mut cmd = s.user.command(binary());
    let out = cmd.arg("--config").arg(&roots).args(["token", "--resource", VAULT]).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("azbroker serve"), "{}", text(&out.stderr));
    assert!(daemons(&roots).is_empty() && daemons(&s.config).is_empty(), "nothing was started");
}

#[test]
fn a_daemon_that_cannot_start_shows_its_own_error_and_its_log() {
    // The configured port is taken: the daemon exits at once, and the command says why.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let Some(s) = Setup::new(taken.local_addr().unwrap().port()) else { return };
    let out = s.run(&["env"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("the daemon did not start (it exited"), "{err}");
    assert!(err.contains("cannot listen on 127.0.0.1:"), "the daemon's own error: {err}");
    assert!(err.contains(&s.log_path().display().to_string()), "{err}");
    assert!(daemons(&s.config).is_empty());
}
