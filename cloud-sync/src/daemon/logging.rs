//! Service logs: text that reads well in journald (no timestamps of our own, syslog level
//! prefixes so `journalctl -p warning` works), or JSON lines; `RUST_LOG`-style filters that an
//! operator can change while the service runs (`set_filter`).

use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; under journald without timestamps and with level prefixes.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter string does not parse.
    #[error("invalid log filter '{filter}': {reason}")]
    BadFilter { filter: String, reason: String },
    /// `init` has not run in this process (or another subscriber was installed first).
    #[error("the log filter cannot be changed in this process")]
    NotReloadable,
    /// A global subscriber was already installed.
    #[error("logging already initialised: {0}")]
    AlreadySet(String),
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Parses a `RUST_LOG`-style filter (`info`, `warn,gateway=debug`, ...).
pub fn parse_filter(spec: &str) -> Result<EnvFilter, LoggingError> {
    let spec = spec.trim();
    if spec.is_empty() || spec.len() > 1024 {
        return Err(LoggingError::BadFilter {
            filter: spec.chars().take(80).collect(),
            reason: "give 1 to 1024 characters".into(),
        });
    }
    EnvFilter::builder()
        .parse(spec)
        .map_err(|e| LoggingError::BadFilter {
            filter: spec.to_owned(),
            reason: e.to_string(),
        })
}

/// Installs the process's logger. The filter is `explicit` (a command-line flag) when given,
/// else `RUST_LOG` when set and valid, else `info`. Text lines lose their timestamps and gain syslog `<N>` level prefixes when stderr is
/// journald's (`JOURNAL_STREAM` set), since the journal keeps both itself.
pub fn init(format: LogFormat, explicit: Option<&str>) -> Result<(), LoggingError> {
    let filter = match explicit {
        Some(spec) => parse_filter(spec)?,
        None => match std::env::var("RUST_LOG").ok().as_deref().map(parse_filter) {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                eprintln!("ignoring RUST_LOG: {e}");
                parse_filter("info")?
            }
            None => parse_filter("info")?,
        },
    };
    let (filter, handle) = reload::Layer::new(filter);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text if journal => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .event_format(JournalPrefix(
                // The journal keeps the time and (from the prefix) the level.
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_level(false),
            ))
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|e| LoggingError::AlreadySet(e.to_string()))?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// Replaces the running filter; returns the filter now in force.
pub fn set_filter(spec: &str) -> Result<String, LoggingError> {
    let filter = parse_filter(spec)?;
    let handle = FILTER.get().ok_or(LoggingError::NotReloadable)?;
    handle
        .reload(filter)
        .map_err(|_| LoggingError::NotReloadable)?;
    tracing::info!("log filter set to '{}'", spec.trim());
    current_filter().ok_or(LoggingError::NotReloadable)
}

/// The filter in force, when `init` installed the logger.
pub fn current_filter() -> Option<String> {
    FILTER.get()?.with_current(ToString::to_string).ok()
}

/// Puts journald's `<N>` syslog priority before each line (`sd-daemon(3)`), so the journal
/// records the level without parsing the text.
struct JournalPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for JournalPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("warn,gateway=debug,drivers::modbus=trace").is_ok());
        assert!(matches!(
            parse_filter("gateway=loud"),
            Err(LoggingError::BadFilter { .. })
        ));
        assert!(matches!(
            parse_filter("  "),
            Err(LoggingError::BadFilter { .. })
        ));
    }
}
