//! The output schema: one JSON object per line on stdout (docs/schema.md).
//!
//! Every record has `v` (the schema version, [`SCHEMA_VERSION`]), `event`
//! and `time`. Each event is a struct here; the field names are the
//! contract and only grow within a version: a field added later reads as
//! its default (`#[serde(default)]`) from records written before it. The types read as well as they
//! write (`report` reads records with them). This module is a leaf: it
//! imports nothing else of the crate.
use serde::{Deserialize, Serialize};

mod callsites;
mod cycle;
mod exit;
mod ids;
mod memory;
mod oom;
mod text;
mod time;
mod tracer;

pub(crate) use callsites::{Callsites, Frame, Site, Stack};
pub(crate) use cycle::{CycleExit, CycleRestart, Incident, Ramp};
pub(crate) use exit::{ContainerState, ExitReason, KilledBy, Verdict};
pub(crate) use ids::{ContainerRef, PodRef, Proc};
pub(crate) use memory::{Breakdown, Cause, KernelParts, MemoryEvents, OomTask, Part, Pressure};
pub(crate) use oom::{LimitLevel, Memcg, OomKind, OomSource, Trigger, Victim};
pub(crate) use text::lossless_text;
pub(crate) use time::Timestamp;
pub(crate) use tracer::{CgroupVersion, HookStat, HookStatus, MissingHook, Mode, StopReason};

/// Bumped on any incompatible change to a record.
pub(crate) const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Record {
    pub v: u32,
    pub time: Timestamp,
    #[serde(flatten)]
    pub body: Body,
}

impl Record {
    pub(crate) fn new(time: Timestamp, body: impl Into<Body>) -> Self {
        Self {
            v: SCHEMA_VERSION,
            time,
            body: body.into(),
        }
    }

    pub(crate) fn event(&self) -> &'static str {
        self.body.name()
    }
}

/// Every event, by its `event` name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "one record is built at a time and written at once; boxing the kill would only add an allocation"
)]
pub(crate) enum Body {
    Start(Start),
    ContainerStart(ContainerStart),
    Exec(Exec),
    Alloc(Alloc),
    Signal(Signal),
    OomKill(OomKill),
    Exit(Exit),
    ContainerExit(ContainerExit),
    Backoff(Backoff),
    Restart(Restart),
    Cycle(Cycle),
    CgroupMkdir(CgroupDir),
    CgroupRmdir(CgroupDir),
    Pressure(PressureRecord),
    NearMiss(NearMiss),
    Lost(Lost),
    Stop(Stop),
    BreakdownCheck(BreakdownCheck),
}

impl Body {
    /// Every event name, in the order docs/schema.md lists them.
    #[cfg(test)]
    pub(crate) const NAMES: [&'static str; 18] = [
        "start",
        "container_start",
        "exec",
        "alloc",
        "signal",
        "oom_kill",
        "exit",
        "container_exit",
        "backoff",
        "restart",
        "cycle",
        "cgroup_mkdir",
        "cgroup_rmdir",
        "pressure",
        "near_miss",
        "lost",
        "stop",
        "breakdown_check",
    ];

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Start(_) => "start",
            Self::ContainerStart(_) => "container_start",
            Self::Exec(_) => "exec",
            Self::Alloc(_) => "alloc",
            Self::Signal(_) => "signal",
            Self::OomKill(_) => "oom_kill",
            Self::Exit(_) => "exit",
            Self::ContainerExit(_) => "container_exit",
            Self::Backoff(_) => "backoff",
            Self::Restart(_) => "restart",
            Self::Cycle(_) => "cycle",
            Self::CgroupMkdir(_) => "cgroup_mkdir",
            Self::CgroupRmdir(_) => "cgroup_rmdir",
            Self::Pressure(_) => "pressure",
            Self::NearMiss(_) => "near_miss",
            Self::Lost(_) => "lost",
            Self::Stop(_) => "stop",
            Self::BreakdownCheck(_) => "breakdown_check",
        }
    }
}

macro_rules! into_body {
    ($($t:ident),*) => {$(
        impl From<$t> for Body {
            fn from(b: $t) -> Self {
                Self::$t(b)
            }
        }
    )*};
}
into_body!(
    Start,
    ContainerStart,
    Exec,
    Alloc,
    Signal,
    OomKill,
    Exit,
    ContainerExit,
    Backoff,
    Restart,
    Cycle,
    Lost,
    Stop,
    NearMiss,
    BreakdownCheck
);

impl From<PressureRecord> for Body {
    fn from(b: PressureRecord) -> Self {
        Self::Pressure(b)
    }
}

