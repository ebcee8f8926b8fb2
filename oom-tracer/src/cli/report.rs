//! `oom-tracer report`'s flags.
use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug, Clone)]
pub(crate) struct ReportArgs {
    /// NDJSON written by `oom-tracer run` or `oom-tracer agent`.
    pub input: PathBuf,
    /// Write an SVG timeline here.
    #[arg(long, env = "OOM_TRACER_SVG", required_unless_present = "folded")]
    pub svg: Option<PathBuf>,
    /// Write the call sites of every OOM kill here as folded stacks
    /// (inferno, speedscope, flamegraph.pl); `-` for stdout.
    #[arg(long, env = "OOM_TRACER_FOLDED")]
    pub folded: Option<PathBuf>,
}
