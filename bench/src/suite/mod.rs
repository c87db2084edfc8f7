//! The benchmarks themselves, one module per question the issue asks: cache-hit throughput and
//! latency against bare responders (`hit`), cold misses (`cold`), refresh-ahead steady state
//! (`soak`), cache scale and start-up (`scale`), and what users do today (`today`).
//!
//! Each suite takes the shared [`Ctx`], drives real processes over loopback and returns plain,
//! serialisable results; judging them against the targets happens in `report`.

use std::path::PathBuf;
use std::time::Instant;

use crate::authority::Authority;
use crate::plan::Plan;

pub mod cold;
pub mod hit;
pub mod scale;
pub mod soak;
pub mod today;

/// What every suite shares.
pub struct Ctx {
    pub plan: Plan,
    pub rt: tokio::runtime::Runtime,
    pub authority: Authority,
    pub daemon_bin: PathBuf,
    /// Another daemon build measured beside `daemon_bin` in the cache-hit suite (before/after).
    pub compare_bin: Option<PathBuf>,
    /// The repository root (for bench/python and the bench venv).
    pub root: PathBuf,
    /// Scratch space for this run (scripts, logs).
    pub work: tempfile::TempDir,
    started: Instant,
}

impl Ctx {
    pub fn new(plan: Plan, authority: Authority, daemon_bin: PathBuf, root: PathBuf) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        Ok(Self {
            plan,
            rt,
            authority,
            daemon_bin,
            compare_bin: None,
            root,
            work: tempfile::tempdir()?,
            started: Instant::now(),
        })
    }

    /// One progress line on stderr, stamped with the time since the run began.
    pub fn say(&self, msg: impl std::fmt::Display) {
        eprintln!("[{:>5.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
