//! Everything a run produces: the results record, the verdict on each DESIGN.md target, the
//! Markdown summary (printed, and spliced into BENCHMARKS.md between markers), and a flat CSV of
//! every raw figure.
//!
//! Pure formatting over [`Results`]; nothing here measures or starts anything.

use std::fmt::Write as _;

use serde::Serialize;

use crate::loadgen::Run;
use crate::machine::Machine;
use crate::plan::Plan;
use crate::stats::ratio;
use crate::suite::cold::{ColdCase, ColdResults};
use crate::suite::hit::{self, HitResults};
use crate::suite::scale::ScaleResults;
use crate::suite::soak::SoakResults;
use crate::suite::today::{self, TodayResults};

/// Start and end markers of the generated part of BENCHMARKS.md.
pub const BEGIN: &str = "<!-- bench/run: generated figures begin -->";
pub const END: &str = "<!-- bench/run: generated figures end -->";

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub command: String,
    pub started_utc: String,
    pub duration_s: f64,
    pub plan: Plan,
    pub machine: Machine,
    pub hit: Option<HitResults>,
    pub cold: Option<ColdResults>,
    pub soak: Option<SoakResults>,
    pub today: Option<TodayResults>,
    pub scale: Option<ScaleResults>,
    /// Suites that could not run, with the reason.
    pub failures: Vec<String>,
}

/// One DESIGN.md performance target and how this run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

const MB: f64 = 1e6;

/// The verdict on every target this run measured.
pub fn checks(r: &Results) -> Vec<Check> {
    let mut out = Vec::new();
    let mut check = |target: &str, measured: String, met: bool| {
        out.push(Check { target: target.into(), measured, met });
    };
    if let Some(h) = &r.hit {
        let base = h.saturation_of(hit::RESPONDER).map(|s| s.median.rps).unwrap_or(f64::NAN);
        for name in [hit::BROKER_IMDS, hit::BROKER_APP_SERVICE] {
            if let Some(s) = h.saturation_of(name) {
                let x = ratio(s.median.rps, base).unwrap_or(f64::NAN);
                check(
                    &format!("{name}: cache hit >= 0.9x the bare responder's req/s"),
                    format!("{:.0} / {:.0} req/s = {x:.2}x", s.median.rps, base),
                    x >= 0.9,
                );
            }
            if let Some(s) = h.fixed_of(name) {
                let bare = h.fixed_of(hit::RESPONDER).map(|b| b.median.p99_us).unwrap_or(f64::NAN);
                check(
                    &format!("{name}: p99 < 1 ms at half of saturation"),
                    format!(
                        "p99 {:.0} us at {} req/s (hyper responder in the same run: {bare:.0} us)",
                        s.median.p99_us, h.fixed_rate
                    ),
                    s.median.p99_us < 1000.0,
                );
            }
        }
    }
    if let Some(c) = &r.cold {
        for case in &c.cases {
            let (calls, slowest) = ColdCase::worst(&case.same_key);
            check(
                &format!(
                    "{} concurrent misses on one key -> 1 upstream call ({:.0} ms upstream)",
                    c.clients, case.upstream_latency_ms
                ),
                format!("at most {calls} call(s) per round; slowest client {slowest:.1} ms"),
                calls == 1 && case.same_key.iter().all(|r| r.upstream_calls == 1),
            );
            let (_, slowest) = ColdCase::worst(&case.distinct_keys);
            let all_n = case.distinct_keys.iter().all(|r| r.upstream_calls == c.clients as u64);
            check(
                &format!(
                    "{n} distinct keys -> {n} calls in parallel ({:.0} ms upstream)",
                    case.upstream_latency_ms,
                    n = c.clients
                ),
                format!(
                    "{} calls per round; slowest client {slowest:.1} ms = {:.2}x the upstream latency",
                    if all_n { c.clients.to_string() } else { "not always N".into() },
                    slowest / case.upstream_latency_ms
                ),
                all_n && slowest < 2.0 * case.upstream_latency_ms,
            );
        }
    }
    if let Some(s) = &r.soak {
        check(
            "Steady state with refresh-ahead: 0 client requests wait on upstream",
            format!(
                "{} of {} requests waited ({} refreshes ahead of demand)",
                s.grants.waited(),
                s.grants.total(),
                s.upstream_refreshes
            ),
            s.grants.waited() == 0 && s.grants.stale == 0 && s.grants.total() > 0,
        );
    }
    if let Some(s) = &r.scale {
        let idle = s.idle_rss_kib as f64 * 1024.0 / MB;
        check("RSS < 20 MB idle", format!("{idle:.1} MB"), idle < 20.0);
        if let Some(t) = s.tiers.iter().find(|t| t.entries == 10_000) {
            let mb = t.rss_kib as f64 * 1024.0 / MB;
            check("RSS < 64 MB with 10 000 cached tokens", format!("{mb:.1} MB"), mb < 64.0);
        }
        check(
            "Ready < 50 ms after exec",
            format!("median {:.1} ms of {} starts", s.ready_median_ms, s.ready_ms.len()),
            s.ready_median_ms < 50.0,
        );
    }
    out
}

