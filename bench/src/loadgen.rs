//! The load generators: `wrk` (closed loop, saturation) and `oha` (open loop at a fixed rate,
//! with latency correction), their command lines, and parsing of what they print.
//!
//! Both are established tools installed by `bench/run`; this module never generates load itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::stats::median;

/// The wrk script (random keys + a JSON summary line), written next to each run.
pub const WRK_SCRIPT: &str = include_str!("../lua/report.lua");

/// One load-generator run: throughput and latency (microseconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub requests: u64,
    pub duration_s: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Socket errors, timeouts and non-2xx answers together.
    pub errors: u64,
}

/// Every run of one target, with per-field medians.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Series {
    pub target: String,
    pub runs: Vec<Run>,
    /// Median of each field over `runs` (`requests` and `errors`: totals).
    pub median: Run,
}

impl Series {
    pub fn new(target: impl Into<String>) -> Self {
        Self { target: target.into(), ..Self::default() }
    }

    /// Appends a run and recomputes the medians.
    pub fn push(&mut self, run: Run) {
        self.runs.push(run);
        let m = |f: fn(&Run) -> f64| median(&self.runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN);
        self.median = Run {
            requests: self.runs.iter().map(|r| r.requests).sum(),
            duration_s: self.runs.iter().map(|r| r.duration_s).sum(),
            rps: m(|r| r.rps),
            p50_us: m(|r| r.p50_us),
            p99_us: m(|r| r.p99_us),
            p999_us: m(|r| r.p999_us),
            max_us: m(|r| r.max_us),
            errors: self.runs.iter().map(|r| r.errors).sum(),
        };
    }
}

/// What to request.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:PORT/path?query`.
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// Random keys for wrk: every request asks for `prefix + zero-padded(0..keys) + suffix`.
#[derive(Debug, Clone)]
pub struct RandomKeys {
    pub keys: u64,
    pub prefix: String,
    pub suffix: String,
    pub width: usize,
}

/// A wrk run: `threads` threads, `connections` connections, for `duration`.
#[derive(Debug, Clone)]
pub struct Wrk {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
    /// Directory for the script file.
    pub work_dir: PathBuf,
}

impl Wrk {
    pub fn run(&self, target: &Target, keys: Option<&RandomKeys>) -> Result<Run> {
        let script = self.work_dir.join("report.lua");
        if !script.exists() {
            std::fs::write(&script, WRK_SCRIPT).context("write wrk script")?;
        }
        let mut cmd = Command::new("wrk");
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .args(["--timeout", "5s", "-s"])
            .arg(&script);
        for (k, v) in &target.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(k) = keys {
            cmd.env("BENCH_KEYS", k.keys.to_string())
                .env("BENCH_PREFIX", &k.prefix)
                .env("BENCH_SUFFIX", &k.suffix)
                .env("BENCH_WIDTH", k.width.to_string());
        } else {
            cmd.env_remove("BENCH_KEYS");
        }
        cmd.arg(&target.url);
        let out = cmd.output().context("run wrk (is it installed? bench/run installs it)")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("wrk failed ({}): {}{}", out.status, stdout, String::from_utf8_lossy(&out.stderr));
        }
        parse_wrk(&stdout)
    }
}

/// Parses the `BENCH_JSON` line the wrk script prints.
pub fn parse_wrk(stdout: &str) -> Result<Run> {
    #[derive(Deserialize)]
    struct Line {
        requests: u64,
        duration_us: u64,
        connect_errors: u64,
        read_errors: u64,
        write_errors: u64,
        status_errors: u64,
        timeouts: u64,
        p50_us: f64,
        p99_us: f64,
        p999_us: f64,
        max_us: f64,
    }
    let json = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .with_context(|| format!("no BENCH_JSON line in wrk output:\n{stdout}"))?;
    let l: Line = serde_json::from_str(json).context("parse wrk summary")?;
    let duration_s = l.duration_us as f64 / 1e6;
    Ok(Run {
        requests: l.requests,
        duration_s,
        rps: if duration_s > 0.0 { l.requests as f64 / duration_s } else { 0.0 },
        p50_us: l.p50_us,
        p99_us: l.p99_us,
        p999_us: l.p999_us,
        max_us: l.max_us,
        errors: l.connect_errors + l.read_errors + l.write_errors + l.status_errors + l.timeouts,
    })
}

/// An oha run at a fixed request rate (open loop, latency corrected for coordinated omission).
#[derive(Debug, Clone)]
pub struct Oha {
    pub connections: u32,
    pub rate: u64,
    pub duration: Duration,
}

impl Oha {
    pub fn run(&self, target: &Target) -> Result<Run> {
        self.run_url(target, &target.url, false)
    }

    /// Like [`Oha::run`] with `url_regex` as a random-URL pattern (oha's `--rand-regex-url`).
    pub fn run_regex(&self, target: &Target, url_regex: &str) -> Result<Run> {
        self.run_url(target, url_regex, true)
    }

