//! Shared helpers for the end-to-end tests: start the real `azbroker` binary on loopback port 0
//! against an in-process testkit authority, learn the addresses it bound from
//! `runtime_dir/listeners.json`, wait for `/readyz`, run its subcommands, collect its output, and
//! stop it with SIGTERM.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod compat;
pub mod tls_front;
pub mod users;

/// Path of the `azbroker` binary built by `cargo test --workspace` (or `$AZBROKER_BIN`).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AZBROKER_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/e2e-<hash> → target/<profile>/azbroker
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let bin = dir.join("azbroker");
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p azbroker` (tests/run does)",
        bin.display()
    );
    bin
}

/// The repository root (for tests/clients).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// Where the installed SDK client judges are: `AZBROKER_TEST_CLIENTS` (set by `tests/run`, or
/// by a developer whose worktree shares another checkout's installed clients), else this
/// repository's `tests/clients`.
pub fn clients_dir() -> PathBuf {
    std::env::var_os("AZBROKER_TEST_CLIENTS").map_or_else(|| repo_root().join("tests/clients"), PathBuf::from)
}

/// A loopback port that was free a moment ago, for a test that must name a port in its config
/// before the daemon starts (a profile's own listener). The daemon's general and HTTPS
/// listeners never need one: they bind port 0.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A running daemon with its own config, state and runtime directories.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    /// The HTTPS (Service Fabric) listener's address.
    pub tls_addr: SocketAddr,
    /// Extra environment variables for the daemon, applied at every (re)start.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Daemon {
    /// Writes `config_body` (without `[server]`; one is added with a free port and private dirs)
    /// and starts `azbroker serve` with `extra` arguments, waiting until `/readyz` answers 200.
    pub fn start(config_body: &str, extra: &[&str]) -> Result<Self> {
        Self::start_with_server(config_body, "", extra)
    }

    /// Like [`Daemon::start`] with extra lines for the `[server]` table.
    pub fn start_with_server(config_body: &str, server_extra: &str, extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = format!(
            "[server]\n{}\n{}\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\n{server_extra}\n{config_body}",
            listen_line("listen", ANY_PORT),
            listen_line("tls_listen", ANY_PORT),
            dir.path().join("state").display(),
            dir.path().join("run").display(),
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config)?;
        let mut daemon =
            Self { dir, addr: ANY_PORT, config_path, tls_addr: ANY_PORT, env: Vec::new(), child: None };
        daemon.spawn_once(extra)?;
        daemon.pin_ports()?;
        Ok(daemon)
    }

    /// Writes the ports the daemon chose into its config (atomically, as editors do), so that
    /// `azbroker env` names them and a restart keeps them.
    fn pin_ports(&mut self) -> Result<()> {
        self.rewrite_listen(self.addr, self.tls_addr)
    }

    /// Sets the config's `listen` and `tls_listen` lines (the ones this harness wrote).
    fn rewrite_listen(&self, addr: SocketAddr, tls: SocketAddr) -> Result<()> {
        let text = std::fs::read_to_string(&self.config_path)?;
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        // Only the `[server]` table's lines, which come first; a profile's own `listen` stays.
        for (key, addr) in [("listen", addr), ("tls_listen", tls)] {
            let prefix = format!("{key} = [");
            if let Some(line) = lines.iter_mut().find(|l| l.starts_with(&prefix)) {
                *line = listen_line(key, addr);
            }
        }
        let tmp = self.config_path.with_extension("pin");
        std::fs::write(&tmp, lines.join("\n") + "\n")?;
        std::fs::rename(&tmp, &self.config_path)?;
        Ok(())
    }

    fn spawn_once(&mut self, extra: &[&str]) -> Result<()> {
        // A daemon that was killed leaves its file behind; never read a previous run's ports.
        let _ = std::fs::remove_file(self.listeners_path());
        let log = std::fs::File::create(self.log_path())?;
        let child = Command::new(binary())
            .arg("--config")
            .arg(&self.config_path)
            .args(["--log-level", "debug", "serve"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .spawn()
            .context("spawn azbroker")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(30))
    }

    /// Stops (SIGTERM) and starts the daemon again with the same directories.
    /// The pinned ports are reused; should another process have taken one meanwhile, the daemon
    /// moves to new ones (port 0 again), a bounded number of times.
    pub fn restart(&mut self, extra: &[&str]) -> Result<()> {
        const ATTEMPTS: usize = 3;
        if self.child.is_some() {
            self.stop()?;
        }
        for attempt in 1..=ATTEMPTS {
            match self.spawn_once(extra) {
                Err(e) if attempt < ATTEMPTS && self.log().contains("Address already in use") => {
                    eprintln!("daemon restart {attempt}: a pinned port was taken meanwhile ({e:#})");
                    self.rewrite_listen(ANY_PORT, ANY_PORT)?;
                }
                result => return result.and_then(|()| self.pin_ports()),
            }
        }
        bail!("daemon did not restart in {ATTEMPTS} attempts")
    }

    /// `runtime_dir/listeners.json`: the addresses the running daemon bound.
    pub fn listeners_path(&self) -> PathBuf {
        self.dir.path().join("run").join("listeners.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// Everything the daemon printed so far. The daemon writes log lines from a background
    /// thread, so a line for a request that was just answered may still be on its way: the file
    /// is read until it stops growing for a moment (bounded), which lets those lines land.
    pub fn log(&self) -> String {
        const SETTLE: Duration = Duration::from_millis(40);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut text = self.log_now();
        loop {
            std::thread::sleep(SETTLE);
            let next = self.log_now();
            if next.len() == text.len() || Instant::now() > deadline {
                return next;
            }
            text = next;
        }
    }

    fn log_now(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits (bounded) for the daemon to report its addresses in `listeners.json`, then for
    /// `/readyz` to answer 200 on the general listener it reported.
    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let mut bound = None;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("daemon exited early ({status}):\n{}", self.log());
            }
            if bound.is_none() {
                bound = read_bound(&self.listeners_path());
                if let Some((addr, tls)) = bound {
                    (self.addr, self.tls_addr) = (addr, tls.unwrap_or(ANY_PORT));
                }
            }
            if bound.is_some() && matches!(blocking_get(&self.url("/readyz")), Ok(200)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("daemon not ready within {limit:?}:\n{}", self.log())
    }

    /// Runs `azbroker --config <this config> ARGS` and returns its output. Never autostarts a
    /// daemon: this harness starts and stops its own (the autostart tests run the binary directly).
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(binary());
        cmd.arg("--config").arg(&self.config_path).args(args).env("AZBROKER_NO_AUTOSTART", "1");
        Ok(cmd.output()?)
    }

    /// `azbroker env ARGS --format dotenv`, parsed into pairs.
    pub fn env(&self, args: &[&str]) -> Result<Vec<(String, String)>> {
        let mut all = vec!["env"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--format", "dotenv"]);
        let out = self.cli(&all)?;
        if !out.status.success() {
            bail!("azbroker env failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect())
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else { bail!("not running") };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("daemon did not stop within 20 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (e.g. "HUP").
    pub fn signal(&self, sig: &str) -> Result<()> {
        let child = self.child.as_ref().context("not running")?;
        let status = Command::new("kill").args([&format!("-{sig}"), &child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -{sig} failed");
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Port 0 on loopback: the daemon picks a free port and reports it.
const ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

fn listen_line(key: &str, addr: SocketAddr) -> String {
    format!("{key} = [\"{addr}\"]")
}

/// Waits (bounded by `limit`) for a daemon started by hand to write
/// `runtime_dir/listeners.json`, and returns its first general listener and its HTTPS listener.
pub fn wait_for_bound(runtime_dir: &Path, limit: Duration) -> Result<(SocketAddr, Option<SocketAddr>)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(bound) = read_bound(&runtime_dir.join("listeners.json")) {
            return Ok(bound);
        }
        if Instant::now() > deadline {
            bail!("no listeners.json in {} within {limit:?}", runtime_dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first general token listener and the first HTTPS listener from a complete
/// `listeners.json` (`None` while it is absent; the daemon writes it atomically).
fn read_bound(path: &Path) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let listeners = json["listeners"].as_array()?;
    let find = |kind: &str| {
        listeners
            .iter()
            .find(|l| l["kind"] == kind && l["profile"].is_null())
            .and_then(|l| l["address"].as_str()?.parse().ok())
    };
    Some((find("http")?, find("https")))
}

/// A minimal blocking GET returning the status code (for readiness polling without a runtime).
fn blocking_get(url: &str) -> Result<u16> {
    use std::io::Write;
    let rest = url.strip_prefix("http://").context("http url")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect_timeout(&host.parse()?, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf.split_whitespace().nth(1).context("status line")?.parse()?;
    Ok(code)
}

/// The config body for one service-principal login in `tenant` against `authority`, with the
/// given extra profile tables.
pub fn sp_config(authority: &str, tenant: &str, client_id: &str, secret: &str, profiles: &str) -> String {
    format!(
        "[cloud]\nauthority_host = \"{authority}\"\n\n[logins.app]\nkind = \"service-principal\"\ntenant = \"{tenant}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{secret}\"\n\n{profiles}"
    )
}

/// A testkit authority running on its own runtime thread, so tests may block freely.
pub struct Authority {
    pub entra: azbroker_testkit::FakeEntra,
    _stop: std::sync::mpsc::Sender<()>,
}

impl std::ops::Deref for Authority {
    type Target = azbroker_testkit::FakeEntra;
    fn deref(&self) -> &Self::Target {
        &self.entra
    }
}

impl Authority {
    pub fn start() -> Self {
        Self::start_with(azbroker_testkit::Options::default())
    }

    pub fn start_with(opts: azbroker_testkit::Options) -> Self {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("testkit runtime");
            rt.block_on(async move {
                let entra = azbroker_testkit::FakeEntra::start_with(opts).await.expect("start testkit");
                let _ = handle_tx.send(entra.clone());
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                entra.shutdown();
            });
        });
        let entra = handle_rx.recv().expect("testkit started");
        Self { entra, _stop: stop_tx }
    }
}
