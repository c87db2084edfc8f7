//! The Prometheus text exposition format (version 0.0.4), written into one `String`.
//!
//! Hand-written because it is small and label values here come from clients (a resource may
//! contain `"` or `\`): every label value is escaped, which the exporter crates we checked do
//! not all do. Callers emit each family once (`# HELP`, `# TYPE`) followed by its samples.

use std::fmt::{Display, Write as _};

/// Content type of a text exposition.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self { out: String::with_capacity(capacity) }
    }

    /// Starts a metric family. `kind`: `counter`, `gauge` or `histogram`.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line: `name{k="v",...} value`.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// The `_bucket` (with `le`), `_sum` and `_count` lines of one histogram series.
    /// `cumulative` has one count per bound and then the `+Inf` count.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        cumulative: &[u64],
        sum: f64,
    ) {
        let mut le = String::new();
        for (i, count) in cumulative.iter().enumerate() {
            le.clear();
            match bounds.get(i) {
                Some(b) => {
                    let _ = write!(le, "{b}");
                }
                None => le.push_str("+Inf"),
            }
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {sum}");
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", cumulative.last().copied().unwrap_or(0));
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|v| ("le", v)));
        for (i, (key, value)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// Label-value escaping: backslash, double quote and line feed.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::default();
        e.family("azbroker_x_total", "counter", "Things.");
        e.sample("azbroker_x_total", &[], 3);
        e.sample("azbroker_x_total", &[("resource", "a\"b\\c\nd"), ("p", "q")], 1);
        assert_eq!(
            e.finish(),
            "# HELP azbroker_x_total Things.\n# TYPE azbroker_x_total counter\nazbroker_x_total 3\n\
             azbroker_x_total{resource=\"a\\\"b\\\\c\\nd\",p=\"q\"} 1\n"
        );
    }

    #[test]
    fn histogram_lines() {
        let mut e = Exposition::default();
        e.histogram("h", &[("p", "a")], &[0.5, 1.0], &[1, 2, 3], 2.25);
        assert_eq!(
            e.finish(),
            "h_bucket{p=\"a\",le=\"0.5\"} 1\nh_bucket{p=\"a\",le=\"1\"} 2\nh_bucket{p=\"a\",le=\"+Inf\"} 3\n\
             h_sum{p=\"a\"} 2.25\nh_count{p=\"a\"} 3\n"
        );
    }
}
