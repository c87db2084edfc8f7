//! Reads the daemon's audit log: one `token granted` line per grant with its `cache` state
//! (`hit`, `miss`, `coalesced`, `stale`). That is the daemon's own account of whether a client
//! waited on upstream, so the soak counts it rather than guessing from client latencies.
//!
//! Accepts the human format (with or without ANSI colours) and the JSON format.

use serde::Serialize;

/// Grants by cache state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheCounts {
    pub hit: u64,
    pub miss: u64,
    pub coalesced: u64,
    pub stale: u64,
    pub other: u64,
}

impl CacheCounts {
    pub fn total(&self) -> u64 {
        self.hit + self.miss + self.coalesced + self.stale + self.other
    }

    /// Grants whose client waited for an upstream call (it started one or joined one).
    pub fn waited(&self) -> u64 {
        self.miss + self.coalesced
    }

    fn add(&mut self, state: &str) {
        match state {
            "hit" => self.hit += 1,
            "miss" => self.miss += 1,
            "coalesced" => self.coalesced += 1,
            "stale" => self.stale += 1,
            _ => self.other += 1,
        }
    }
}

/// Counts the `token granted` lines of `log` whose resource contains `resource_part`.
pub fn count_grants(log: &str, resource_part: &str) -> CacheCounts {
    let mut counts = CacheCounts::default();
    for line in log.lines().filter(|l| l.contains("token granted")) {
        let line = strip_ansi(line);
        let fields = if line.trim_start().starts_with('{') { json_fields(&line) } else { text_fields(&line) };
        let Some((resource, cache)) = fields else { continue };
        if resource.contains(resource_part) {
            counts.add(&cache);
        }
    }
    counts
}

fn json_fields(line: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let f = if v.get("cache").is_some() { &v } else { v.get("fields")? };
    Some((f.get("resource")?.as_str()?.to_owned(), f.get("cache")?.as_str()?.to_owned()))
}

fn text_fields(line: &str) -> Option<(String, String)> {
    Some((text_field(line, "resource")?, text_field(line, "cache")?))
}

/// The value of ` key=value` (value optionally quoted) in a human-format line.
fn text_field(line: &str, key: &str) -> Option<String> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?.to_owned(),
        None => rest.split_whitespace().next()?.to_owned(),
    })
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
2026-01-01T00:00:00.000001Z  INFO azbroker::audit: token granted profile=bench dialect=\"imds\" resource=https://soak-1.bench.test/ token_hash=0a1b2c3d cache=\"hit\"
2026-01-01T00:00:00.000002Z  INFO azbroker::audit: token granted profile=bench dialect=\"imds\" resource=https://soak-2.bench.test/ token_hash=0a1b2c3d cache=\"miss\"
2026-01-01T00:00:00.000003Z  INFO azbroker::audit: token granted profile=bench dialect=\"imds\" resource=https://other.bench.test/ token_hash=0a1b2c3d cache=\"miss\"
2026-01-01T00:00:00.000004Z DEBUG azbroker_server::dialect: token request dialect=\"imds\" cache=\"hit\"
\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mazbroker::audit\u{1b}[0m\u{1b}[2m:\u{1b}[0m token granted \u{1b}[3mprofile\u{1b}[0m\u{1b}[2m=\u{1b}[0mbench \u{1b}[3mresource\u{1b}[0m\u{1b}[2m=\u{1b}[0mhttps://soak-3.bench.test/ \u{1b}[3mcache\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"coalesced\"
{\"timestamp\":\"x\",\"level\":\"INFO\",\"message\":\"token granted\",\"resource\":\"https://soak-4.bench.test/\",\"cache\":\"stale\"}
{\"timestamp\":\"x\",\"level\":\"INFO\",\"fields\":{\"message\":\"token granted\",\"resource\":\"https://soak-5.bench.test/\",\"cache\":\"hit\"}}
";

    #[test]
    fn counts_grants_by_state_for_matching_resources() {
        let c = count_grants(TEXT, "soak-");
        assert_eq!(c, CacheCounts { hit: 2, miss: 1, coalesced: 1, stale: 1, other: 0 });
        assert_eq!(c.waited(), 2);
        assert_eq!(c.total(), 5);
        assert_eq!(count_grants(TEXT, "other.").miss, 1);
    }

    #[test]
    fn garbage_lines_are_ignored() {
        assert_eq!(count_grants("token granted\n{not json token granted\n", "").total(), 0);
    }
}
