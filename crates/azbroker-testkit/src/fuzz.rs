//! A time-boxed property-test runner: the project's fuzzing harness on the stable toolchain.
//!
//! [`fuzz`] feeds values from a proptest strategy to a check until its time budget is spent
//! (`AZBROKER_FUZZ_SECS`, default 2 s per target; CI sets more), shrinks any failure to a minimal
//! input and panics with it — that input then becomes a regression test next to the target. It
//! prints how many inputs each target ran. Only compiled with the `fuzz` feature (dev-dependencies).

use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// Inputs per round between budget checks.
const ROUND: u32 = 256;

/// The time budget per target.
pub fn budget() -> Duration {
    let secs = std::env::var("AZBROKER_FUZZ_SECS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0);
    Duration::from_secs_f64(secs.max(0.1))
}

/// Runs `check` on inputs from `strategy` until the budget is spent; returns the input count.
/// Panics with the shrunk input when `check` fails or panics.
pub fn fuzz<S>(name: &str, strategy: S, check: impl Fn(S::Value) -> Result<(), TestCaseError>) -> u64
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    let config = Config { cases: ROUND, failure_persistence: None, ..Config::default() };
    loop {
        let mut runner = TestRunner::new(config.clone());
        match runner.run(&strategy, &check) {
            Ok(()) => runs += u64::from(ROUND),
            Err(TestError::Fail(why, input)) => panic!("fuzz {name}: {why}\nminimal input: {input:#?}"),
            Err(TestError::Abort(why)) => panic!("fuzz {name}: aborted: {why}"),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!("fuzz {name}: {runs} inputs in {:.1} s", budget().as_secs_f64());
    runs
}
