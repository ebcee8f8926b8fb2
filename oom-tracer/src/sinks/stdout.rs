//! Records on stdout: NDJSON (the default, for tools) or a readable
//! timeline (for people). Lines are held only until the end of a batch (a
//! drain of the ring buffer), or until an `oom_kill` (see [`super::Sinks`]),
//! and then written with one `write(2)`: an OOM kill reaches `kubectl logs`
//! or a pipe without waiting for a timer or the rest of its drain, and the
//! reader is woken about once per drain, not once per line.
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
    /// Lines not written yet.
    held: Vec<u8>,
}

impl Stdout {
    /// Colour only for the timeline, on a terminal, without `NO_COLOR`.
    pub(crate) fn new(format: Format) -> Self {
        Self {
            format,
            colour: format == Format::Pretty
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none(),
            held: Vec::with_capacity(8 << 10),
        }
    }
}

impl Sink for Stdout {
    fn write(&mut self, r: &Record) -> Result<(), SinkError> {
        let start = self.held.len();
        let res = match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.held, r).map_err(|source| SinkError::Serialise {
                    event: r.event(),
                    source,
                })
            }
            Format::Pretty if self.colour => {
                self.held.extend_from_slice(pretty::coloured(r).as_bytes());
                Ok(())
            }
            Format::Pretty => {
                self.held.extend_from_slice(pretty::line(r).as_bytes());
                Ok(())
            }
        };
        if res.is_err() {
            // No half line: the record is left out, the error says which.
            self.held.truncate(start);
            return res;
        }
        self.held.push(b'\n');
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if self.held.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        let res = out
            .write_all(&self.held)
            .and_then(|()| out.flush())
            .map_err(SinkError::Write);
        self.held.clear();
        // A burst (a storm of records) leaves a large buffer behind: give
        // it back rather than hold it for the life of the agent.
        if self.held.capacity() > 256 << 10 {
            self.held.shrink_to(8 << 10);
        }
        res
    }
}
