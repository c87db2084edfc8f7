//! How long and how hard each benchmark runs: the full plan (what BENCHMARKS.md reports, ~10
//! minutes on 2 cores) and the quick plan (a smoke run of the same code paths in ~2 minutes).

use std::time::Duration;

use serde::Serialize;

/// Every knob of a run, recorded with the results.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub quick: bool,
    /// Side-by-side rounds (A B A B ...) for the cache-hit comparison.
    pub rounds: u32,
    /// Length of one load-generator run.
    pub round: Duration,
    pub wrk_threads: u32,
    pub wrk_connections: u32,
    /// Concurrent clients in a cold-miss round, and rounds per injected latency.
    pub cold_clients: usize,
    pub cold_rounds: u32,
    pub cold_latencies: Vec<Duration>,
    /// Refresh-ahead soak.
    pub soak: Duration,
    pub soak_keys: u32,
    pub soak_token_lifetime: Duration,
    pub soak_upstream_latency: Duration,
    pub soak_rate: u64,
    /// Cache sizes to measure, cumulative, and the probe length at each.
    pub scale_tiers: Vec<u64>,
    pub scale_probe: Duration,
    pub scale_fill_concurrency: usize,
    /// Daemon starts for the exec-to-ready time.
    pub ready_runs: u32,
    /// Rounds of "what users do today" (each runs every method once).
    pub today_rounds: u32,
    /// Calls per warm-process measurement.
    pub warm_calls: u32,
}

impl Plan {
    pub fn full() -> Self {
        Self {
            quick: false,
            rounds: 5,
            round: Duration::from_secs(10),
            wrk_threads: 2,
            wrk_connections: 64,
            cold_clients: 32,
            cold_rounds: 5,
            cold_latencies: vec![Duration::from_millis(50), Duration::from_millis(500)],
            soak: Duration::from_secs(90),
            soak_keys: 16,
            soak_token_lifetime: Duration::from_secs(20),
            soak_upstream_latency: Duration::from_millis(200),
            soak_rate: 1000,
            scale_tiers: vec![1, 100, 10_000, 100_000],
            scale_probe: Duration::from_secs(3),
            scale_fill_concurrency: 64,
            ready_runs: 10,
            today_rounds: 5,
            warm_calls: 200,
        }
    }

    pub fn quick() -> Self {
        Self {
            quick: true,
            rounds: 2,
            round: Duration::from_secs(3),
            cold_clients: 16,
            cold_rounds: 2,
            soak: Duration::from_secs(20),
            soak_token_lifetime: Duration::from_secs(8),
            scale_tiers: vec![1, 100, 2_000],
            scale_probe: Duration::from_secs(2),
            ready_runs: 3,
            today_rounds: 2,
            warm_calls: 50,
            ..Self::full()
        }
    }
}