/// The generated Markdown: machine, command, verdicts, then every section's figures.
pub fn markdown(r: &Results) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(
        md,
        "### Run of {} ({})\n",
        r.started_utc,
        if r.plan.quick { "quick plan: smoke figures only" } else { "full plan" }
    );
    let _ = writeln!(md, "- Command: `{}` ({:.0} s)", r.command, r.duration_s);
    let _ = writeln!(md, "- Machine: {} × {}, {:.1} GiB RAM, {}", m.cores, m.cpu, m.memory_gib, m.kernel);
    let _ = writeln!(md, "- Load (`uptime`) before: `{}`", m.uptime_before);
    let _ = writeln!(md, "- Load (`uptime`) after: `{}`", m.uptime_after);
    let tools: Vec<_> = m.tools.iter().map(|(t, v)| format!("{t}: {v}")).collect();
    let _ = writeln!(md, "- Tools: {}", tools.join("; "));
    let _ = writeln!(md, "- Source: `{}`", m.revision);
    if let Some(t) = &r.today {
        let _ = writeln!(md, "- Clients: {}", t.versions);
    }
    for f in &r.failures {
        let _ = writeln!(md, "- **Not measured**: {f}");
    }
    let _ = writeln!(md, "\n#### Targets (DESIGN.md)\n\n| Target | Measured | Met |\n|---|---|---|");
    for c in checks(r) {
        let _ = writeln!(md, "| {} | {} | {} |", c.target, c.measured, if c.met { "yes" } else { "**no**" });
    }
    if let Some(h) = &r.hit {
        hit_md(&mut md, h, &r.plan);
    }
    if let Some(c) = &r.cold {
        cold_md(&mut md, c);
    }
    if let Some(s) = &r.soak {
        soak_md(&mut md, s);
    }
    if let Some(s) = &r.scale {
        scale_md(&mut md, s);
    }
    if let Some(t) = &r.today {
        today_md(&mut md, t, r);
    }
    md
}

fn hit_md(md: &mut String, h: &HitResults, plan: &Plan) {
    let base = h.saturation_of(hit::RESPONDER).map(|s| s.median.rps).unwrap_or(f64::NAN);
    let nginx = h.saturation_of(hit::NGINX).map(|s| s.median.rps).unwrap_or(f64::NAN);
    let bodies: Vec<_> = h.body_bytes.iter().map(|(t, b)| format!("{t} {b} B")).collect();
    let _ = writeln!(
        md,
        "\n#### 1. Cache hit: `{}`\n\nBodies: {}. Saturation: wrk, {} threads, {} connections, {} rounds × {} s, targets alternating within each round.\n",
        h.resource,
        bodies.join(", "),
        plan.wrk_threads,
        plan.wrk_connections,
        plan.rounds,
        plan.round.as_secs()
    );
    let _ = writeln!(
        md,
        "| Target | req/s (median) | × hyper responder | × nginx | p50 us | p99 us | p99.9 us | req/s per round |\n|---|---|---|---|---|---|---|---|"
    );
    for s in &h.saturation {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} | {} |",
            s.target,
            s.median.rps,
            ratio(s.median.rps, base).unwrap_or(f64::NAN),
            ratio(s.median.rps, nginx).unwrap_or(f64::NAN),
            s.median.p50_us,
            s.median.p99_us,
            s.median.p999_us,
            rounds(&s.runs, |r| r.rps, 0)
        );
    }
    let _ = writeln!(
        md,
        "\nFixed rate {} req/s (half the broker's saturation), oha, {} connections, latency-corrected, {} rounds × {} s:\n",
        h.fixed_rate,
        plan.wrk_connections,
        plan.rounds,
        plan.round.as_secs()
    );
    let _ = writeln!(
        md,
        "| Target | p50 us | p99 us | p99.9 us | max us | achieved req/s | p99 us per round |\n|---|---|---|---|---|---|---|"
    );
    for s in &h.fixed {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |",
            s.target,
            s.median.p50_us,
            s.median.p99_us,
            s.median.p999_us,
            s.median.max_us,
            s.median.rps,
            rounds(&s.runs, |r| r.p99_us, 0)
        );
    }
}

