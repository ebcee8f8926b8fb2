//! `oom-tracer run`'s flags.
use std::{ffi::OsString, net::SocketAddr, path::PathBuf};

use clap::{Args, ValueEnum};

use super::{
    trace::{BackoffArgs, OutputArgs, PressureArgs, TraceArgs},
    values::{Limit, parse_limit},
};

/// Kubernetes' restartPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum RestartPolicy {
    #[value(name = "Always")]
    Always,
    #[value(name = "OnFailure")]
    OnFailure,
    #[value(name = "Never")]
    Never,
}

/// Where the workload's own stdout and stderr go (`--workload-output`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WorkloadOutput {
    /// `stderr` with `--format json`; with `--format pretty`, a new file in
    /// the temporary directory, named in one line at startup.
    Auto,
    /// oom-tracer's own stderr.
    Stderr,
    /// This file, created or truncated.
    File(PathBuf),
}

fn parse_workload_output(s: &str) -> Result<WorkloadOutput, String> {
    match s {
        "" => Err("an empty value: give `auto`, `stderr` or a file path".to_owned()),
        "auto" => Ok(WorkloadOutput::Auto),
        "stderr" => Ok(WorkloadOutput::Stderr),
        path => Ok(WorkloadOutput::File(PathBuf::from(path))),
    }
}

#[derive(Args, Debug, Clone)]
pub(crate) struct RunArgs {
    /// Container memory limit, as a Kubernetes quantity (50Mi, 1Gi). `none`
    /// for no container limit.
    #[arg(long, env = "OOM_TRACER_MEMORY_LIMIT", default_value = "50Mi", value_parser = parse_limit)]
    pub memory_limit: Limit,
    /// Pod-level memory limit (the pod cgroup), as a Kubernetes quantity.
    #[arg(long, env = "OOM_TRACER_POD_MEMORY_LIMIT", value_parser = parse_limit)]
    pub pod_memory_limit: Option<Limit>,
    #[command(flatten)]
    pub backoff: BackoffArgs,
    #[command(flatten)]
    pub(crate) pressure: PressureArgs,
    /// Stop after this many restarts (default: run until Ctrl-C / SIGTERM).
    #[arg(long, env = "OOM_TRACER_MAX_RESTARTS")]
    pub max_restarts: Option<u32>,
    /// Kubernetes restartPolicy for the container.
    #[arg(
        long,
        env = "OOM_TRACER_RESTART_POLICY",
        value_enum,
        default_value = "Always"
    )]
    pub restart_policy: RestartPolicy,
    /// Parent of the pod cgroup, below the memory hierarchy's root.
    #[arg(long, env = "OOM_TRACER_CGROUP_PARENT", default_value = "/oom-tracer")]
    pub cgroup_parent: String,
    /// Pod name in the records.
    #[arg(long, env = "OOM_TRACER_POD_NAME", default_value = "stress")]
    pub pod_name: String,
    /// Pod namespace in the records.
    #[arg(long, env = "OOM_TRACER_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Container name in the records.
    #[arg(long, env = "OOM_TRACER_CONTAINER_NAME", default_value = "stress")]
    pub container_name: String,
    /// Serve Prometheus metrics (/metrics) and probes on this address (e.g. 127.0.0.1:9090).
    #[arg(long, env = "OOM_TRACER_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Where the workload's own stdout and stderr go: `stderr` (oom-tracer's
    /// stderr; stdout stays records only), a file path (created or
    /// truncated; every restart appends to it), or `auto`: stderr with
    /// `--format json`, and with `--format pretty` a new file in the
    /// temporary directory, named in one line at startup, so the timeline
    /// stays on its own.
    #[arg(long, env = "OOM_TRACER_WORKLOAD_OUTPUT", default_value = "auto", value_parser = parse_workload_output)]
    pub workload_output: WorkloadOutput,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// The workload and its arguments (default: the `stress` next to this binary).
    /// (Any bytes: file names need not be UTF-8.)
    #[arg(last = true, value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_output_values() {
        assert_eq!(parse_workload_output("auto"), Ok(WorkloadOutput::Auto));
        assert_eq!(parse_workload_output("stderr"), Ok(WorkloadOutput::Stderr));
        assert_eq!(
            parse_workload_output("/tmp/w.log"),
            Ok(WorkloadOutput::File("/tmp/w.log".into()))
        );
        assert_eq!(
            parse_workload_output("./stderr"),
            Ok(WorkloadOutput::File("./stderr".into()))
        );
        assert!(parse_workload_output("").is_err());
    }
}
