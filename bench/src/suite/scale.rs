//! Start-up and cache scale: time from exec to ready, idle RSS, and RSS, hit latency and hit
//! throughput with 1, 100, 10 000 and 100 000 cached (profile, resource) entries.
//!
//! Entries are filled through the daemon's own endpoint (each one a real upstream call to the
//! testkit, which signs a real JWT), cumulatively in one daemon process. Latency at each size is
//! wrk over one connection with random keys among the cached ones; throughput is wrk at the
//! usual 2 threads and 64 connections, also with random keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use super::Ctx;
use crate::loadgen::{Run, Wrk};
use crate::procs::Daemon;
use crate::requests::{self, Dialect, keyed_resource};
use crate::stats::median;

/// Key family (`https://rNNNNNN.bench.test/`) and its number width.
const FAMILY: &str = "r";
const WIDTH: usize = 6;

#[derive(Debug, Clone, Serialize)]
pub struct ScaleResults {
    /// Exec-to-ready of each start (ms) and their median.
    pub ready_ms: Vec<f64>,
    pub ready_median_ms: f64,
    /// RSS of a freshly started daemon after a short idle pause (KiB).
    pub idle_rss_kib: u64,
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tier {
    pub entries: u64,
    /// Time to add this tier's new entries, and the rate (entries/s).
    pub fill_s: f64,
    pub fill_rate: f64,
    pub rss_kib: u64,
    /// One connection, sequential requests on random cached keys.
    pub latency: Run,
    /// 2 threads, 64 connections, random cached keys.
    pub saturation: Run,
}

pub fn run(ctx: &Ctx) -> Result<ScaleResults> {
    let plan = &ctx.plan;
    let authority = ctx.authority.entra.url();
    let mut ready_ms = Vec::new();
    for _ in 0..plan.ready_runs {
        let mut d = Daemon::start(&ctx.daemon_bin, &authority)?;
        ready_ms.push(d.ready_after.as_secs_f64() * 1e3);
        d.stop()?;
    }
    let ready_median_ms = median(&ready_ms).unwrap_or(f64::NAN);
    ctx.say(format!(
        "scale: exec to ready, median of {}: {ready_median_ms:.1} ms ({ready_ms:.1?})",
        ready_ms.len()
    ));

    let daemon = Daemon::start(&ctx.daemon_bin, &authority)?;
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss_kib = daemon.rss_kib()?;
    ctx.say(format!("scale: idle RSS {:.1} MiB", idle_rss_kib as f64 / 1024.0));

    let latency_wrk = Wrk {
        threads: 1,
        connections: 1,
        duration: plan.scale_probe,
        work_dir: ctx.work.path().to_path_buf(),
    };
    let load_wrk =
        Wrk { threads: plan.wrk_threads, connections: plan.wrk_connections, ..latency_wrk.clone() };
    let target = Dialect::Imds.target(daemon.addr, &keyed_resource(FAMILY, 0, WIDTH));
    let mut tiers = Vec::new();
    let mut filled = 0u64;
    for &entries in &plan.scale_tiers {
        let started = Instant::now();
        fill(ctx, &daemon, filled, entries)?;
        let fill_s = started.elapsed().as_secs_f64();
        let added = entries - filled;
        filled = entries;
        std::thread::sleep(Duration::from_millis(500));
        let rss_kib = daemon.rss_kib()?;
        let keys = requests::random_keys(Dialect::Imds, FAMILY, entries, WIDTH);
        let latency = latency_wrk.run(&target, Some(&keys))?;
        let saturation = load_wrk.run(&target, Some(&keys))?;
        ensure!(latency.errors == 0 && saturation.errors == 0, "errors while probing {entries} entries");
        ctx.say(format!(
            "scale: {entries:>6} entries: RSS {:>6.1} MiB, p50 {:.0} us, p99 {:.0} us (1 conn), {:.0} req/s (64 conns); filled {added} in {fill_s:.1} s",
            rss_kib as f64 / 1024.0,
            latency.p50_us,
            latency.p99_us,
            saturation.rps
        ));
        tiers.push(Tier {
            entries,
            fill_s,
            fill_rate: if fill_s > 0.0 { added as f64 / fill_s } else { 0.0 },
            rss_kib,
            latency,
            saturation,
        });
    }
    Ok(ScaleResults { ready_ms, ready_median_ms, idle_rss_kib, tiers })
}

/// Requests keys `from..to` (each a miss), `scale_fill_concurrency` at a time.
fn fill(ctx: &Ctx, daemon: &Daemon, from: u64, to: u64) -> Result<()> {
    let concurrency = ctx.plan.scale_fill_concurrency;
    let client = requests::client(concurrency)?;
    let next = Arc::new(AtomicU64::new(from));
    let addr = daemon.addr;
    ctx.rt.block_on(async {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, next) = (client.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= to {
                            return Ok::<_, anyhow::Error>(());
                        }
                        let resource = keyed_resource(FAMILY, i, WIDTH);
                        requests::get_token(&client, addr, Dialect::Imds, &resource).await?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.context("fill worker")??;
        }
        Ok(())
    })
}
