//! Logging setup: human-readable or JSON lines on stderr, filtered by `--log-level` / `RUST_LOG`.
//!
//! Lines are formatted where they happen but written by a dedicated thread through a buffer
//! (`tracing-appender`'s non-blocking writer), so the audit line of every grant never puts a
//! `write(2)` to a file or pipe on a runtime thread; nothing is dropped (the writer applies
//! backpressure instead). Colours only when stderr is a terminal.
//!
//! The audit line is written on every cache hit, so its formatting is on the hot path: the
//! timestamp comes from `humantime` (the same RFC 3339 microsecond form `tracing-subscriber`
//! writes, at a fraction of the cost), and in the human format without colours the audit event
//! is written by [`FastAudit`] — byte for byte the line `tracing-subscriber`'s full format
//! writes, without its generic per-field machinery. Every other event, and every event on a
//! terminal, goes through `tracing-subscriber`'s own formatter.

use std::fmt::{self, Write as _};
use std::io::{BufWriter, IsTerminal, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::args::LogFormat;

/// Installs the subscriber. Keep the guard until exit: dropping it flushes what is buffered.
pub fn init(level: &str, format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain, greppable text.
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("azbroker-log")
        .finish(BufWriter::new(std::io::stderr()));
    // The audit line skips `tracing`'s per-field machinery where its format is ours to write.
    let direct = matches!(format, LogFormat::Human) && !ansi;
    let audit_writer = writer.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .with_timer(Rfc3339Micros);
    let result = match format {
        LogFormat::Human => builder.event_format(FastAudit::default()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    match result {
        Ok(()) if direct => {
            azbroker_server::set_audit_writer(Box::new(move |record| {
                let mut line = LINE.take();
                line.clear();
                if write_audit(&mut line, record).is_ok() {
                    let _ = audit_writer.make_writer().write_all(line.as_bytes());
                }
                LINE.set(line);
            }));
        }
        Ok(()) => {}
        Err(e) => eprintln!("azbroker: logging not initialised: {e}"),
    }
    guard
}

/// The `token granted` line exactly as [`FastAudit`] (and so `tracing-subscriber`'s default
/// format) writes the audit event `azbroker_server` would emit for `record`, newline included.
fn write_audit(line: &mut String, record: &azbroker_server::AuditRecord<'_>) -> fmt::Result {
    Rfc3339Micros.format_time(&mut Writer::new(line))?;
    line.push(' ');
    line.push_str(level_str(Level::INFO));
    line.push(' ');
    line.push_str(azbroker_server::AUDIT_TARGET);
    line.push_str(": token granted");
    if let Some(uid) = record.uid {
        line.push_str(" uid=");
        push_u32(line, uid);
    }
    if let Some(key) = record.key {
        line.push_str(" key=");
        push_debug_str(line, key);
    }
    // `%` fields are written as they display; plain `&str` fields as `{:?}` quotes them.
    for (name, value, quoted) in [
        ("profile", record.profile, false),
        ("dialect", record.dialect, true),
        ("resource", record.resource, false),
        ("token_hash", record.token_hash, false),
        ("cache", record.cache, true),
    ] {
        line.push(' ');
        line.push_str(name);
        line.push('=');
        if quoted {
            push_debug_str(line, value);
        } else {
            line.push_str(value);
        }
    }
    line.push('\n');
    Ok(())
}

/// `n` in decimal, as `{}` writes it, without the formatting machinery (on every grant).
fn push_u32(line: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        line.push(char::from(d));
    }
}

/// What `{:?}` writes for `value`, without the per-char walk when nothing needs escaping.
fn push_debug_str(line: &mut String, value: &str) {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        line.push('"');
        line.push_str(value);
        line.push('"');
    } else {
        let _ = write!(line, "{value:?}");
    }
}

/// `2026-12-01T09:46:21.123456Z`: what `tracing-subscriber`'s default timer writes.
#[derive(Debug, Clone, Copy, Default)]
struct Rfc3339Micros;

impl FormatTime for Rfc3339Micros {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write_rfc3339_micros(w, SystemTime::now())
    }
}

