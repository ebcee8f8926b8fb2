//! Diagnostics on stderr through `tracing`: text for people (colour only on
//! a terminal, never with `NO_COLOR`), JSON lines for log collectors. A
//! container's stderr is a pipe, so the default there is JSON.
use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How diagnostics are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// One line of text per diagnostic.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, fields.
    Json,
}

impl LogFormat {
    /// Text on a terminal, JSON anywhere else (a file, a pipe, a container log).
    pub(crate) fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            Self::Text
        } else {
            Self::Json
        }
    }
}

/// Installs the global subscriber. `filter` is tracing's filter syntax; a
/// bad one falls back to `info` and says so.
pub(crate) fn init(filter: &str, format: Option<LogFormat>) {
    let (env_filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let format = format.unwrap_or_else(LogFormat::for_stderr);
    let colour = format == LogFormat::Text
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    if let Some(e) = bad {
        tracing::warn!("bad --log filter {filter:?} ({e}); using info");
    }
}
