//! `oom-tracer report`'s flags.
use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub(crate) struct ReportArgs {
    /// NDJSON written by `oom-tracer run` or `oom-tracer agent`.
    pub input: PathBuf,
    /// Write an SVG timeline here.
    #[arg(long, env = "OOM_TRACER_SVG")]
    pub svg: PathBuf,
}
