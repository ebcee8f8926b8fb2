//! Command-line flags. Every flag can also be set through an
//! `OOM_TRACER_*` environment variable.
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{output::Format, quantity};

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
pub struct Cli {
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
pub enum Command {
    /// Run a workload (default: the bundled `stress`) in a pod-like memory
    /// cgroup and restart it like the kubelet does, tracing every cycle.
    Run(RunArgs),
    /// The node agent (DaemonSet mode): trace every OOM kill on the node
    /// and the lifecycle of every Kubernetes container, with pod metadata
    /// from the CRI and the Kubernetes API.
    Agent(crate::agent::AgentArgs),
    /// Draw a recorded run (NDJSON from `run` or `agent`) as an SVG timeline.
    Report(crate::report::ReportArgs),
    /// Report what this kernel and machine offer: BTF, tracefs, each hook,
    /// the cgroup version, privileges.
    Check(CheckArgs),
}

fn parse_quantity(s: &str) -> Result<u64, String> {
    quantity::parse_memory(s).map_err(|e| e.to_string())
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration (e.g. 10s, 5m, 250ms): {e}"))
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let b = parse_quantity(s)?;
    if b < 4096 || !b.is_power_of_two() || b > (1 << 30) {
        return Err(format!(
            "{s:?}: the ring buffer size must be a power of two between 4Ki and 1Gi"
        ));
    }
    Ok(b as u32)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for crate::logging::LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Text => Self::Text,
            LogFormatArg::Json => Self::Json,
        }
    }
}

/// Kubernetes' restartPolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RestartPolicy {
    #[value(name = "Always")]
    Always,
    #[value(name = "OnFailure")]
    OnFailure,
    #[value(name = "Never")]
    Never,
}

#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Emit an `alloc` record each time a process's anonymous memory grows by this much.
    #[arg(long, env = "OOM_TRACER_ALLOC_STEP", default_value = "4Mi", value_parser = parse_quantity)]
    pub alloc_step: u64,
    /// Kernel → userspace ring buffer size (power of two).
    #[arg(long, env = "OOM_TRACER_RING_BUFFER_SIZE", default_value = "1Mi", value_parser = parse_ring_size)]
    pub ring_buffer_size: u32,
    /// Output format.
    #[arg(long, env = "OOM_TRACER_FORMAT", value_enum, default_value = "json")]
    pub format: Format,
    /// Which OOM hook to use: tp_btf (rich, 6.8+), the classic tracepoint
    /// (any kernel), or auto (tp_btf, falling back to the tracepoint).
    #[arg(
        long,
        env = "OOM_TRACER_OOM_SOURCE",
        value_enum,
        default_value = "auto"
    )]
    pub oom_source: OomSource,
    /// Do not attach this hook, by label or program name; repeatable.
    /// `tp_btf/rss_stat,tracepoint/kmem/rss_stat` drops the allocation ramp
    /// (the hottest hook); `tp_btf/rss_stat` alone uses the tracepoint
    /// instead. The OOM source cannot be skipped.
    #[arg(long = "skip-hook", env = "OOM_TRACER_SKIP_HOOKS", value_delimiter = ',', value_parser = parse_hook)]
    pub skip_hooks: Vec<String>,
    /// Kernel BTF to read struct offsets from (for kernels that ship it elsewhere).
    #[arg(long, env = "OOM_TRACER_BTF", default_value = crate::bpf::offsets::VMLINUX)]
    pub btf: std::path::PathBuf,
}

fn parse_hook(s: &str) -> Result<String, String> {
    use crate::bpf::hooks::{LIFECYCLE, MARK_VICTIM_BTF, MARK_VICTIM_TP, RSS_STAT_TP};
    let s = s.trim();
    if let Some(h) = LIFECYCLE
        .iter()
        .chain([&RSS_STAT_TP])
        .find(|h| h.program == s || h.label() == s)
    {
        return Ok(h.program.to_owned());
    }
    if [MARK_VICTIM_BTF, MARK_VICTIM_TP]
        .iter()
        .any(|h| h.program == s || h.label() == s)
    {
        return Err(format!(
            "{s:?} is an OOM source and cannot be skipped (see --oom-source)"
        ));
    }
    let known: Vec<String> = LIFECYCLE
        .iter()
        .chain([&RSS_STAT_TP])
        .map(|h| h.label())
        .collect();
    Err(format!("unknown hook {s:?}; one of: {}", known.join(", ")))
}

