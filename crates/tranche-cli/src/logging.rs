//! Logs: `tracing` events on stderr, as text or as one JSON object per line (`--log-format`,
//! `TRANCHE_LOG_FORMAT`), filtered by `--log-level` (`TRANCHE_LOG_LEVEL`, default `warn`).
//!
//! Invariants: logs go to stderr only (stdout carries results), one whole event per write; while
//! live progress bars are drawn, each event is written with the bars suspended (above them,
//! never through them); the format is chosen once per process; events never carry credentials (the adapters' configurations redact their secrets,
//! and no command logs a key). In JSON mode the CLI's own error messages are log events too, so
//! every line on stderr is one JSON object.

use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// `--log-format`: how log lines on stderr are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (`2026-03-02T14:45:00Z  WARN tranche_engine: ...`).
    Text,
    /// One JSON object per line (`{"timestamp":..,"level":..,"message":..,"target":..}`).
    Json,
}

/// The format chosen at start-up (text until [`init`] runs).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The live progress display drawn on stderr, if any.
static DISPLAY: Mutex<Option<indicatif::MultiProgress>> = Mutex::new(None);

/// Registers (or, with `None`, removes) the live display log lines must not cut through.
pub fn set_display(display: Option<indicatif::MultiProgress>) {
    *DISPLAY.lock().unwrap_or_else(PoisonError::into_inner) = display;
}

/// One log event, collected and written to stderr in one piece when dropped.
#[derive(Debug, Default)]
struct EventWriter {
    bytes: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        // A log line that cannot be written has nowhere else to go.
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.bytes);
        };
        let display = DISPLAY.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match display {
            Some(display) => display.suspend(write),
            None => write(),
        }
    }
}

/// The default `--log-level`.
pub const DEFAULT_FILTER: &str = "warn";

/// Parses a `--log-level` value: a level (`off`, `error`, `warn`, `info`, `debug`, `trace`) or
/// comma-separated directives such as `warn,tranche_engine=debug`.
/// Every directive must name a level: a bare word that is not a level (`loud`) is refused rather
/// than read as "everything from target `loud`".
pub fn parse_filter(text: &str) -> Result<Targets, String> {
    let refuse = || {
        format!(
            "`{text}` is not a log filter; use a level (off, error, warn, info, debug, trace) or directives \
             such as warn,tranche_engine=debug"
        )
    };
    let is_level =
        |word: &str| !word.trim().is_empty() && word.trim().parse::<tracing_subscriber::filter::LevelFilter>().is_ok();
    let every_directive_has_a_level = text.split(',').all(|directive| match directive.split_once('=') {
        Some((target, level)) => !target.trim().is_empty() && is_level(level),
        None => is_level(directive),
    });
    if !every_directive_has_a_level {
        return Err(refuse());
    }
    text.parse::<Targets>().map_err(|_| refuse())
}

/// Installs the subscriber that writes log events to stderr. Call once, before any work.
pub fn init(format: LogFormat, filter: Targets) {
    let _ = FORMAT.set(format);
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(EventWriter::default).with_ansi(false).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(EventWriter::default)
            .boxed(),
    };
    // A second initialisation (impossible in this binary) would keep the first subscriber.
    let _ = tracing_subscriber::registry().with(layer.with_filter(filter)).try_init();
}

/// True when logs are JSON lines.
pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

/// Reports an error: `error: ...` on stderr, or an ERROR event in JSON mode.
pub fn error(message: &str) {
    error_with_fix(message, None);
}

/// Reports a fatal error of a command and its fix: `error: ...` then `fix: ...` on stderr, or
/// one ERROR event with a `fix` field in JSON mode.
pub fn error_with_fix(message: &str, fix: Option<&str>) {
    match (is_json(), fix) {
        (true, Some(fix)) => tracing::error!(target: "tranche", fix, "{message}"),
        (true, None) => tracing::error!(target: "tranche", "{message}"),
        (false, Some(fix)) => errln!("error: {message}\nfix: {fix}"),
        (false, None) => errln!("error: {message}"),
    }
}

/// Tells the user something they must not miss, whatever the log level: `note: ...` on stderr,
/// or a WARN event in JSON mode.
pub fn warn(message: &str) {
    if is_json() {
        tracing::warn!(target: "tranche", "{message}");
    } else {
        errln!("note: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_levels_or_directives() {
        for good in ["warn", "INFO", "off", "trace", "warn,tranche_engine=debug"] {
            assert!(parse_filter(good).is_ok(), "{good}");
        }
        for bad in ["loud", "", "warn,tranche_engine", "=info", "warn,tranche_engine=loud"] {
            let message = parse_filter(bad).unwrap_err();
            assert!(message.contains("is not a log filter"), "{bad}: {message}");
        }
    }
}
