//! `oom-tracer report`: pictures from recorded NDJSON.
//!
//! `input.rs` reads the records into one timeline per container (restarts
//! of a container share it, `model.rs`), with `parse.rs` reading each line
//! with the schema's types and `lanes.rs` grouping the records into lanes;
//! `svg.rs` draws them, one chart per container: memory over time per
//! attempt, the limits, the OOM kills, the exits and the restart back-off.
mod input;
mod lanes;
mod model;
mod parse;
mod svg;

use std::{
    fs::File,
    io::BufReader,
    path::{Path, PathBuf},
};

use crate::{cli::ReportArgs, schema::SCHEMA_VERSION};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: nothing to draw ({records} records, {skipped} malformed lines, {other_version} of another schema version; no container or cgroup in them); {} not written",
        input.display(),
        svg.display()
    )]
    NothingToDraw {
        input: PathBuf,
        svg: PathBuf,
        records: usize,
        skipped: usize,
        other_version: usize,
    },
    #[error("drawing {}", path.display())]
    Draw {
        path: PathBuf,
        #[source]
        source: svg::DrawError,
    },
}

pub(crate) fn run(args: &ReportArgs) -> Result<(), ReportError> {
    let report = read(&args.input)?;
    if report.skipped > 0 {
        tracing::warn!(
            "{}: skipped {} malformed line(s) (not a JSON record with v, event and time, or missing a field the picture needs)",
            args.input.display(),
            report.skipped
        );
    }
    if report.other_version > 0 {
        tracing::warn!(
            "{}: skipped {} record(s) of a schema version other than {}",
            args.input.display(),
            report.other_version,
            SCHEMA_VERSION
        );
    }
    if report.lanes.is_empty() {
        return Err(ReportError::NothingToDraw {
            input: args.input.clone(),
            svg: args.svg.clone(),
            records: report.records,
            skipped: report.skipped,
            other_version: report.other_version,
        });
    }
    if report.lanes.len() > svg::MAX_LANES {
        tracing::warn!(
            "{} containers: drawing {} of them",
            report.lanes.len(),
            svg::MAX_LANES
        );
    }
    let source = args.input.file_name().map_or_else(
        || args.input.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let text = svg::render(&report, &source).map_err(|source| ReportError::Draw {
        path: args.svg.clone(),
        source,
    })?;
    std::fs::write(&args.svg, text).map_err(|source| ReportError::Write {
        path: args.svg.clone(),
        source,
    })?;
    for lane in &report.lanes {
        tracing::debug!(
            "lane {}: {} attempt(s), {} kill(s), {} restart(s)",
            lane.key,
            lane.attempts.len(),
            lane.kills.len(),
            lane.restarts
        );
    }
    let kills: usize = report.lanes.iter().map(|l| l.kills.len()).sum();
    tracing::info!(
        "wrote {}: {} container(s), {} OOM kill(s), {} record(s)",
        args.svg.display(),
        report.lanes.len(),
        kills,
        report.records
    );
    Ok(())
}

fn read(path: &Path) -> Result<model::Report, ReportError> {
    let err = |source| ReportError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    input::read(BufReader::new(file)).map_err(err)
}

#[cfg(test)]
mod tests;
