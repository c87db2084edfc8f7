//! `azbroker-bench`: `run` measures everything and writes the results; `responder` is the bare
//! baseline server that `run` starts as a process of its own. Use `bench/run`, which installs the
//! tools and builds this in release mode first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use azbroker_bench::authority::Authority;
use azbroker_bench::machine::{self, Machine};
use azbroker_bench::plan::Plan;
use azbroker_bench::procs::Daemon;
use azbroker_bench::report::{self, Results};
use azbroker_bench::requests::Dialect;
use azbroker_bench::suite::{self, Ctx};
use azbroker_bench::{chart, profile, responder};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "azbroker-bench", about = "azbroker benchmarks (use bench/run)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmarks and write bench/results (and BENCHMARKS.md after a full run).
    Run(RunArgs),
    /// Serve one fixed body for every request (the bare baseline).
    Responder {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        body: PathBuf,
    },
    /// A bounded cache-hit load for instruction-count profiling (see bench/src/profile.rs).
    Profile {
        /// The daemon binary (or a wrapper script that runs it under a profiler).
        #[arg(long)]
        daemon: PathBuf,
        /// A command that runs the measured server (daemon or baseline) given as its arguments,
        /// e.g. a script that execs `valgrind --tool=callgrind "$@"`.
        #[arg(long)]
        wrapper: Option<PathBuf>,
        /// Send the load to a bare baseline serving the daemon's IMDS body instead:
        /// `responder` or `nginx` (one worker).
        #[arg(long, value_parser = ["responder", "nginx"])]
        baseline: Option<String>,
        /// Cache hits to send after the one request that fills the cache.
        #[arg(long, default_value_t = 2000)]
        requests: u64,
        #[arg(long, default_value_t = 4)]
        connections: u64,
        /// Send App Service requests instead of IMDS ones.
        #[arg(long)]
        app_service: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// A short smoke run of every suite (~2 min); results go to bench/results/quick.
    #[arg(long)]
    quick: bool,
    /// Only these suites (comma-separated: hit,cold,soak,today,scale); results go to
    /// bench/results/partial and BENCHMARKS.md is left alone.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The daemon binary (default: target/release/azbroker).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Do not update BENCHMARKS.md.
    #[arg(long)]
    no_doc: bool,
    /// Also measure this azbroker build in the cache-hit suite, beside the current one (e.g. a
    /// build of another commit, for before/after figures). Implies --no-doc.
    #[arg(long, value_name = "PATH")]
    compare_daemon: Option<PathBuf>,
    /// Where to write the results (default: bench/results, or bench/results/quick).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Responder { listen, body } => {
            std::fs::read(&body).context("read the body file").and_then(|b| responder::run(listen, b))
        }
        Cmd::Profile { daemon, wrapper, baseline, requests, connections, app_service } => {
            let dialect = if app_service { Dialect::AppService } else { Dialect::Imds };
            let target = match baseline.as_deref() {
                Some("responder") => profile::Target::Responder,
                Some(_) => profile::Target::Nginx,
                None => profile::Target::Daemon,
            };
            profile::run(&daemon, wrapper.as_deref(), target, dialect, requests, connections)
        }
        Cmd::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("azbroker-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().context("repository root")?.to_path_buf();
    let plan = if args.quick { Plan::quick() } else { Plan::full() };
    let daemon_bin = args.daemon.clone().unwrap_or_else(|| root.join("target/release/azbroker"));
    let wanted = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let mut command = String::from("bench/run");
    if args.quick {
        command.push_str(" --quick");
    }
    if !args.only.is_empty() {
        command.push_str(&format!(" --only {}", args.only.join(",")));
    }
    let machine = Machine::probe(&root);
    let started_utc = utc_now();
    let mut ctx = Ctx::new(plan.clone(), Authority::start()?, daemon_bin, root.clone())?;
    ctx.compare_bin = args.compare_daemon.clone();
    if args.compare_daemon.is_some() {
        command.push_str(" --compare-daemon PATH");
    }
    ctx.say(format!(
        "{command}: {} plan; load {}",
        if plan.quick { "quick" } else { "full" },
        machine.uptime_before
    ));

    let mut results = Results {
        command,
        started_utc,
        duration_s: 0.0,
        plan,
        machine,
        hit: None,
        cold: None,
        soak: None,
        today: None,
        scale: None,
        failures: vec![],
    };
    if ["hit", "cold", "soak", "today"].iter().any(|s| wanted(s)) {
        let mut daemon = Daemon::start(&ctx.daemon_bin, &ctx.authority.entra.url())?;
        ctx.say(format!(
            "daemon ready on {} after {:.1} ms",
            daemon.addr,
            daemon.ready_after.as_secs_f64() * 1e3
        ));
        if wanted("hit") {
            results.hit = record(&mut results.failures, "hit", suite::hit::run(&ctx, &daemon));
        }
        if wanted("cold") {
            results.cold = record(&mut results.failures, "cold", suite::cold::run(&ctx, &daemon));
        }
        if wanted("soak") {
            results.soak = record(&mut results.failures, "soak", suite::soak::run(&ctx, &daemon));
        }
        if wanted("today") {
            results.today = record(&mut results.failures, "today", suite::today::run(&ctx, &daemon));
        }
        daemon.stop()?;
    }
    if wanted("scale") {
        results.scale = record(&mut results.failures, "scale", suite::scale::run(&ctx));
    }
    results.machine.uptime_after = machine::uptime();
    results.duration_s = ctx.elapsed_s();
    // Only a full run of every suite is the record (bench/results, BENCHMARKS.md).
    let partial = !args.only.is_empty() || args.compare_daemon.is_some();
    let out = args.out.clone().unwrap_or_else(|| {
        root.join(match (results.plan.quick, partial) {
            (true, _) => "bench/results/quick",
            (false, true) => "bench/results/partial",
            (false, false) => "bench/results",
        })
    });
    write_outputs(&root, &out, &results, args.no_doc || partial)?;
    if results.failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("suites failed: {}", results.failures.join("; "))
    }
}

fn record<T>(failures: &mut Vec<String>, name: &str, r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("azbroker-bench: {name} failed: {e:#}");
            failures.push(format!("{name}: {e:#}"));
            None
        }
    }
}

fn write_outputs(
    root: &std::path::Path,
    out: &std::path::Path,
    results: &Results,
    no_doc: bool,
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(results)?)?;
    std::fs::write(out.join("results.csv"), report::csv(results))?;
    let md = report::markdown(results);
    std::fs::write(out.join("summary.md"), &md)?;
    match chart::svg(results) {
        Ok(svg) => std::fs::write(out.join("chart.svg"), svg)?,
        Err(e) => eprintln!("azbroker-bench: no chart: {e:#}"),
    }
    println!("{md}");
    eprintln!("azbroker-bench: wrote {}/{{results.json,results.csv,summary.md,chart.svg}}", out.display());
    if !results.plan.quick && !no_doc && results.failures.is_empty() {
        let doc_path = root.join("BENCHMARKS.md");
        let doc = std::fs::read_to_string(&doc_path).unwrap_or_else(|_| "# Benchmarks\n".into());
        std::fs::write(&doc_path, report::splice(&doc, &md))?;
        eprintln!("azbroker-bench: updated {}", doc_path.display());
    }
    Ok(())
}

fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