impl TraceArgs {
    /// Load options for the memory hierarchy `hierarchy_id`; `oom_all`:
    /// record OOM kills in every cgroup (the node agent).
    pub fn load_options(
        &self,
        hierarchy_id: u32,
        oom_all: bool,
    ) -> crate::bpf::loader::LoadOptions {
        crate::bpf::loader::LoadOptions {
            memory_hierarchy: hierarchy_id,
            watch_all: false,
            oom_all,
            alloc_step_bytes: self.alloc_step,
            ring_buffer_bytes: self.ring_buffer_size,
            oom_source: self.oom_source,
            skip_hooks: self.skip_hooks.clone(),
            btf_path: self.btf.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OomSource {
    Auto,
    TpBtf,
    Tracepoint,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Container memory limit, as a Kubernetes quantity (50Mi, 1Gi). `none`
    /// for no container limit.
    #[arg(long, env = "OOM_TRACER_MEMORY_LIMIT", default_value = "50Mi", value_parser = parse_limit)]
    pub memory_limit: Limit,
    /// Pod-level memory limit (the pod cgroup), as a Kubernetes quantity.
    #[arg(long, env = "OOM_TRACER_POD_MEMORY_LIMIT", value_parser = parse_limit)]
    pub pod_memory_limit: Option<Limit>,
    #[command(flatten)]
    pub backoff: BackoffArgs,
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
    pub listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// The workload and its arguments (default: the `stress` next to this binary).
    /// (Any bytes: file names need not be UTF-8.)
    #[arg(last = true, value_parser = clap::value_parser!(std::ffi::OsString))]
    pub command: Vec<std::ffi::OsString>,
}

/// The kubelet's restart back-off: what `run` applies, and the schedule
/// `cycle` records compare observed restarts with.
#[derive(Args, Debug, Clone, Copy)]
pub struct BackoffArgs {
    /// First restart back-off (kubelet: 10s).
    #[arg(long, env = "OOM_TRACER_BACKOFF_INITIAL", default_value = "10s", value_parser = parse_duration)]
    pub backoff_initial: Duration,
    /// Back-off cap (kubelet: 5m).
    #[arg(long, env = "OOM_TRACER_BACKOFF_MAX", default_value = "5m", value_parser = parse_duration)]
    pub backoff_max: Duration,
    /// Running this long resets the back-off (kubelet: 10m).
    #[arg(long, env = "OOM_TRACER_BACKOFF_RESET", default_value = "10m", value_parser = parse_duration)]
    pub backoff_reset: Duration,
}

impl BackoffArgs {
    pub fn policy(&self) -> crate::backoff::BackoffPolicy {
        crate::backoff::BackoffPolicy {
            initial: self.backoff_initial,
            max: self.backoff_max,
            reset_after: self.backoff_reset,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Kernel BTF to read struct offsets from.
    #[arg(long, env = "OOM_TRACER_BTF", default_value = crate::bpf::offsets::VMLINUX)]
    pub btf: std::path::PathBuf,
    /// Output format.
    #[arg(long, env = "OOM_TRACER_FORMAT", value_enum, default_value = "pretty")]
    pub format: Format,
    /// Which OOM hook to probe (see `run --oom-source`).
    #[arg(
        long,
        env = "OOM_TRACER_OOM_SOURCE",
        value_enum,
        default_value = "auto"
    )]
    pub oom_source: OomSource,
}

/// A memory limit or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    if s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("max") {
        return Ok(Limit(None));
    }
    parse_quantity(s).map(|b| Limit(Some(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(r.trace.ring_buffer_size, 1 << 20);
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