/// `now` as humantime's RFC 3339 microsecond form, the date and time of day cached per thread.
fn write_rfc3339_micros(w: &mut Writer<'_>, now: SystemTime) -> fmt::Result {
    let Ok(since) = now.duration_since(UNIX_EPOCH) else {
        return write!(w, "{}", humantime::format_rfc3339_micros(now));
    };
    // The date and time of day change once a second; every line of that second on this thread
    // reuses them and writes only its microseconds.
    let mut cached = SECOND.take();
    if cached.0 != since.as_secs() || cached.1.is_empty() {
        let text = humantime::format_rfc3339_seconds(now).to_string();
        cached = (since.as_secs(), text.trim_end_matches('Z').to_owned());
    }
    let result = write_micros(w, &cached.1, since.subsec_micros());
    SECOND.set(cached);
    result
}

thread_local! {
    /// Unix second and its `2026-12-01T09:46:21` text, per thread.
    static SECOND: std::cell::Cell<(u64, String)> = const { std::cell::Cell::new((0, String::new())) };
    /// The audit line being built, reused from line to line on a thread.
    static LINE: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
}

/// `{second}.{micros:06}Z`.
fn write_micros(w: &mut Writer<'_>, second: &str, micros: u32) -> fmt::Result {
    let mut frac = *b".000000Z";
    let mut n = micros;
    for i in (1..7).rev() {
        frac[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    w.write_str(second)?;
    // Built from ASCII digits above.
    w.write_str(std::str::from_utf8(&frac).unwrap_or(".000000Z"))
}

/// The human format: the audit line on a fast path, everything else through `inner`.
#[derive(Debug)]
struct FastAudit {
    inner: Format<Full, Rfc3339Micros>,
}

impl Default for FastAudit {
    fn default() -> Self {
        Self { inner: tracing_subscriber::fmt::format().with_timer(Rfc3339Micros) }
    }
}

impl<S, N> FormatEvent<S, N> for FastAudit
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let plain = meta.target() == azbroker_server::AUDIT_TARGET
            && !writer.has_ansi_escapes()
            && ctx.event_scope().is_none_or(|mut scope| scope.next().is_none());
        if !plain {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = LINE.take();
        line.clear();
        Rfc3339Micros.format_time(&mut Writer::new(&mut line))?;
        line.push(' ');
        line.push_str(level_str(*meta.level()));
        line.push(' ');
        line.push_str(meta.target());
        line.push_str(": ");
        let mut fields = PlainFields { line, first: true, unusual: false };
        event.record(&mut fields);
        let result = if fields.unusual {
            self.inner.format_event(ctx, writer, event)
        } else {
            fields.line.push('\n');
            writer.write_str(&fields.line)
        };
        LINE.set(fields.line);
        result
    }
}

/// The level column, padded as `tracing-subscriber` pads it.
fn level_str(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// `tracing-subscriber`'s default field rendering without colours: `message` as is, then
/// ` name=value`, strings quoted as `Debug` quotes them, everything else as `Debug` writes it.
/// `unusual` is set for what only the generic formatter renders exactly (errors, a message
/// with control characters), and the caller then uses it instead.
struct PlainFields {
    line: String,
    first: bool,
    unusual: bool,
}

impl PlainFields {
    /// Writes the separator and `name=`; `false` for fields the default formatter skips.
    fn name(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        if !std::mem::take(&mut self.first) {
            self.line.push(' ');
        }
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        true
    }
}

impl Visit for PlainFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            if value.chars().any(char::is_control) {
                self.unusual = true;
            } else if self.name(field) {
                self.line.push_str(value);
            }
            return;
        }
        if !self.name(field) {
            return;
        }
        push_debug_str(&mut self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.name(field) {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.name(field) {
            let _ = write!(self.line, "{value}");
        }
    }

    fn record_error(&mut self, _field: &Field, _value: &(dyn std::error::Error + 'static)) {
        self.unusual = true;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            if self.name(field) {
                // Written in place; a message with a control character is left to the generic
                // formatter (the caller then discards this line).
                let start = self.line.len();
                let _ = write!(self.line, "{value:?}");
                self.unusual |= self.line[start..].chars().any(char::is_control);
            }
            return;
        }
        if self.name(field) {
            let _ = write!(self.line, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// Emits the same events through `tracing-subscriber`'s default format and through ours.
    fn both(emit: impl Fn()) -> (String, String) {
        let run = |fast: bool| {
            let buf = Buf::default();
            let builder =
                tracing_subscriber::fmt().with_ansi(false).with_writer(buf.clone()).with_timer(Rfc3339Micros);
            if fast {
                tracing::subscriber::with_default(builder.event_format(FastAudit::default()).finish(), &emit);
            } else {
                tracing::subscriber::with_default(builder.finish(), &emit);
            }
            let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
            // Timestamps differ between the runs; everything after them must not.
            text.lines().map(|l| l.split_once(' ').unwrap().1.to_owned()).collect::<Vec<_>>().join("\n")
        };
        (run(false), run(true))
    }

    #[test]
    fn the_audit_line_is_the_default_formatters_line() {
        let profile = "fab-1";
        let (default, fast) = both(|| {
            tracing::info!(
                target: azbroker_server::AUDIT_TARGET,
                uid = Some(1000u32),
                profile = %profile,
                dialect = "imds",
                resource = %"https://vault.azure.net/",
                token_hash = %"0123abcd",
                cache = "hit",
                "token granted"
            );
            tracing::info!(target: azbroker_server::AUDIT_TARGET, uid = None::<u32>, odd = "a\"b\\c\té", n = -3i64, flag = true, dbg = ?vec![1, 2], r#type = "x", "token granted");
            tracing::info!(target: azbroker_server::AUDIT_TARGET, "message with\u{1b}[31m an escape");
            let err = io::Error::other("boom");
            tracing::warn!(target: azbroker_server::AUDIT_TARGET, error = &err as &(dyn std::error::Error + 'static), "with an error");
            tracing::info!(answer = 42, "some other event");
        });
        assert_eq!(fast, default);
        assert!(
            fast.contains(
                " INFO azbroker::audit: token granted uid=1000 profile=fab-1 dialect=\"imds\" \
             resource=https://vault.azure.net/ token_hash=0123abcd cache=\"hit\""
            ),
            "{fast}"
        );
    }

    #[test]
    fn the_direct_audit_line_is_the_events_line() {
        for (uid, key, profile, resource) in [
            (Some(1000u32), None, "fab-1", "https://vault.azure.net/"),
            (None, Some("dev-container"), "contoso", "api://a\"b c/.default"),
            (Some(0), Some("odd \"name\""), "contoso", "https://management.azure.com/"),
        ] {
            let record = azbroker_server::AuditRecord {
                uid,
                key,
                profile,
                dialect: "app-service",
                resource,
                token_hash: "0123abcd",
                cache: "refreshed",
            };
            let (default, _) = both(|| {
                tracing::info!(
                    target: azbroker_server::AUDIT_TARGET,
                    uid = record.uid,
                    key = record.key,
                    profile = %record.profile,
                    dialect = record.dialect,
                    resource = %record.resource,
                    token_hash = %record.token_hash,
                    cache = record.cache,
                    "token granted"
                );
            });
            let mut direct = String::new();
            write_audit(&mut direct, &record).unwrap();
            assert!(direct.ends_with('\n'));
            assert_eq!(direct.trim_end().split_once(' ').unwrap().1, default, "{direct}");
        }
    }

    #[test]
    fn uids_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 65_534, 1_000_000, u32::MAX] {
            let mut s = String::new();
            push_u32(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn the_cached_timestamp_is_humantimes() {
        let base = UNIX_EPOCH + std::time::Duration::from_secs(1_764_583_581);
        for offset_us in [0, 1, 999_999, 1_000_000, 1_000_001, 61_000_042, 61_000_043, 3_600_000_000] {
            let t = base + std::time::Duration::from_micros(offset_us);
            let mut s = String::new();
            write_rfc3339_micros(&mut Writer::new(&mut s), t).unwrap();
            assert_eq!(s, humantime::format_rfc3339_micros(t).to_string());
        }
    }

    #[test]
    fn the_timestamp_is_rfc3339_with_microseconds() {
        let mut s = String::new();
        Rfc3339Micros.format_time(&mut Writer::new(&mut s)).unwrap();
        assert_eq!(s.len(), "2026-12-01T09:46:21.123456Z".len(), "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.', "{s}");
    }
}
