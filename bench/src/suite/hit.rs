//! Cache-hit throughput and latency of the token endpoint (IMDS and App Service dialects) against
//! two bare responders returning the broker's own token body byte for byte: the in-tree hyper
//! responder and nginx.
//!
//! Targets alternate within every round (A B C D, A B C D, ...), so slow drift in the machine's
//! load hits all of them alike. Saturation: wrk, closed loop. Latency: oha at one fixed rate for
//! every target — half of the broker's median saturation throughput — open loop with latency
//! correction.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;

use super::Ctx;
use crate::loadgen::{Oha, Series, Target, Wrk};
use crate::procs::{Baseline, Daemon};
use crate::requests::{self, Dialect, HIT_RESOURCE};

/// Target names, as the report shows them.
pub const RESPONDER: &str = "hyper responder";
pub const NGINX: &str = "nginx";
pub const BROKER_IMDS: &str = "azbroker IMDS";
pub const BROKER_APP_SERVICE: &str = "azbroker App Service";
/// The build given with `--compare-daemon`, on the IMDS dialect.
pub const BROKER_COMPARED: &str = "azbroker IMDS, compared build";

#[derive(Debug, Clone, Serialize)]
pub struct HitResults {
    pub resource: String,
    /// Body length per target (the baselines serve the IMDS body).
    pub body_bytes: Vec<(String, usize)>,
    pub saturation: Vec<Series>,
    /// The fixed rate of the latency runs (requests/s).
    pub fixed_rate: u64,
    pub fixed: Vec<Series>,
}

impl HitResults {
    pub fn saturation_of(&self, target: &str) -> Option<&Series> {
        self.saturation.iter().find(|s| s.target == target)
    }

    pub fn fixed_of(&self, target: &str) -> Option<&Series> {
        self.fixed.iter().find(|s| s.target == target)
    }
}

pub fn run(ctx: &Ctx, daemon: &Daemon) -> Result<HitResults> {
    let plan = &ctx.plan;
    let client = requests::client(4)?;
    let (imds_body, app_body) = ctx.rt.block_on(async {
        let a = requests::get_token(&client, daemon.addr, Dialect::Imds, HIT_RESOURCE).await?;
        let b = requests::get_token(&client, daemon.addr, Dialect::Imds, HIT_RESOURCE).await?;
        ensure!(a == b, "a second IMDS request did not return the cached token");
        let c = requests::get_token(&client, daemon.addr, Dialect::AppService, HIT_RESOURCE).await?;
        Ok::<_, anyhow::Error>((a, c))
    })?;
    let responder = Baseline::responder(&imds_body)?;
    let nginx = Baseline::nginx(&imds_body, std::thread::available_parallelism().map_or(2, |n| n.get()))?;
    let imds = Dialect::Imds;
    let mut targets: Vec<(&str, Target)> = vec![
        (RESPONDER, imds.target(responder.addr, HIT_RESOURCE)),
        (NGINX, imds.target(nginx.addr, HIT_RESOURCE)),
        (BROKER_IMDS, imds.target(daemon.addr, HIT_RESOURCE)),
        (BROKER_APP_SERVICE, Dialect::AppService.target(daemon.addr, HIT_RESOURCE)),
    ];
    let compared = match &ctx.compare_bin {
        Some(bin) => {
            let other = Daemon::start(bin, &ctx.authority.entra.url())?;
            let body = ctx.rt.block_on(requests::get_token(&client, other.addr, imds, HIT_RESOURCE))?;
            ensure!(body.len() == imds_body.len(), "the compared build answers with a different body");
            targets.push((BROKER_COMPARED, imds.target(other.addr, HIT_RESOURCE)));
            Some(other)
        }
        None => None,
    };
    ctx.rt.block_on(async {
        for (name, t) in &targets[..2] {
            let got = client.get(&t.url).header("Metadata", "true").send().await?.bytes().await?;
            ensure!(got.as_ref() == imds_body.as_slice(), "{name} does not serve the broker's body");
        }
        Ok::<_, anyhow::Error>(())
    })?;
    ctx.say(format!(
        "hit: bodies {} B (IMDS), {} B (App Service); baselines serve the IMDS body",
        imds_body.len(),
        app_body.len()
    ));

    let wrk = Wrk {
        threads: plan.wrk_threads,
        connections: plan.wrk_connections,
        duration: plan.round,
        work_dir: ctx.work.path().to_path_buf(),
    };
    let warm = Wrk { duration: Duration::from_secs(1), ..wrk.clone() };
    for (_, t) in &targets {
        warm.run(t, None)?;
    }
    let mut saturation: Vec<Series> = targets.iter().map(|(n, _)| Series::new(*n)).collect();
    for round in 1..=plan.rounds {
        for ((name, t), series) in targets.iter().zip(&mut saturation) {
            let run = wrk.run(t, None).with_context(|| format!("wrk against {name}"))?;
            ctx.say(format!(
                "hit: saturation round {round}/{} {name:<22} {:>9.0} req/s  p99 {:>6.0} us  errors {}",
                plan.rounds, run.rps, run.p99_us, run.errors
            ));
            series.push(run);
        }
    }
    for s in &saturation {
        if s.median.errors > 0 {
            bail!("{}: {} failed requests under load", s.target, s.median.errors);
        }
    }

    let broker_sat = saturation
        .iter()
        .filter(|s| s.target == BROKER_IMDS || s.target == BROKER_APP_SERVICE)
        .map(|s| s.median.rps)
        .fold(f64::INFINITY, f64::min);
    let fixed_rate = ((broker_sat / 2.0) as u64).max(100);
    let oha = Oha { connections: plan.wrk_connections, rate: fixed_rate, duration: plan.round };
    let mut fixed: Vec<Series> = targets.iter().map(|(n, _)| Series::new(*n)).collect();
    for round in 1..=plan.rounds {
        for ((name, t), series) in targets.iter().zip(&mut fixed) {
            let run = oha.run(t).with_context(|| format!("oha against {name}"))?;
            ctx.say(format!(
                "hit: {fixed_rate} req/s round {round}/{} {name:<22} p50 {:>5.0} us  p99 {:>6.0} us  p99.9 {:>6.0} us",
                plan.rounds, run.p50_us, run.p99_us, run.p999_us
            ));
            series.push(run);
        }
    }
    drop((responder, nginx, compared));
    let mut body_bytes = vec![
        (RESPONDER.into(), imds_body.len()),
        (NGINX.into(), imds_body.len()),
        (BROKER_IMDS.into(), imds_body.len()),
        (BROKER_APP_SERVICE.into(), app_body.len()),
    ];
    if ctx.compare_bin.is_some() {
        body_bytes.push((BROKER_COMPARED.into(), imds_body.len()));
    }
    Ok(HitResults { resource: HIT_RESOURCE.into(), body_bytes, saturation, fixed_rate, fixed })
}
