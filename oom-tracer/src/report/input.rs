//! NDJSON → the picture's model. The reader is lenient: lines that are not
//! records of the schema are skipped and counted, as are records of another
//! schema version; unknown events count as records and are not drawn.
//! Only an I/O error fails it.
use std::io::BufRead;

use super::{
    lanes::build,
    model::Report,
    parse::{Line, parse_line},
};
use crate::schema::Record;

pub(super) fn read(input: impl BufRead) -> std::io::Result<Report> {
    let mut report = Report::default();
    let mut drawn: Vec<Record> = Vec::new();
    for line in input.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_line(&line) {
            Line::Garbage => report.skipped += 1,
            Line::OtherVersion => report.other_version += 1,
            Line::Record(r) => {
                report.records += 1;
                if let Some(r) = r {
                    drawn.push(*r);
                }
            }
        }
    }
    // The timeline starts at the first record the picture uses.
    let first = drawn.iter().map(|r| r.time.micros()).min().unwrap_or(0);
    let last = drawn.iter().map(|r| r.time.micros()).max().unwrap_or(0);
    report.span_s = (last - first) as f64 / 1e6;
    report.lanes = build(&drawn, first);
    Ok(report)
}

/// Builds the model from text (tests).
#[cfg(test)]
pub(super) fn from_str(s: &str) -> Report {
    read(s.as_bytes()).expect("reading from memory")
}
