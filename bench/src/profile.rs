//! `azbroker-bench profile`: a bounded, deterministic load for instruction-count profiling.
//!
//! Starts the testkit authority and the daemon (`--daemon` may be a wrapper script that runs the
//! real binary under `valgrind --tool=callgrind`), fills the cache with one request, then sends
//! exactly `--requests` cache hits over `--connections` keep-alive connections and stops the
//! daemon (SIGTERM, so a profiler writes its output). Running it twice with different request
//! counts and subtracting the two totals gives the instructions per cache hit, free of start-up
//! and shutdown.
//!
//! With `--baseline responder|nginx` the same load goes to a bare responder instead, serving the
//! daemon's own IMDS body (taken from one plain run of the daemon first) and started through
//! `--wrapper`, so the baselines are counted the same way. All traffic stays on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::authority::Authority;
use crate::procs::{Baseline, Daemon};
use crate::requests::{Dialect, HIT_RESOURCE};

/// What the load is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Daemon,
    Responder,
    Nginx,
}

/// Runs the profile load against `bin` (wrapped in `wrapper` when given), or against a baseline
/// serving `bin`'s body; prints what it sent.
pub fn run(
    bin: &Path,
    wrapper: Option<&Path>,
    target: Target,
    dialect: Dialect,
    requests: u64,
    connections: u64,
) -> Result<()> {
    ensure!(connections > 0, "--connections must be at least 1");
    let authority = Authority::start()?;
    if target == Target::Daemon {
        let mut daemon = Daemon::start_via(wrapper, bin, &authority.entra.url())?;
        // The one cache miss: fills the cache outside the counted requests.
        hits(daemon.addr, dialect, 1)?;
        load(daemon.addr, dialect, requests, connections)?;
        daemon.stop()?;
    } else {
        let body = {
            let mut daemon = Daemon::start(bin, &authority.entra.url())?;
            let body = hits(daemon.addr, Dialect::Imds, 1)?;
            daemon.stop()?;
            body
        };
        let baseline = match target {
            Target::Responder => Baseline::responder_via(wrapper, &body)?,
            _ => Baseline::nginx_via(wrapper, &body, 1)?,
        };
        // Same warm-up as the daemon's fill request.
        hits(baseline.addr, dialect, 1)?;
        load(baseline.addr, dialect, requests, connections)?;
        drop(baseline);
    }
    println!(
        "sent {requests} {dialect:?} requests to the {target:?} over {connections} connections (+1 warm-up)"
    );
    Ok(())
}

/// `requests` requests over `connections` keep-alive connections, in parallel.
fn load(addr: SocketAddr, dialect: Dialect, requests: u64, connections: u64) -> Result<()> {
    let per = requests / connections;
    let extra = requests % connections;
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let n = per + u64::from(i < extra);
            std::thread::spawn(move || hits(addr, dialect, n))
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
    }
    Ok(())
}

/// `n` token requests over one keep-alive connection, each answered 200; the last body.
fn hits(addr: SocketAddr, dialect: Dialect, n: u64) -> Result<Vec<u8>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.set_nodelay(true)?;
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {addr}\r\n", dialect.path(HIT_RESOURCE));
    for (k, v) in dialect.headers() {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    for _ in 0..n {
        writer.write_all(request.as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        if line.split_whitespace().nth(1) != Some("200") {
            bail!("unexpected status line {line:?}");
        }
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().context("content-length")?;
            }
        }
        body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body)?;
    }
    Ok(body)
}
