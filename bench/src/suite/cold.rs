//! Cold misses with upstream latency injected in the testkit: N concurrent clients on one new
//! resource must make exactly one upstream call and wait about one upstream latency; N clients on
//! N new resources must make N calls, in parallel (the slowest client waits about one latency,
//! not N).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use azbroker_testkit::Fault;
use serde::Serialize;
use tokio::sync::Barrier;

use super::Ctx;
use crate::procs::Daemon;
use crate::requests::{self, Dialect};
use crate::stats::{max, median};

#[derive(Debug, Clone, Serialize)]
pub struct ColdResults {
    pub clients: usize,
    pub cases: Vec<ColdCase>,
}

/// Every round at one injected latency.
#[derive(Debug, Clone, Serialize)]
pub struct ColdCase {
    pub upstream_latency_ms: f64,
    pub same_key: Vec<ColdRound>,
    pub distinct_keys: Vec<ColdRound>,
}

/// One round: upstream calls it caused and what its clients waited (ms).
#[derive(Debug, Clone, Serialize)]
pub struct ColdRound {
    pub upstream_calls: u64,
    pub median_ms: f64,
    pub max_ms: f64,
}

impl ColdCase {
    /// The worst round: most upstream calls, and the slowest client relative to the latency.
    pub fn worst(rounds: &[ColdRound]) -> (u64, f64) {
        let calls = rounds.iter().map(|r| r.upstream_calls).max().unwrap_or(0);
        let slowest = rounds.iter().map(|r| r.max_ms).fold(0.0, f64::max);
        (calls, slowest)
    }
}

pub fn run(ctx: &Ctx, daemon: &Daemon) -> Result<ColdResults> {
    let plan = &ctx.plan;
    let entra = &ctx.authority.entra;
    let mut cases = Vec::new();
    for &latency in &plan.cold_latencies {
        let ms = latency.as_millis();
        entra.clear_faults();
        entra.inject(Fault::Latency(latency), None);
        let mut case = ColdCase {
            upstream_latency_ms: latency.as_secs_f64() * 1e3,
            same_key: vec![],
            distinct_keys: vec![],
        };
        for round in 1..=plan.cold_rounds {
            let one = format!("https://cold-{ms}ms-{round}.bench.test/");
            let keys = vec![one; plan.cold_clients];
            let r = burst(ctx, daemon, &keys)?;
            ctx.say(format!(
                "cold: {ms} ms upstream, {} clients on one new key: {} upstream call(s), median {:.1} ms, max {:.1} ms",
                plan.cold_clients, r.upstream_calls, r.median_ms, r.max_ms
            ));
            case.same_key.push(r);
            let keys: Vec<_> = (0..plan.cold_clients)
                .map(|i| format!("https://cold-{ms}ms-{round}-{i}.bench.test/"))
                .collect();
            let r = burst(ctx, daemon, &keys)?;
            ctx.say(format!(
                "cold: {ms} ms upstream, {} clients on {} new keys: {} upstream calls, median {:.1} ms, max {:.1} ms",
                plan.cold_clients, plan.cold_clients, r.upstream_calls, r.median_ms, r.max_ms
            ));
            case.distinct_keys.push(r);
        }
        cases.push(case);
    }
    entra.clear_faults();
    Ok(ColdResults { clients: plan.cold_clients, cases })
}

/// One client per key, each on its own connection, released together.
fn burst(ctx: &Ctx, daemon: &Daemon, keys: &[String]) -> Result<ColdRound> {
    let entra = &ctx.authority.entra;
    let before = entra.token_requests();
    let client = requests::client(keys.len())?;
    let addr = daemon.addr;
    let waits = ctx.rt.block_on(async {
        let barrier = Arc::new(Barrier::new(keys.len()));
        let tasks: Vec<_> = keys
            .iter()
            .cloned()
            .map(|key| {
                let (client, barrier) = (client.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let t = Instant::now();
                    requests::get_token(&client, addr, Dialect::Imds, &key).await?;
                    Ok::<_, anyhow::Error>(t.elapsed())
                })
            })
            .collect();
        let mut waits = Vec::new();
        for t in tasks {
            waits.push(t.await.context("client task")??);
        }
        Ok::<Vec<Duration>, anyhow::Error>(waits)
    })?;
    // The fetch task finishes the upstream call before answering; nothing is still in flight.
    let upstream_calls = entra.token_requests() - before;
    let ms: Vec<f64> = waits.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    Ok(ColdRound {
        upstream_calls,
        median_ms: median(&ms).unwrap_or(f64::NAN),
        max_ms: max(&ms).unwrap_or(f64::NAN),
    })
}
