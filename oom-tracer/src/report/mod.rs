//! `oom-tracer report`: pictures from recorded NDJSON.
//!
//! `input.rs` reads the records into one timeline per container (restarts
//! of a container share it, `model.rs`), with `parse.rs` reading each line
//! with the schema's types and `lanes.rs` grouping the records into lanes
//! (`sites.rs` names each kill's call sites); `svg/` draws them, one chart
//! per container: memory over time per attempt, the limits, the OOM kills,
//! the exits and the restart back-off, and below it the call sites of
//! each kill. `folded.rs` writes the call sites as folded stacks.
mod folded;
mod input;
mod lanes;
mod model;
mod parse;
mod sites;
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
    if let Some(out) = &args.folded {
        write_folded(&args.input, out)?;
    }
    let Some(svg_path) = &args.svg else {
        return Ok(());
    };
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
            svg: svg_path.clone(),
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
        path: svg_path.clone(),
        source,
    })?;
    std::fs::write(svg_path, text).map_err(|source| ReportError::Write {
        path: svg_path.clone(),
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
        svg_path.display(),
        report.lanes.len(),
        kills,
        report.records
    );
    Ok(())
}

/// Folded stacks of the kills' call sites into `out` (`-`: stdout).
fn write_folded(input: &Path, out: &Path) -> Result<(), ReportError> {
    let err = |source| ReportError::Read {
        path: input.to_owned(),
        source,
    };
    let file = File::open(input).map_err(err)?;
    let (text, kills) = folded::fold(BufReader::new(file)).map_err(err)?;
    let write_err = |source| ReportError::Write {
        path: out.to_owned(),
        source,
    };
    if out == Path::new("-") {
        use std::io::Write as _;
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(write_err)?;
    } else {
        std::fs::write(out, &text).map_err(write_err)?;
    }
    tracing::info!(
        "folded stacks of {kills} OOM kill(s) with call sites: {}",
        out.display()
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