/// The tracer started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Start {
    pub version: String,
    pub mode: Mode,
    pub kernel: String,
    pub cgroup_version: Option<CgroupVersion>,
    pub hooks: HookStatus,
    /// Time to load and attach the eBPF programs.
    pub startup_ms: u64,
    /// Whether `oom_kill` records carry the memory breakdown, and why not.
    #[serde(default)]
    pub breakdown: Option<BreakdownCheck>,
}

/// The startup check of the memory statistics' layout on this kernel: in
/// `start` (still `checking` while it runs beside the tracing), and as
/// its own `breakdown_check` record once it has decided.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct BreakdownCheck {
    pub enabled: bool,
    /// The check still runs: its verdict follows as a `breakdown_check`
    /// record, and `oom_kill` records carry the breakdown once it passed.
    #[serde(default)]
    pub checking: bool,
    /// What was checked and how it went, in words.
    pub detail: String,
}

/// What grew, for an `alloc` record.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AllocKind {
    /// A process's anonymous memory (`kmem/rss_stat`).
    #[default]
    Anon,
    /// The cgroup's page cache, without shmem.
    File,
    /// The cgroup's tmpfs and shared memory.
    Shmem,
}

/// A container started: `run` created its cgroup and started the
/// workload, or the agent saw its first process (or, `discovered`, found it
/// running at startup).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ContainerStart {
    pub pod: PodRef,
    pub container: ContainerRef,
    pub cgroup: String,
    pub pid: u32,
    pub command: Vec<String>,
    pub memory_limit_bytes: Option<u64>,
    pub pod_memory_limit_bytes: Option<u64>,
    pub discovered: bool,
}

/// A process exec'd in a traced cgroup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Exec {
    #[serde(flatten)]
    pub proc: Proc,
    pub cgroup: Option<String>,
    pub pod: Option<PodRef>,
    pub container: Option<ContainerRef>,
}

/// Memory grew by another step: a process's anonymous memory (`anon`), or
/// the cgroup's page cache or shmem (`file`, `shmem`; the process is the one
/// whose charge it was).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Alloc {
    #[serde(flatten)]
    pub(crate) proc: Proc,
    #[serde(default)]
    pub(crate) kind: AllocKind,
    /// The process's anonymous memory.
    pub(crate) anon_rss_bytes: u64,
    /// `file`, `shmem`: how much of that kind the cgroup gained since the
    /// tracer first saw it; null for `anon`.
    #[serde(default)]
    pub(crate) memcg_bytes: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub cgroup: Option<String>,
    pub pod: Option<PodRef>,
    pub container: Option<ContainerRef>,
}

/// SIGKILL generated for a traced task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Signal {
    pub signal: u32,
    pub si_code: i32,
    /// The kernel sent it (si_code SI_KERNEL), as the OOM killer does.
    pub from_kernel: bool,
    pub target: Proc,
    pub sender: Proc,
    pub cgroup: Option<String>,
    pub pod: Option<PodRef>,
    pub container: Option<ContainerRef>,
}

/// The kernel's OOM killer chose a victim. Assembled in one place,
/// `pipeline::translate::kill` (`Default` lets tests name only the fields
/// they need, so that a new field touches no test).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub(crate) struct OomKill {
    pub kind: OomKind,
    pub victim: Victim,
    pub trigger: Trigger,
    /// The memcg that hit its limit; null for a global OOM.
    pub memcg: Option<Memcg>,
    pub victim_cgroup: Option<String>,
    pub source: OomSource,
    pub pod: Option<PodRef>,
    pub container: Option<ContainerRef>,
    /// What filled the memcg that hit its limit, read at the kill.
    #[serde(default)]
    pub breakdown: Option<Breakdown>,
    /// The victim's own memcg, when it is another one (a pod-level limit).
    #[serde(default)]
    pub victim_breakdown: Option<Breakdown>,
    /// The largest part of the breakdown, in words.
    #[serde(default)]
    pub cause: Option<Cause>,
    /// The tasks of the memcg that hit its limit (and of its children).
    #[serde(default)]
    pub tasks: Option<Vec<OomTask>>,
    /// Reclaim in the victim's cgroup over the 10 s before the kill.
    #[serde(default)]
    pub pressure: Option<Pressure>,
    /// Which code filled the cgroup, and the stacks of the allocation that
    /// hit the limit; null where call sites are off.
    #[serde(default)]
    pub callsites: Option<Callsites>,
}

