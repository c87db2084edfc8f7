//! azbroker's benchmarks: the real daemon binary against bare HTTP responders on the same
//! machine, and against what users do today. Run them with `bench/run` (see BENCHMARKS.md);
//! nothing here runs in the test suite except the unit tests of the pure parts.
//!
//! Layout: `plan` (how long and how hard), `procs` (daemon, hyper responder, nginx processes),
//! `authority` (the testkit upstream), `requests` (what clients send), `loadgen` (wrk and oha),
//! `audit` (the daemon's grant log), `suite::*` (one module per measurement), `report` (targets,
//! Markdown, CSV), `chart` (SVG), `machine` (what it ran on), `responder` (the bare baseline).
//!
//! Every request goes to loopback; every load loop is bounded by a duration or a count.

pub mod audit;
pub mod authority;
pub mod chart;
pub mod loadgen;
pub mod machine;
pub mod plan;
pub mod procs;
pub mod profile;
pub mod report;
pub mod requests;
pub mod responder;
pub mod stats;
pub mod suite;
