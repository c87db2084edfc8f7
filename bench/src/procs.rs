//! The processes a benchmark runs against: the real `azbroker` daemon binary, the bare hyper
//! responder (this binary's `responder` subcommand) and nginx — each started on a free loopback
//! port with its own temporary directory, probed for readiness, measured (RSS) and stopped with
//! SIGTERM (then SIGKILL after a bound).
//!
//! Every address here is loopback; nothing is sent anywhere else.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The tenant, app and secret the daemon's service-principal login uses against the testkit.
pub const TENANT: &str = "bench.onmicrosoft.com";
pub const CLIENT_ID: &str = "6a2f1c39-0b6e-4c34-8f0e-2f5b3e5d7a10";
pub const CLIENT_SECRET: &str = "bench-client-secret";
/// The App Service identity header the benchmark configures.
pub const IDENTITY_HEADER: &str = "bench-identity-header-0123456789abcdef";

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `azbroker serve`.
pub struct Daemon {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// Time from just before exec to the first `200` from `/readyz`.
    pub ready_after: Duration,
}

impl Daemon {
    /// Writes a config (one service-principal login and one profile, `bench`, against
    /// `authority`) and starts `bin` with default logging (info, human format; stderr to a file),
    /// as a user would run it.
    pub fn start(bin: &Path, authority: &str) -> Result<Self> {
        Self::start_via(None, bin, authority)
    }

    /// [`Daemon::start`], run through `wrapper` (e.g. a profiler) when given.
    pub fn start_via(wrapper: Option<&Path>, bin: &Path, authority: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state)?;
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))?;
        let header = state.join("identity-header");
        std::fs::write(&header, IDENTITY_HEADER)?;
        std::fs::set_permissions(&header, std::fs::Permissions::from_mode(0o600))?;
        // The scale suite fills up to 100 000 entries of one profile, as one user: the cache
        // bounds are lifted so it measures the cache, not the refusal.
        let config = format!(
            "[server]\nlisten = [\"{addr}\"]\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\n\n\
             [cloud]\nauthority_host = \"{authority}\"\n\n\
             [logins.bench]\nkind = \"service-principal\"\ntenant = \"{TENANT}\"\n\
             client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\n\
             [profiles.bench]\nlogin = \"bench\"\n\
             max_cached_resources = 1000000\nmax_cached_resources_per_user = 1000000\n",
            state.display(),
            dir.path().join("run").display(),
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("daemon.log"))?;
        let started = Instant::now();
        let child = wrapped(wrapper, bin.to_path_buf())
            .arg("--config")
            .arg(&config_path)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_remove("RUST_LOG")
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let mut daemon = Self { child: Some(child), addr, dir, ready_after: Duration::ZERO };
        daemon.ready_after = daemon.wait_ready(started, Duration::from_secs(30))?;
        Ok(daemon)
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid().context("daemon not running")?)
    }

    fn wait_ready(&mut self, started: Instant, limit: Duration) -> Result<Duration> {
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                bail!("daemon exited early ({status}):\n{log}");
            }
            if matches!(get_status(self.addr, "/readyz"), Ok(200)) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                bail!("daemon not ready within {limit:?}");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// SIGTERM, then wait (bounded) for the exit.
    pub fn stop(&mut self) -> Result<()> {
        match self.child.take() {
            Some(child) => terminate(child),
            None => Ok(()),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A baseline server process: the in-tree hyper responder or nginx.
pub struct Baseline {
    child: Option<Child>,
    pub addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl Baseline {
    /// Starts `azbroker-bench responder` (this executable) serving `body`.
    pub fn responder(body: &[u8]) -> Result<Self> {
        Self::responder_via(None, body)
    }

    /// [`Baseline::responder`], run through `wrapper` (e.g. a profiler) when given.
    pub fn responder_via(wrapper: Option<&Path>, body: &[u8]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let body_path = dir.path().join("body.json");
        std::fs::write(&body_path, body)?;
        let mut child = wrapped(wrapper, std::env::current_exe()?)
            .args(["responder", "--listen", "127.0.0.1:0", "--body"])
            .arg(&body_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn the responder")?;
        let stdout = child.stdout.take().context("responder stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line.trim().strip_prefix("listening ").and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            bail!("responder did not start: {line:?}");
        };
        Ok(Self { child: Some(child), addr, _dir: Some(dir) })
    }

    /// Starts nginx (from PATH or /usr/sbin) with `workers` worker processes, serving `body` as a
    /// static file for every path, without an access log.
    pub fn nginx(body: &[u8], workers: usize) -> Result<Self> {
        Self::nginx_via(None, body, workers)
    }

    /// [`Baseline::nginx`], run through `wrapper` (e.g. a profiler) when given.
    pub fn nginx_via(wrapper: Option<&Path>, body: &[u8], workers: usize) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        // nginx workers run as an unprivileged user when started as root: let them read.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("token.json"), body)?;
        std::fs::set_permissions(www.join("token.json"), std::fs::Permissions::from_mode(0o644))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let d = dir.path().display();
        let conf = format!(
            "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nodelay on;\n\
             \x20 keepalive_requests 100000000;\n  keepalive_timeout 120s;\n\
             \x20 open_file_cache max=16 inactive=300s;\n  open_file_cache_valid 300s;\n\
             \x20 client_body_temp_path {d}/tmp-body;\n  proxy_temp_path {d}/tmp-proxy;\n\
             \x20 fastcgi_temp_path {d}/tmp-fcgi;\n  uwsgi_temp_path {d}/tmp-uwsgi;\n\
             \x20 scgi_temp_path {d}/tmp-scgi;\n\
             \x20 server {{\n    listen {addr};\n    etag off;\n\
             \x20   location / {{\n      root {d}/www;\n      default_type application/json;\n\
             \x20     add_header Cache-Control no-store;\n      try_files /token.json =404;\n    }}\n  }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("nginx"));
        let child = wrapped(wrapper, bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn nginx (is it installed? bench/run installs it)")?;
        let mut me = Self { child: Some(child), addr, _dir: Some(dir) };
        let started = Instant::now();
        while !matches!(get_status(addr, "/"), Ok(200)) {
            if let Some(status) = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("nginx exited early ({status})");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("nginx not answering on {addr}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(me)
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = terminate(child);
        }
    }
}

/// `program`, or `wrapper program` when a wrapper is given.
fn wrapped(wrapper: Option<&Path>, program: PathBuf) -> Command {
    match wrapper {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// SIGTERM (nginx: fast shutdown; the daemon: drain), then SIGKILL after 20 s.
fn terminate(mut child: Child) -> Result<()> {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process {} did not stop within 20 s of SIGTERM", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status).context("no VmRSS in /proc/PID/status")
}

/// The `VmRSS:` value (KiB) of a `/proc/PID/status` text.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// A one-shot `GET path` over a fresh loopback connection; the status code.
pub fn get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf);
    let code = head.split_whitespace().nth(1).context("status line")?.parse()?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_proc_status_text() {
        let status = "Name:\tazbroker\nVmPeak:\t  100 kB\nVmRSS:\t    9876 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(9876));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
