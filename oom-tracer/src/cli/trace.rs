//! Flags every tracing mode shares (`run`, `agent`, `check`), and the one
//! place they become the plain options the layers below take.
use std::{path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use super::values::{parse_duration, parse_hook, parse_quantity, parse_ring_size};
use crate::{
    analyse::pressure::PressureOptions,
    backoff::BackoffPolicy,
    bpf::{
        offsets::VMLINUX,
        options::{LoadOptions, OomSourceChoice},
    },
    sinks::stdout::Format,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OomSource {
    Auto,
    TpBtf,
    Tracepoint,
}

/// The ring buffer of `run` and `check`: one workload's records. It is
/// mapped twice into the process, so its size counts twice in RSS.
const RUN_RING_BYTES: u32 = 256 << 10;
/// The agent's: every container on the node.
const AGENT_RING_BYTES: u32 = 1 << 20;

#[derive(Args, Debug, Clone)]
pub(crate) struct TraceArgs {
    /// Emit an `alloc` record each time a process's anonymous memory grows by this much.
    #[arg(long, env = "OOM_TRACER_ALLOC_STEP", default_value = "4Mi", value_parser = parse_quantity)]
    pub alloc_step: u64,
    /// Kernel → userspace ring buffer size (power of two) [default: 256Ki
    /// for run and check, 1Mi for the agent, which sees the whole node].
    #[arg(long, env = "OOM_TRACER_RING_BUFFER_SIZE", value_parser = parse_ring_size)]
    pub ring_buffer_size: Option<u32>,
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
    /// Call sites: the trigger's stacks at each OOM kill and the code that
    /// grew the container (a user stack at each `--alloc-step` of growth).
    #[arg(long, env = "OOM_TRACER_CALLSITES", default_value_t = true, action = clap::ArgAction::Set)]
    pub callsites: bool,
    /// Kernel BTF to read struct offsets from (for kernels that ship it elsewhere).
    #[arg(long, env = "OOM_TRACER_BTF", default_value = VMLINUX)]
    pub btf: PathBuf,
    /// Tests only: shift the memory statistics' layout by one entry, so the
    /// startup check must fail and the breakdown stay off.
    #[arg(long, hide = true, env = "OOM_TRACER_TEST_CORRUPT_STAT_LAYOUT", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) test_corrupt_stat_layout: bool,
    /// Tests only: name call sites as if every process were gone by the
    /// time its kill is read (from the mappings remembered while it grew).
    #[arg(long, hide = true, env = "OOM_TRACER_TEST_CALLSITES_AS_GONE", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) test_callsites_as_gone: bool,
}

impl TraceArgs {
    /// Load options for the memory hierarchy `hierarchy_id`; `oom_all`:
    /// record OOM kills in every cgroup (the node agent).
    pub(crate) fn load_options(&self, hierarchy_id: u32, oom_all: bool) -> LoadOptions {
        LoadOptions {
            memory_hierarchy: hierarchy_id,
            oom_all,
            alloc_step_bytes: self.alloc_step,
            ring_buffer_bytes: self.ring_buffer_size.unwrap_or(if oom_all {
                AGENT_RING_BYTES
            } else {
                RUN_RING_BYTES
            }),
            oom_source: match self.oom_source {
                OomSource::Auto => OomSourceChoice::Auto,
                OomSource::TpBtf => OomSourceChoice::TpBtf,
                OomSource::Tracepoint => OomSourceChoice::Tracepoint,
            },
            skip_hooks: self.skip_hooks.clone(),
            callsites: self.callsites,
            btf_path: self.btf.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// One JSON object per line (schema in docs/schema.md).
    Json,
    /// A timeline for people.
    Pretty,
}

#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct OutputArgs {
    /// Output on stdout: `json` (NDJSON) or `pretty` (for people). Default:
    /// json for `run` and `agent`, pretty for `check`.
    #[arg(long, env = "OOM_TRACER_FORMAT", value_enum)]
    pub format: Option<FormatArg>,
}

impl OutputArgs {
    /// The format, or `default` where none was given.
    pub(crate) fn format_or(&self, default: Format) -> Format {
        match self.format {
            Some(FormatArg::Json) => Format::Json,
            Some(FormatArg::Pretty) => Format::Pretty,
            None => default,
        }
    }
}

/// Reclaim pressure: `pressure` records while a cgroup reclaims at its
/// limit, `near_miss` when it stalled and no OOM kill followed.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct PressureArgs {
    /// At most one `pressure` record per cgroup this often.
    #[arg(long, env = "OOM_TRACER_PRESSURE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub(crate) pressure_interval: Duration,
    /// A cgroup that reclaims at its limit this long with no OOM kill gets
    /// a `near_miss` record.
    #[arg(long, env = "OOM_TRACER_NEAR_MISS_AFTER", default_value = "10s", value_parser = parse_duration)]
    pub(crate) near_miss_after: Duration,
}

impl PressureArgs {
    pub(crate) fn options(&self) -> PressureOptions {
        PressureOptions {
            interval: self.pressure_interval.max(Duration::from_millis(100)),
            near_miss_after: self.near_miss_after,
            page_size: 1 << crate::host::page_shift(),
        }
    }
}

/// The kubelet's restart back-off: what `run` applies, and the schedule
/// `cycle` records compare observed restarts with.
#[derive(Args, Debug, Clone, Copy)]
pub(crate) struct BackoffArgs {
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
    pub(crate) fn policy(&self) -> BackoffPolicy {
        BackoffPolicy {
            initial: self.backoff_initial,
            max: self.backoff_max,
            reset_after: self.backoff_reset,
        }
    }
}