fn cold_md(md: &mut String, c: &ColdResults) {
    let _ = writeln!(
        md,
        "\n#### 2. Cold misses ({} clients per round, released together, one connection each)\n\n| Upstream latency | Keys | Upstream calls per round | Median wait ms per round | Slowest wait ms per round |\n|---|---|---|---|---|",
        c.clients
    );
    for case in &c.cases {
        for (keys, rounds_) in [("1 (all clients)", &case.same_key), ("one per client", &case.distinct_keys)]
        {
            let calls: Vec<_> = rounds_.iter().map(|r| r.upstream_calls.to_string()).collect();
            let med: Vec<_> = rounds_.iter().map(|r| format!("{:.1}", r.median_ms)).collect();
            let max: Vec<_> = rounds_.iter().map(|r| format!("{:.1}", r.max_ms)).collect();
            let _ = writeln!(
                md,
                "| {:.0} ms | {keys} | {} | {} | {} |",
                case.upstream_latency_ms,
                calls.join(", "),
                med.join(", "),
                max.join(", ")
            );
        }
    }
}

fn soak_md(md: &mut String, s: &SoakResults) {
    let g = &s.grants;
    let _ = writeln!(
        md,
        "\n#### 3. Steady state with refresh-ahead\n\n{} keys, tokens living {:.0} s, upstream answering in {:.0} ms, {} req/s for {:.0} s (oha, random key per request), after one warm-up request per key.\n",
        s.keys, s.token_lifetime_s, s.upstream_latency_ms, s.rate, s.duration_s
    );
    let _ = writeln!(
        md,
        "| Grants | hit | miss | coalesced | stale | Waited on upstream | Refreshes by the daemon (predicted) | Client p50 / p99 / max |\n|---|---|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} | {} ({:.6}) | {} ({:.0}) | {:.0} us / {:.0} us / {:.1} ms |",
        g.total(),
        g.hit,
        g.miss,
        g.coalesced,
        g.stale,
        g.waited(),
        s.waited_fraction,
        s.upstream_refreshes,
        s.expected_refreshes,
        s.client.p50_us,
        s.client.p99_us,
        s.client.max_us / 1e3
    );
}

fn scale_md(md: &mut String, s: &ScaleResults) {
    let runs: Vec<_> = s.ready_ms.iter().map(|v| format!("{v:.1}")).collect();
    let _ = writeln!(
        md,
        "\n#### 4. Start-up and cache scale\n\nExec to ready (`/readyz` 200): median {:.1} ms (runs: {} ms). Idle RSS: {:.1} MB.\n",
        s.ready_median_ms,
        runs.join(", "),
        s.idle_rss_kib as f64 * 1024.0 / MB
    );
    let _ = writeln!(
        md,
        "| Cached entries | RSS MB | p50 us (1 conn) | p99 us (1 conn) | req/s (2 threads, 64 conns) | Fill rate (entries/s) |\n|---|---|---|---|---|---|"
    );
    for t in &s.tiers {
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
            t.entries,
            t.rss_kib as f64 * 1024.0 / MB,
            t.latency.p50_us,
            t.latency.p99_us,
            t.saturation.rps,
            t.fill_rate
        );
    }
}

fn today_md(md: &mut String, t: &TodayResults, r: &Results) {
    let broker = t.median_of(today::HTTP_WARM).unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "\n#### 5. Against what users do today (per token, {} rounds)\n\n{}\n\n| Method | ms per token (median) | × HTTP via azbroker | ms per round |\n|---|---|---|---|",
        r.plan.today_rounds,
        if t.az_full_command {
            "`az account get-access-token` ran in full against a seeded offline login (token from azure-cli's own MSAL cache)."
        } else {
            "**`az account get-access-token` could not run offline here: its row is the start-up floor (`az account list`).**"
        }
    );
    for m in &t.methods {
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.0} | {} |",
            m.name,
            m.median_ms,
            ratio(m.median_ms, broker).unwrap_or(f64::NAN),
            m.runs_ms.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(line) = headline(r) {
        let _ = writeln!(md, "\n**Headline:** {line}");
    }
}

