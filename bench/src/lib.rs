//! Benchmark helpers (see BENCHMARKS.md and bench/run).
