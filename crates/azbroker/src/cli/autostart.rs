//! A daemon that starts itself, like `gpg-agent`: `login`, `token`, `env`, `run` and `status`
//! call [`ensure`] first. In user mode, when no daemon answers on the admin socket of the config
//! in use, it starts `azbroker serve` in the background and waits (at most [`READY_WITHIN`]) until
//! the daemon has written `runtime_dir/listeners.json` and answers on its admin socket.
//!
//! - Only for the caller's own config: never as root, never for a config file that belongs to
//!   someone else (root's or another user's); built-in defaults are the caller's own. Never
//!   while a system daemon answers on `/run/azbroker/admin.sock`.
//! - One daemon for concurrent first commands: an exclusive `flock` on `runtime_dir/autostart.lock`
//!   is held from the health check to readiness, and the health check is repeated under it.
//! - The daemon keeps none of the caller's descriptors: stdin is `/dev/null`, stdout and stderr
//!   go to `state_dir/daemon.log`, its working directory is `/`, and it makes a session of its
//!   own at start ([`detach_if_autostarted`]), so a caller that captures output never waits for it.
//! - A start failure prints the tail of that log (the daemon's own error) and its path.
//! - Socket activation comes first by itself: a socket systemd holds answers, so nothing starts.
//! - `--no-autostart` / `AZBROKER_NO_AUTOSTART=1` turn it off; the command's own error then
//!   names `azbroker serve`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};

use crate::cli::admin_client::{ADMIN_SOCKET, AdminClient};
use crate::config::Config;
use crate::daemon::owned_dir::OwnedDir;
use crate::paths;

/// Set to `1` in the environment of a daemon the CLI started (its `status` says so).
pub const AUTOSTARTED_ENV: &str = "AZBROKER_AUTOSTARTED";
/// The lock file in the runtime directory that serialises autostarts.
const LOCK_FILE: &str = "autostart.lock";
/// The autostarted daemon's log file in the state directory.
pub const LOG_FILE: &str = "daemon.log";
/// How long a started daemon may take to be ready.
pub const READY_WITHIN: Duration = Duration::from_secs(10);
/// How long a command waits for another command's autostart to finish (its readiness wait,
/// plus a margin).
const LOCK_WITHIN: Duration = Duration::from_secs(15);
/// How many lines of the log a failed start shows.
const LOG_TAIL_LINES: usize = 20;

/// Makes sure a daemon answers for `config`, starting one when allowed (see the module docs).
/// Returns without starting anything when autostart is off or not allowed; the command then
/// reports the missing daemon itself.
pub async fn ensure(config: &Config, enabled: bool) -> Result<()> {
    let admin = AdminClient::new(config);
    if !enabled || paths::is_system() || admin.health().await.is_ok() {
        return Ok(());
    }
    if let Some(why) = not_the_callers(config) {
        tracing::debug!("no autostart: {why}");
        return Ok(());
    }
    // A system daemon serves this machine: the command's own error says how to reach it.
    if AdminClient::at(Path::new(paths::SYSTEM_RUNTIME_DIR).join(ADMIN_SOCKET)).health().await.is_ok() {
        tracing::debug!("no autostart: a system daemon answers in {}", paths::SYSTEM_RUNTIME_DIR);
        return Ok(());
    }
    let runtime = OwnedDir::prepare(&config.server.runtime_dir, OwnedDir::runtime_dir_mode(config))?;
    let _lock = lock(&runtime, &config.server.runtime_dir).await?;
    // Another command may have started it while this one waited for the lock.
    if admin.health().await.is_ok() {
        return Ok(());
    }
    let state = OwnedDir::prepare(&config.server.state_dir, 0o700)?;
    let log_path = config.server.state_dir.join(LOG_FILE);
    let log = state.open_append(LOG_FILE)?;
    let start_of_run = log.metadata().map(|m| m.len()).unwrap_or(0);
    let mut child = spawn(config, log).context("cannot start `azbroker serve`")?;
    tracing::debug!(pid = child.id(), log = %log_path.display(), "autostarted the daemon");
    match wait_ready(config, &admin, &mut child).await {
        Ok(()) => {
            eprintln!(
                "azbroker: started the daemon in the background (pid {}, log {}; `azbroker stop` stops it)",
                child.id(),
                log_path.display()
            );
            Ok(())
        }
        Err(why) => {
            if let NotReady::TimedOut = why {
                // Never leave a half-started daemon behind.
                let _ = child.kill();
                let _ = child.wait();
            }
            bail!(
                "the daemon did not start ({why}). Its log ({}) says:\n{}",
                log_path.display(),
                tail(&log_path, start_of_run)
            )
        }
    }
}

