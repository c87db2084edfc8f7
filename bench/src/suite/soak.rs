//! Steady state with refresh-ahead: short-lived upstream tokens, slow upstream (injected
//! latency), continuous client load on a set of keys at a fixed rate. After one warm-up request
//! per key, no client request may wait on upstream: the daemon's audit log must show only cache
//! hits, while the testkit sees the refreshes the daemon made on its own.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use azbroker_testkit::Fault;
use serde::Serialize;

use super::Ctx;
use crate::audit::{CacheCounts, count_grants};
use crate::loadgen::{Oha, Run};
use crate::procs::Daemon;
use crate::requests::{self, Dialect};

/// The key family the soak asks for (`https://soak-N.bench.test/`).
const FAMILY: &str = "soak-";

#[derive(Debug, Clone, Serialize)]
pub struct SoakResults {
    pub duration_s: f64,
    pub keys: u32,
    pub token_lifetime_s: f64,
    pub upstream_latency_ms: f64,
    pub rate: u64,
    /// Grants after warm-up, by cache state (from the audit log).
    pub grants: CacheCounts,
    /// `grants.waited() / grants.total()`.
    pub waited_fraction: f64,
    /// Upstream token requests during the soak (all refreshes made ahead of demand).
    pub upstream_refreshes: u64,
    /// What the refresh schedule predicts: keys × duration / (lifetime / 2).
    pub expected_refreshes: f64,
    /// The load generator's view (latency in us).
    pub client: Run,
}

pub fn run(ctx: &Ctx, daemon: &Daemon) -> Result<SoakResults> {
    let plan = &ctx.plan;
    let entra = &ctx.authority.entra;
    entra.set_token_lifetime(plan.soak_token_lifetime);
    entra.clear_faults();
    entra.inject(Fault::Latency(plan.soak_upstream_latency), None);
    let result = soak(ctx, daemon);
    entra.clear_faults();
    entra.set_token_lifetime(Duration::from_secs(3599));
    result
}

fn soak(ctx: &Ctx, daemon: &Daemon) -> Result<SoakResults> {
    let plan = &ctx.plan;
    let entra = &ctx.authority.entra;
    let width = hex_width(plan.soak_keys);
    let keys: Vec<String> =
        (0..plan.soak_keys).map(|i| format!("https://{FAMILY}{i:0width$x}.bench.test/")).collect();
    let client = requests::client(keys.len())?;
    let addr = daemon.addr;
    ctx.rt.block_on(async {
        let warm: Vec<_> = keys
            .iter()
            .cloned()
            .map(|k| {
                let client = client.clone();
                tokio::spawn(async move { requests::get_token(&client, addr, Dialect::Imds, &k).await })
            })
            .collect();
        for task in warm {
            task.await.context("warm-up task")??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    // The daemon writes log lines from a thread of its own: wait until the warm-up grants are in
    // the file, so none of them is counted as part of the soak.
    let offset = settled_log(daemon, 0, keys.len() as u64)?.len();
    let upstream_before = entra.token_requests();
    ctx.say(format!(
        "soak: {} keys warm; {} s at {} req/s, tokens live {} s, upstream takes {} ms",
        keys.len(),
        plan.soak.as_secs(),
        plan.soak_rate,
        plan.soak_token_lifetime.as_secs(),
        plan.soak_upstream_latency.as_millis()
    ));
    let oha = Oha { connections: 16, rate: plan.soak_rate, duration: plan.soak };
    let target = Dialect::Imds.target(daemon.addr, &keys[0]);
    let started = Instant::now();
    let client_run = oha.run_regex(&target, &url_regex(daemon, plan.soak_keys)).context("soak load")?;
    let duration_s = started.elapsed().as_secs_f64();
    ensure!(client_run.errors == 0, "soak: {} requests failed", client_run.errors);
    let upstream_refreshes = entra.token_requests() - upstream_before;
    let log = settled_log(daemon, offset, client_run.requests)?;
    let grants = count_grants(&String::from_utf8_lossy(&log[offset.min(log.len())..]), FAMILY);
    let waited_fraction =
        if grants.total() > 0 { grants.waited() as f64 / grants.total() as f64 } else { f64::NAN };
    ctx.say(format!(
        "soak: {} grants, {} waited on upstream ({:.6}), {} refreshes by the daemon; client p99 {:.0} us, max {:.1} ms",
        grants.total(),
        grants.waited(),
        waited_fraction,
        upstream_refreshes,
        client_run.p99_us,
        client_run.max_us / 1e3
    ));
    Ok(SoakResults {
        duration_s,
        keys: plan.soak_keys,
        token_lifetime_s: plan.soak_token_lifetime.as_secs_f64(),
        upstream_latency_ms: plan.soak_upstream_latency.as_secs_f64() * 1e3,
        rate: plan.soak_rate,
        grants,
        waited_fraction,
        upstream_refreshes,
        expected_refreshes: plan.soak_keys as f64 * duration_s
            / (plan.soak_token_lifetime.as_secs_f64() / 2.0),
        client: client_run,
    })
}

/// The daemon's log once it holds at least `grants` soak grants after byte `offset` (or after 5 s).
fn settled_log(daemon: &Daemon, offset: usize, grants: u64) -> Result<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read(daemon.log_path())?;
        let seen = count_grants(&String::from_utf8_lossy(&log[offset.min(log.len())..]), FAMILY).total();
        if seen >= grants || Instant::now() > deadline {
            return Ok(log);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Hex digits needed to number `keys` keys.
fn hex_width(keys: u32) -> usize {
    let mut width = 1;
    while 16u64.pow(width as u32) < keys as u64 {
        width += 1;
    }
    width
}

/// oha's random-URL pattern covering the soak's keys (all of them when `keys` is a power of 16).
fn url_regex(daemon: &Daemon, keys: u32) -> String {
    let width = hex_width(keys);
    let k = requests::random_keys(Dialect::Imds, FAMILY, u64::from(keys), width);
    format!(
        "{}{}{}",
        regex_escape(&format!("http://{}{}", daemon.addr, k.prefix)),
        "[0-9a-f]".repeat(width),
        regex_escape(&k.suffix)
    )
}

/// Escapes regex metacharacters, except `.`: oha treats a dot in its URL pattern literally, and an
/// escaped one is not understood.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\+*?()|[]{}^$#".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_width_covers_the_keys() {
        assert_eq!(hex_width(1), 1);
        assert_eq!(hex_width(16), 1);
        assert_eq!(hex_width(17), 2);
        assert_eq!(hex_width(256), 2);
    }

    #[test]
    fn regex_escape_quotes_metacharacters() {
        assert_eq!(regex_escape("a.b?c=d&e%2F(x)"), r"a.b\?c=d&e%2F\(x\)");
    }
}
