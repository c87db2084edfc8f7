//! `azbroker-bench profile`: a bounded, deterministic load for instruction-count profiling.
//!
//! Starts the testkit authority and the daemon (`--daemon` may be a wrapper script that runs the
//! real binary under `valgrind --tool=callgrind`), fills the cache with one request, then sends
//! exactly `--requests` cache hits over `--connections` keep-alive connections and stops the
//! daemon (SIGTERM, so a profiler writes its output). Running it twice with different request
//! counts and subtracting the two totals gives the instructions per cache hit, free of start-up
//! and shutdown. All traffic stays on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::authority::Authority;
use crate::procs::Daemon;
use crate::requests::{Dialect, HIT_RESOURCE};

/// Runs the profile load against `bin`; prints what it sent.
pub fn run(bin: &Path, dialect: Dialect, requests: u64, connections: u64) -> Result<()> {
    ensure!(connections > 0, "--connections must be at least 1");
    let authority = Authority::start()?;
    let mut daemon = Daemon::start(bin, &authority.entra.url())?;
    let addr = daemon.addr;
    // The one cache miss: fills the cache outside the counted requests.
    hits(addr, dialect, 1)?;
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
    daemon.stop()?;
    println!("sent {requests} {dialect:?} cache hits over {connections} connections (+1 fill)");
    Ok(())
}

/// `n` token requests over one keep-alive connection, each answered 200.
fn hits(addr: SocketAddr, dialect: Dialect, n: u64) -> Result<()> {
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
        let mut body = vec![0; length];
        std::io::Read::read_exact(&mut reader, &mut body)?;
    }
    Ok(())
}