/// Why the config in use is not the caller's to start a daemon for, if it is not.
fn not_the_callers(config: &Config) -> Option<String> {
    let path = config.origin.as_ref()?;
    let me = paths::current_uid();
    match std::fs::metadata(path) {
        Ok(meta) if meta.uid() == me => None,
        Ok(meta) => Some(format!(
            "the config file {} belongs to uid {}, not to you (uid {me}); start its daemon with `azbroker serve` as its owner",
            path.display(),
            meta.uid()
        )),
        Err(e) => Some(format!("cannot look at the config file {}: {e}", path.display())),
    }
}

/// The exclusive lock on `runtime_dir/autostart.lock`, waited for at most [`LOCK_WITHIN`].
async fn lock(runtime: &OwnedDir, dir: &Path) -> Result<Flock<File>> {
    let mut file = runtime.open_append(LOCK_FILE)?;
    let deadline = Instant::now() + LOCK_WITHIN;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = back;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err((_, e)) => bail!(
                "cannot lock {} (another azbroker command is starting the daemon?): {e}",
                dir.join(LOCK_FILE).display()
            ),
        }
    }
}

/// `azbroker [--config PATH] serve`, detached from the caller's descriptors.
fn spawn(config: &Config, log: File) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the azbroker binary")?;
    let mut cmd = Command::new(exe);
    if let Some(path) = &config.origin {
        cmd.arg("--config").arg(path);
    }
    cmd.arg("serve")
        .env(AUTOSTARTED_ENV, "1")
        // Not a service: no descriptors or notification socket of the caller's service manager.
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    Ok(cmd.spawn()?)
}

/// Why a started daemon is not ready.
enum NotReady {
    Exited(std::process::ExitStatus),
    TimedOut,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(status) => write!(f, "it exited: {status}"),
            Self::TimedOut => write!(f, "it was not ready within {} seconds", READY_WITHIN.as_secs()),
        }
    }
}

/// Waits until the daemon has written `listeners.json` with its pid and answers on its admin
/// socket.
async fn wait_ready(config: &Config, admin: &AdminClient, child: &mut Child) -> Result<(), NotReady> {
    let deadline = Instant::now() + READY_WITHIN;
    let listeners = config.server.runtime_dir.join(crate::daemon::bound_file::FILE_NAME);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(NotReady::Exited(status));
        }
        if written_by(&listeners, child.id()) && admin.health().await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotReady::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `listeners.json` names `pid` (not a file a previous daemon left behind).
fn written_by(path: &Path, pid: u32) -> bool {
    #[derive(serde::Deserialize)]
    struct Pid {
        pid: u32,
    }
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Pid>(&bytes).ok())
        .is_some_and(|p| p.pid == pid)
}

/// The last lines the daemon wrote to its log since `from` (this start's lines only).
fn tail(path: &PathBuf, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(SeekFrom::Start(from)).and_then(|_| f.read_to_string(&mut text));
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if shown.is_empty() {
        "  (nothing)".to_owned()
    } else {
        shown.iter().map(|l| format!("  {l}\n")).collect()
    }
}

/// Called first thing by `azbroker serve`: a daemon the CLI started leaves the caller's session
/// (and so its terminal and job control) by making a session of its own.
pub fn detach_if_autostarted() {
    if is_autostarted()
        && let Err(e) = nix::unistd::setsid()
    {
        tracing::warn!(error = %e, "autostarted daemon: cannot make a session of its own");
    }
}

/// Whether this daemon was started by a CLI command's autostart.
pub fn is_autostarted() -> bool {
    std::env::var_os(AUTOSTARTED_ENV).is_some_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_callers_own_config_file_is_autostarted_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        let mut config = Config::parse("", Some(path.clone())).unwrap();
        assert_eq!(not_the_callers(&config), None, "a file of one's own");
        config.origin = None;
        assert_eq!(not_the_callers(&config), None, "built-in defaults are the caller's own");
        config.origin = Some(dir.path().join("absent.toml"));
        assert!(not_the_callers(&config).unwrap().contains("cannot look at"));
        if paths::is_system() {
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            config.origin = Some(path);
            let why = not_the_callers(&config).unwrap();
            assert!(why.contains("belongs to uid 65534") && why.contains("azbroker serve"), "{why}");
        }
    }

    #[test]
    fn the_log_tail_shows_only_this_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        std::fs::write(&path, "old run\n").unwrap();
        let from = std::fs::metadata(&path).unwrap().len();
        std::fs::write(&path, "old run\n\nazbroker: cannot listen on 127.0.0.1:1\n").unwrap();
        assert_eq!(tail(&path, from), "  azbroker: cannot listen on 127.0.0.1:1\n");
        assert_eq!(tail(&dir.path().join("none"), 0), "  (nothing)");
    }
}