/// A process exited (thread-group leader).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Exit {
    #[serde(flatten)]
    pub proc: Proc,
    /// The signal that killed it, if one did (9 for an OOM kill).
    pub signal: Option<u32>,
    /// Its exit status, if it exited.
    pub exit_code: Option<u32>,
    pub core_dumped: bool,
    /// Why a SIGKILL or exit 137 happened; null for other exits.
    pub verdict: Option<Verdict>,
    /// Who sent the SIGKILL, for `sigkill_other` (when seen).
    pub killed_by: Option<KilledBy>,
    pub cgroup: Option<String>,
    pub pod: Option<PodRef>,
    pub container: Option<ContainerRef>,
}

/// The container's main process ended, in the runtime's words.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ContainerExit {
    pub pod: PodRef,
    pub container: ContainerRef,
    /// 128 + signal for a killed process (137 for SIGKILL).
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Kubernetes' reason; like the runtime, OOMKilled means an OOM kill
    /// happened in the container.
    pub reason: ExitReason,
    /// What really ended the main process (see `exit`).
    pub verdict: Option<Verdict>,
    pub ran_ms: u64,
}

/// The container waits before its restart (kubelet back-off).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Backoff {
    pub pod: PodRef,
    pub container: ContainerRef,
    /// Kubernetes' waiting reason.
    pub state: ContainerState,
    pub backoff_ms: u64,
    pub next_restart_at: Timestamp,
}

/// The container was restarted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Restart {
    pub pod: PodRef,
    /// The new container.
    pub container: ContainerRef,
    pub restart_count: u32,
    pub backoff_ms: u64,
    pub last_reason: ExitReason,
}

/// One container attempt, analysed: after its kill → restart, and at
/// shutdown (see `analyse::cycles`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Cycle {
    pub pod: Option<PodRef>,
    pub container: Option<ContainerRef>,
    /// The container now: Running, CrashLoopBackOff, Terminated.
    pub state: ContainerState,
    /// Kubernetes' reason for the attempt's end.
    pub last_state_reason: Option<ExitReason>,
    pub ramp: Option<Ramp>,
    /// The memcg that hit its limit.
    pub limit: Option<Memcg>,
    /// The first OOM of the attempt, with every victim it took.
    pub incident: Option<Incident>,
    pub oom_incidents: u32,
    pub exit: Option<CycleExit>,
    pub restart: Option<CycleRestart>,
    /// The cause of the attempt's first OOM kill.
    #[serde(default)]
    pub cause: Option<Cause>,
    /// The previous attempt died of the same cause and this one reached
    /// the limit within a second of its start: the cause outlived the
    /// restart (tmpfs kept by an `emptyDir`, a pod-level limit).
    #[serde(default)]
    pub cause_carried_over: bool,
    /// The call sites that grew the container, at the attempt's first OOM
    /// kill (its `callsites.top`); empty where call sites are off.
    #[serde(default)]
    pub top_sites: Vec<Site>,
}

/// A memory cgroup was created or removed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CgroupDir {
    pub id: u64,
    pub path: String,
    pub level: u32,
}

/// A cgroup is reclaiming at its limit (at most one record per cgroup per
/// `--pressure-interval`): the early warning before an OOM kill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct PressureRecord {
    pub cgroup: Option<String>,
    pub pod: Option<PodRef>,
    pub container: Option<ContainerRef>,
    #[serde(flatten)]
    pub pressure: Pressure,
}

/// A cgroup stalled at its limit and no OOM kill followed within
/// `--near-miss-after`: it survived, this time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct NearMiss {
    pub cgroup: Option<String>,
    pub pod: Option<PodRef>,
    pub container: Option<ContainerRef>,
    /// When the stall began.
    pub since: Timestamp,
    #[serde(flatten)]
    pub pressure: Pressure,
}

/// Records the kernel could not hand over, or that could not be read,
/// since the last `lost` record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Lost {
    /// Dropped in the kernel: the ring buffer was full.
    pub ringbuf_full: u64,
    /// Kernel reads that failed while a record was built.
    pub read_errors: u64,
    /// Read from the ring buffer but malformed: dropped. (Added within
    /// version 1: older records lack it.)
    #[serde(default)]
    pub decode_errors: u64,
}

/// The tracer stopped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Stop {
    pub reason: StopReason,
    pub restarts: u32,
    pub oom_kills: u64,
    pub records: u64,
    pub lost_events: u64,
    pub decode_errors: u64,
    pub unresolved_cgroups: u64,
    /// Per-program kernel cost; empty unless kernel.bpf_stats_enabled=1.
    pub hook_stats: Vec<HookStat>,
}

#[cfg(test)]
pub(crate) mod tests;
