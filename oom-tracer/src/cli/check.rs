//! `oom-tracer check`'s flags: the tracing flags, which decide what it probes.
use clap::Args;

use super::trace::{OutputArgs, TraceArgs};

#[derive(Args, Debug, Clone)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub trace: TraceArgs,
}
