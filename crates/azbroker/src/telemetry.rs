//! Logging setup: human-readable or JSON lines on stderr, filtered by `--log-level` / `RUST_LOG`.
//!
//! Lines are formatted where they happen but written by a dedicated thread through a buffer
//! (`tracing-appender`'s non-blocking writer), so the audit line of every grant never puts a
//! `write(2)` to a file or pipe on a runtime thread; nothing is dropped (the writer applies
//! backpressure instead). Colours only when stderr is a terminal.

use std::io::{BufWriter, IsTerminal};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

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
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(writer);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("azbroker: logging not initialised: {e}");
    }
    guard
}
