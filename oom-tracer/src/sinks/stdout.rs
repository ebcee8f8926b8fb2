//! Records on stdout: NDJSON (the default, for tools) or a readable
//! timeline (for people). One line per record, flushed at once: an OOM
//! kill must reach `kubectl logs` or a pipe without waiting for a buffer.
use std::io::{IsTerminal as _, Write as _};

use super::{Sink, SinkError, pretty};
use crate::schema::Record;

/// How records are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object per line (docs/schema.md).
    Json,
    /// A timeline for people.
    Pretty,
}

pub(crate) struct Stdout {
    format: Format,
    colour: bool,
}

impl Stdout {
    /// Colour only for the timeline, on a terminal, without `NO_COLOR`.
    pub(crate) fn new(format: Format) -> Self {
        Self {
            format,
            colour: format == Format::Pretty
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn line(&self, r: &Record) -> Result<String, SinkError> {
        Ok(match self.format {
            Format::Json => serde_json::to_string(r).map_err(|source| SinkError::Serialise {
                event: r.event(),
                source,
            })?,
            Format::Pretty if self.colour => pretty::coloured(r),
            Format::Pretty => pretty::line(r),
        })
    }
}

impl Sink for Stdout {
    fn write(&mut self, r: &Record) -> Result<(), SinkError> {
        let line = self.line(r)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(SinkError::Write)
    }
}