    fn run_url(&self, target: &Target, url: &str, regex: bool) -> Result<Run> {
        let mut cmd = Command::new(oha_binary());
        cmd.args(["--no-tui", "--output-format", "json", "--latency-correction"])
            .args(["-c", &self.connections.to_string()])
            .args(["-q", &self.rate.to_string()])
            .args(["-z", &format!("{}s", self.duration.as_secs().max(1))])
            .args(["-t", "5s"]);
        for (k, v) in &target.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if regex {
            cmd.arg("--rand-regex-url");
        }
        cmd.arg(url);
        let out = cmd.output().context("run oha (is it installed? bench/run installs it)")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("oha failed ({}): {}{}", out.status, stdout, String::from_utf8_lossy(&out.stderr));
        }
        parse_oha(&stdout)
    }
}

/// `oha` from PATH, else from cargo's default install directory.
pub fn oha_binary() -> PathBuf {
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("oha")).find(|p| p.is_file()))
        .unwrap_or_default();
    in_path
        .or_else(|| {
            let home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
            Some(home.join("bin/oha")).filter(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from("oha"))
}

/// Parses oha's `--output-format json` report.
pub fn parse_oha(stdout: &str) -> Result<Run> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).context("parse oha JSON")?;
    let summary = &v["summary"];
    let total_s = summary["total"].as_f64().unwrap_or(0.0);
    let rps = summary["requestsPerSec"].as_f64().unwrap_or(0.0);
    let pct = |key: &str| v["latencyPercentiles"][key].as_f64().map(|s| s * 1e6).unwrap_or(f64::NAN);
    let mut requests = 0u64;
    let mut non_2xx = 0u64;
    if let Some(codes) = v["statusCodeDistribution"].as_object() {
        for (code, n) in codes {
            let n = n.as_u64().unwrap_or(0);
            requests += n;
            if !code.starts_with('2') {
                non_2xx += n;
            }
        }
    }
    let errors: u64 = v["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                // oha counts requests still in flight when the duration ends as errors; those
                // were cut off by the generator, not refused by the server.
                .filter(|(k, _)| !k.contains("aborted due to deadline"))
                .map(|(_, n)| n.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    Ok(Run {
        requests,
        duration_s: total_s,
        rps,
        p50_us: pct("p50"),
        p99_us: pct("p99"),
        p999_us: pct("p99.9"),
        max_us: summary["slowest"].as_f64().map(|s| s * 1e6).unwrap_or(f64::NAN),
        errors: errors + non_2xx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary_line_is_parsed() {
        let out = "Running 1s test @ http://127.0.0.1:1/\n  2 threads and 64 connections\n\
                   BENCH_JSON {\"requests\":50000,\"duration_us\":2000000,\"bytes\":1,\"connect_errors\":0,\
                   \"read_errors\":1,\"write_errors\":0,\"status_errors\":2,\"timeouts\":0,\"p50_us\":410,\
                   \"p90_us\":600,\"p99_us\":900,\"p999_us\":1500,\"max_us\":4000,\"mean_us\":420.5}\n";
        let run = parse_wrk(out).unwrap();
        assert_eq!(run.requests, 50_000);
        assert_eq!(run.rps, 25_000.0);
        assert_eq!(run.p99_us, 900.0);
        assert_eq!(run.errors, 3);
    }

    #[test]
    fn series_medians_and_totals() {
        let mut s = Series::new("t");
        for (rps, p99) in [(10.0, 3.0), (30.0, 1.0), (20.0, 2.0)] {
            s.push(Run { requests: 5, rps, p99_us: p99, errors: 1, ..Run::default() });
        }
        assert_eq!(s.median.rps, 20.0);
        assert_eq!(s.median.p99_us, 2.0);
        assert_eq!(s.median.requests, 15);
        assert_eq!(s.median.errors, 3);
    }

    #[test]
    fn wrk_output_without_summary_is_an_error() {
        assert!(parse_wrk("unable to connect").is_err());
    }

    #[test]
    fn oha_json_is_parsed_and_deadline_aborts_are_not_errors() {
        let out = r#"{"summary":{"successRate":1.0,"total":10.0,"slowest":0.004,"fastest":0.0001,
            "average":0.0003,"requestsPerSec":999.5},
            "latencyPercentiles":{"p10":0.0001,"p50":0.0002,"p99":0.0008,"p99.9":0.002},
            "statusCodeDistribution":{"200":9990,"503":5},
            "errorDistribution":{"aborted due to deadline":3,"connection refused":1}}"#;
        let run = parse_oha(out).unwrap();
        assert_eq!(run.requests, 9995);
        assert_eq!(run.rps, 999.5);
        assert!((run.p99_us - 800.0).abs() < 1e-6);
        assert!((run.max_us - 4000.0).abs() < 1e-6);
        assert_eq!(run.errors, 6);
    }
}
