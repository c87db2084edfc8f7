use super::*;
use crate::audit::CacheCounts;
use crate::loadgen::Series;
use crate::suite::cold::ColdRound;
use crate::suite::scale::Tier;
use crate::suite::today::Method;

fn run(rps: f64, p99: f64) -> Run {
    Run {
        requests: 100,
        duration_s: 1.0,
        rps,
        p50_us: p99 / 2.0,
        p99_us: p99,
        p999_us: p99 * 2.0,
        max_us: p99 * 3.0,
        errors: 0,
    }
}

fn series(name: &str, rps: f64, p99: f64) -> Series {
    let mut s = Series::new(name);
    s.push(run(rps, p99));
    s.push(run(rps * 1.02, p99));
    s
}

fn sample() -> Results {
    let cold_round = |calls, max_ms| ColdRound { upstream_calls: calls, median_ms: max_ms - 1.0, max_ms };
    Results {
        command: "bench/run".into(),
        started_utc: "2026-01-01 00:00 UTC".into(),
        duration_s: 600.0,
        plan: Plan::full(),
        machine: Machine { cpu: "Test CPU".into(), cores: 2, ..Machine::default() },
        hit: Some(HitResults {
            resource: "https://management.azure.com/".into(),
            body_bytes: vec![(hit::RESPONDER.into(), 1500)],
            saturation: vec![
                series(hit::RESPONDER, 100_000.0, 900.0),
                series(hit::NGINX, 90_000.0, 900.0),
                series(hit::BROKER_IMDS, 95_000.0, 950.0),
                series(hit::BROKER_APP_SERVICE, 80_000.0, 950.0),
            ],
            fixed_rate: 40_000,
            fixed: vec![
                series(hit::BROKER_IMDS, 40_000.0, 400.0),
                series(hit::BROKER_APP_SERVICE, 40_000.0, 1400.0),
            ],
        }),
        cold: Some(ColdResults {
            clients: 32,
            cases: vec![ColdCase {
                upstream_latency_ms: 50.0,
                same_key: vec![cold_round(1, 55.0), cold_round(1, 56.0)],
                distinct_keys: vec![cold_round(32, 70.0), cold_round(31, 71.0)],
            }],
        }),
        soak: Some(SoakResults {
            duration_s: 120.0,
            keys: 16,
            token_lifetime_s: 20.0,
            upstream_latency_ms: 200.0,
            rate: 1000,
            grants: CacheCounts { hit: 120_000, ..CacheCounts::default() },
            waited_fraction: 0.0,
            upstream_refreshes: 190,
            expected_refreshes: 192.0,
            client: run(1000.0, 300.0),
        }),
        today: Some(TodayResults {
            versions: "Python 3.11".into(),
            az_full_command: true,
            methods: [
                (today::AZ_CLI, 1200.0),
                (today::CLI_CRED_COLD, 1800.0),
                (today::MI_COLD, 400.0),
                (today::CLI_CRED_WARM, 1100.0),
                (today::MI_WARM, 1.0),
                (today::HTTP_WARM, 0.5),
            ]
            .into_iter()
            .map(|(n, ms)| Method { name: n.into(), runs_ms: vec![ms, ms], median_ms: ms })
            .collect(),
        }),
        scale: Some(ScaleResults {
            ready_ms: vec![10.0, 12.0, 11.0],
            ready_median_ms: 11.0,
            idle_rss_kib: 8_000,
            tiers: vec![Tier {
                entries: 10_000,
                fill_s: 5.0,
                fill_rate: 2000.0,
                rss_kib: 70_000,
                latency: run(10_000.0, 200.0),
                saturation: run(90_000.0, 900.0),
            }],
        }),
        failures: vec![],
    }
}

fn verdict(checks: &[Check], starts: &str) -> bool {
    checks.iter().find(|c| c.target.starts_with(starts)).unwrap_or_else(|| panic!("no check {starts}")).met
}

#[test]
fn targets_are_judged_from_the_figures() {
    let c = checks(&sample());
    assert!(verdict(&c, "azbroker IMDS: cache hit"), "0.95x meets 0.9x");
    assert!(!verdict(&c, "azbroker App Service: cache hit"), "0.8x misses 0.9x");
    assert!(verdict(&c, "azbroker IMDS: p99"));
    assert!(!verdict(&c, "azbroker App Service: p99"), "1.4 ms misses 1 ms");
    assert!(verdict(&c, "32 concurrent misses"));
    assert!(!verdict(&c, "32 distinct keys"), "a round with 31 calls is not N");
    assert!(verdict(&c, "Steady state"));
    assert!(verdict(&c, "RSS < 20 MB idle"), "8000 KiB is 8.2 MB");
    assert!(!verdict(&c, "RSS < 64 MB"), "70000 KiB is 71.7 MB");
    assert!(verdict(&c, "Ready < 50 ms"));
}

#[test]
fn a_waiting_request_fails_the_soak_target() {
    let mut r = sample();
    if let Some(s) = r.soak.as_mut() {
        s.grants.coalesced = 1;
    }
    assert!(!verdict(&checks(&r), "Steady state"));
}

#[test]
fn markdown_has_every_section_and_the_headline() {
    let md = markdown(&sample());
    for needle in [
        "#### Targets",
        "#### 1. Cache hit",
        "#### 2. Cold misses",
        "#### 3. Steady state",
        "#### 4. Start-up",
        "#### 5. Against what users do today",
        "| azbroker IMDS | 95950 | 0.95 |",
        "**Headline:**",
        "2400×",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in\n{md}");
    }
}

#[test]
fn csv_has_a_row_per_raw_figure() {
    let csv = csv(&sample());
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("suite,target,round,metric,value"));
    assert!(csv.contains("hit-saturation,azbroker IMDS,2,rps,96900"));
    assert!(csv.contains("cold,distinct-keys 50ms,2,upstream_calls,31"));
    assert!(csv.contains("today,az account get-access-token,1,ms_per_token,1200"));
    assert!(lines.all(|l| l.split(',').count() == 5));
}

#[test]
fn splice_replaces_only_the_generated_block() {
    let doc = format!("# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\nafter\n");
    let out = splice(&doc, "new\n");
    assert_eq!(out, format!("# B\n\nintro\n\n{BEGIN}\nnew\n{END}\n\nafter\n"));
    let appended = splice("# B\n", "x");
    assert!(appended.starts_with("# B\n\n") && appended.contains(&format!("{BEGIN}\nx\n{END}")));
}

#[test]
fn chart_renders_every_panel() {
    let svg = crate::chart::svg(&sample()).unwrap();
    assert!(svg.starts_with("<svg"));
    for needle in ["Cache hit", "Latency at 40000", "Per token today", "RSS vs cached tokens", "95950"] {
        assert!(svg.contains(needle), "missing {needle:?}");
    }
    let mut empty = sample();
    empty.hit = None;
    assert!(crate::chart::svg(&empty).unwrap().contains("not measured"));
}