/// The one-line comparison: what a token costs today versus through the broker.
pub fn headline(r: &Results) -> Option<String> {
    let t = r.today.as_ref()?;
    let az = t.median_of(today::AZ_CLI)?;
    let cli_cold = t.median_of(today::CLI_CRED_COLD)?;
    let mi_cold = t.median_of(today::MI_COLD)?;
    let mi_warm = t.median_of(today::MI_WARM)?;
    let http = t.median_of(today::HTTP_WARM)?;
    Some(format!(
        "`az account get-access-token` takes {az:.0} ms per token; the same token through azbroker takes {http:.2} ms \
         from a warm Python process ({:.0}× faster; {mi_warm:.2} ms with azure-identity, {:.0}×), and a cold \
         Python process with ManagedIdentityCredential takes {mi_cold:.0} ms against {cli_cold:.0} ms with \
         AzureCliCredential ({:.1}×).",
        az / http,
        az / mi_warm,
        cli_cold / mi_cold
    ))
}

fn rounds(runs: &[Run], f: fn(&Run) -> f64, decimals: usize) -> String {
    runs.iter().map(|r| format!("{:.*}", decimals, f(r))).collect::<Vec<_>>().join(", ")
}

/// Every raw figure, one per row: `suite,target,round,metric,value`.
pub fn csv(r: &Results) -> String {
    let mut out = String::from("suite,target,round,metric,value\n");
    let o = &mut out;
    if let Some(h) = &r.hit {
        for (suite, list) in [("hit-saturation", &h.saturation), ("hit-fixed-rate", &h.fixed)] {
            for s in list {
                for (i, run) in s.runs.iter().enumerate() {
                    for (metric, v) in run_fields(run) {
                        row(o, suite, &s.target, i + 1, metric, v);
                    }
                }
            }
        }
    }
    if let Some(c) = &r.cold {
        for case in &c.cases {
            for (keys, list) in [("same-key", &case.same_key), ("distinct-keys", &case.distinct_keys)] {
                let target = format!("{keys} {:.0}ms", case.upstream_latency_ms);
                for (i, x) in list.iter().enumerate() {
                    row(o, "cold", &target, i + 1, "upstream_calls", x.upstream_calls as f64);
                    row(o, "cold", &target, i + 1, "median_ms", x.median_ms);
                    row(o, "cold", &target, i + 1, "max_ms", x.max_ms);
                }
            }
        }
    }
    if let Some(s) = &r.soak {
        let g = &s.grants;
        for (metric, v) in [
            ("grants", g.total() as f64),
            ("hit", g.hit as f64),
            ("miss", g.miss as f64),
            ("coalesced", g.coalesced as f64),
            ("stale", g.stale as f64),
            ("waited_fraction", s.waited_fraction),
            ("upstream_refreshes", s.upstream_refreshes as f64),
        ] {
            row(o, "soak", "azbroker IMDS", 1, metric, v);
        }
        for (metric, v) in run_fields(&s.client) {
            row(o, "soak", "client", 1, metric, v);
        }
    }
    if let Some(s) = &r.scale {
        for (i, v) in s.ready_ms.iter().enumerate() {
            row(o, "scale", "exec-to-ready", i + 1, "ms", *v);
        }
        row(o, "scale", "idle", 1, "rss_kib", s.idle_rss_kib as f64);
        for t in &s.tiers {
            let target = format!("{} entries", t.entries);
            row(o, "scale", &target, 1, "rss_kib", t.rss_kib as f64);
            row(o, "scale", &target, 1, "fill_rate", t.fill_rate);
            row(o, "scale", &target, 1, "p50_us_1conn", t.latency.p50_us);
            row(o, "scale", &target, 1, "p99_us_1conn", t.latency.p99_us);
            row(o, "scale", &target, 1, "rps_64conn", t.saturation.rps);
        }
    }
    if let Some(t) = &r.today {
        for m in &t.methods {
            for (i, v) in m.runs_ms.iter().enumerate() {
                row(o, "today", &m.name, i + 1, "ms_per_token", *v);
            }
        }
    }
    out
}

fn row(out: &mut String, suite: &str, target: &str, round: usize, metric: &str, value: f64) {
    let _ = writeln!(out, "{suite},{},{round},{metric},{value}", target.replace(',', ";"));
}

fn run_fields(r: &Run) -> [(&'static str, f64); 6] {
    [
        ("rps", r.rps),
        ("p50_us", r.p50_us),
        ("p99_us", r.p99_us),
        ("p999_us", r.p999_us),
        ("max_us", r.max_us),
        ("errors", r.errors as f64),
    ]
}

/// `doc` with the text between [`BEGIN`] and [`END`] replaced by `generated` (markers appended
/// when missing).
pub fn splice(doc: &str, generated: &str) -> String {
    let block = format!("{BEGIN}\n{}\n{END}", generated.trim_end());
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &doc[..b], &doc[e + END.len()..]),
        _ => format!("{}\n\n{block}\n", doc.trim_end()),
    }
}

#[cfg(test)]
mod tests;
