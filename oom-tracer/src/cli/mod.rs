//! Command-line flags: every flag of every mode lives here, and every flag
//! can also be set through an `OOM_TRACER_*` environment variable. Only the
//! modes (`run`, `agent`, `check`, `report`) read these types; they hand
//! plain options down (see `trace.rs` for the shared conversions).
use clap::{Parser, Subcommand, ValueEnum};

mod agent;
mod check;
mod report;
mod run;
mod trace;
mod values;

pub(crate) use agent::AgentArgs;
#[cfg(feature = "agent")]
pub(crate) use agent::KubeApi;
pub(crate) use check::CheckArgs;
pub(crate) use report::ReportArgs;
pub(crate) use run::{RestartPolicy, RunArgs, WorkloadOutput};

use crate::logging::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "oom-tracer",
    version,
    about = "Shows, at kernel level, what happens when a container runs out of memory",
    long_about = "Shows, at kernel level, what happens when a container runs out of memory: \
the allocation ramp, the memory cgroup hitting its limit, the OOM killer's trigger and victim, \
the SIGKILL and exit, and the kubelet-style restart back-off. Records go to stdout as NDJSON \
(docs/schema.md); diagnostics go to stderr."
)]
pub(crate) struct Cli {
    /// Diagnostics filter for stderr (tracing syntax: info, debug, oom_tracer=trace).
    #[arg(long, global = true, env = "OOM_TRACER_LOG", default_value = "info")]
    pub log: String,
    /// Diagnostics format on stderr: `text` (colour only on a terminal and
    /// without NO_COLOR) or `json` (one object per line). Default: text on
    /// a terminal, json otherwise (a file, a pipe, a container log).
    #[arg(long, global = true, env = "OOM_TRACER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run a workload (default: the bundled `stress`) in a pod-like memory
    /// cgroup and restart it like the kubelet does, tracing every cycle.
    Run(RunArgs),
    /// The node agent (DaemonSet mode): trace every OOM kill on the node
    /// and the lifecycle of every Kubernetes container, with pod metadata
    /// from the CRI and the Kubernetes API.
    Agent(AgentArgs),
    /// Draw a recorded run (NDJSON from `run` or `agent`) as an SVG timeline.
    Report(ReportArgs),
    /// Report what this kernel and machine offer: BTF, tracefs, each hook,
    /// the cgroup version, privileges.
    Check(CheckArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormatArg {
    Text,
    Json,
}

impl Cli {
    /// The diagnostics format asked for, if any.
    pub(crate) fn log_format(&self) -> Option<LogFormat> {
        self.log_format.map(|f| match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{values::Limit, *};

    #[test]
    fn flags_parse_and_bad_values_are_usage_errors() {
        let c = Cli::try_parse_from([
            "oom-tracer",
            "run",
            "--memory-limit",
            "64Mi",
            "--max-restarts",
            "3",
        ])
        .unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.memory_limit, Limit(Some(64 << 20)));
        assert_eq!(r.max_restarts, Some(3));
        assert_eq!(r.backoff.backoff_initial, Duration::from_secs(10));
        assert_eq!(r.backoff.backoff_max, Duration::from_secs(300));
        assert_eq!(r.trace.ring_buffer_size, None);
        assert_eq!(r.trace.load_options(4, false).ring_buffer_bytes, 256 << 10);
        assert_eq!(r.trace.load_options(4, true).ring_buffer_bytes, 1 << 20);
        let e = Cli::try_parse_from(["oom-tracer", "run", "--memory-limit", "banana"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("banana"));
        let e =
            Cli::try_parse_from(["oom-tracer", "run", "--backoff-initial", "soon"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e =
            Cli::try_parse_from(["oom-tracer", "run", "--ring-buffer-size", "3000"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn command_after_double_dash() {
        let c = Cli::try_parse_from([
            "oom-tracer",
            "run",
            "--memory-limit",
            "none",
            "--",
            "sleep",
            "1",
        ])
        .unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.command, ["sleep", "1"]);
        assert_eq!(r.memory_limit, Limit(None));
    }

    #[test]
    fn skip_hook_names() {
        let e = Cli::try_parse_from(["oom-tracer", "run", "--skip-hook", "nope"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("tp_btf/rss_stat"), "{e}");
        let e =
            Cli::try_parse_from(["oom-tracer", "run", "--skip-hook", "mark_victim"]).unwrap_err();
        assert!(e.to_string().contains("cannot be skipped"), "{e}");
        let c = Cli::try_parse_from([
            "oom-tracer",
            "run",
            "--skip-hook",
            "tracepoint/kmem/rss_stat,tp_btf/rss_stat,signal_generate",
        ])
        .unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(
            r.trace.skip_hooks,
            ["kmem_rss_stat", "rss_stat", "signal_generate"]
        );
    }
}

#[cfg(test)]
mod shared_flags {
    use clap::Parser as _;

    use super::*;
    use crate::sinks::stdout::Format;

    /// `--format` and the tracing flags are declared once; each mode has its
    /// own default format, and `check` loads with the same options as `run`.
    #[test]
    fn declared_once_with_per_mode_defaults() {
        let Command::Run(r) = Cli::try_parse_from(["oom-tracer", "run"]).unwrap().command else {
            panic!()
        };
        assert_eq!(r.output.format_or(Format::Json), Format::Json);
        let Command::Check(c) = Cli::try_parse_from([
            "oom-tracer",
            "check",
            "--oom-source",
            "tracepoint",
            "--skip-hook",
            "rss_stat",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(c.output.format_or(Format::Pretty), Format::Pretty);
        let check = c.trace.load_options(4, false);
        let run = r.trace.load_options(4, false);
        assert_eq!(
            check.oom_source,
            crate::bpf::options::OomSourceChoice::Tracepoint
        );
        assert_eq!(check.skip_hooks, ["rss_stat"]);
        assert_eq!(check.ring_buffer_bytes, run.ring_buffer_bytes);
        let Command::Agent(a) = Cli::try_parse_from(["oom-tracer", "agent", "--format", "pretty"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(a.output.format_or(Format::Json), Format::Pretty);
        let c = Cli::try_parse_from(["oom-tracer", "--log-format", "json", "check"]).unwrap();
        assert_eq!(c.log_format(), Some(LogFormat::Json));
    }
}
