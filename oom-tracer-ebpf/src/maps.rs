//! Maps shared by the programs and userspace. Names are part of the
//! contract with `oom-tracer/src/bpf/loader.rs`.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf, StackTrace},
};
use oom_tracer_common::{CALLSITES_MAX, COUNTERS_LEN, CallsiteKey, SHARED_LEN, STACKS_MAX};

/// All records, kernel → userspace. Userspace may resize it at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Memory cgroup ids (kernfs ids) whose tasks, and those of their
/// descendants, are traced. Filled by userspace.
#[map]
pub(crate) static WATCHED: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);

/// Per process (tgid) in a watched memcg: anonymous RSS at the last `alloc`
/// record (0 from its exec on; its size when it was first seen otherwise).
#[map]
pub(crate) static ALLOC_LAST: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// Stacks by id (`bpf_get_stackid`): the trigger's at a kill and the
/// user stacks of growth steps (`stacks.rs`). Read by userspace.
#[map]
pub(crate) static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_MAX, 0);

/// Bytes of the ramp per (memcg, user stack) of watched processes
/// (`stacks.rs`). Read by userspace at a kill.
#[map]
pub(crate) static CALLSITES: LruHashMap<CallsiteKey, u64> =
    LruHashMap::with_max_entries(CALLSITES_MAX, 0);

/// Drop and error counters, indexed by `oom_tracer_common::Counter`.
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Tasks (tgid) that asked for their memcg's statistics with
/// `SETTINGS.probe_signal`. Filled by userspace for its startup check.
#[map]
pub(crate) static PROBE: HashMap<u32, u8> = HashMap::with_max_entries(16, 0);

/// Flags userspace sets after attaching (`RUNTIME_*` in the common crate).
#[map]
pub(crate) static RUNTIME: Array<u32> = Array::with_max_entries(1, 0);

/// The memcg that hit its limit at the last kill on this CPU, for the
/// task list read right after it on the same tracepoint (`tasks.rs`).
#[map]
pub(crate) static LAST_OOM: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Reclaims in progress, by thread id (`pressure.rs`).
#[map]
pub(crate) static RECLAIMING: LruHashMap<u32, oom_tracer_common::ReclaimStart> =
    LruHashMap::with_max_entries(4096, 0);

/// Reclaim sums per watched memcg id; read by userspace.
#[map]
pub(crate) static PRESSURE: LruHashMap<u64, oom_tracer_common::PressureStat> =
    LruHashMap::with_max_entries(4096, 0);

/// Page cache and shmem growth per watched memcg (css `serial_nr`), for the
/// ramp by kind (`growth.rs`).
#[map]
pub(crate) static GROWTH: LruHashMap<u64, oom_tracer_common::GrowthState> =
    LruHashMap::with_max_entries(4096, 0);

/// A memcg's own OOM count (`memory_events_local[MEMCG_OOM]`) when the
/// last kill looked at it, by css `serial_nr` (`oom.rs`).
#[map]
pub(crate) static OOM_SEEN: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// Per-CPU room for a task list while it is gathered (a record too large
/// for the BPF stack).
#[map]
pub(crate) static SCRATCH: PerCpuArray<oom_tracer_common::OomTasksEvent> =
    PerCpuArray::with_max_entries(1, 0);

/// Generation counters and the watch filter's bloom word, indexed by
/// `oom_tracer_common::{GEN_WATCH, WATCH_BLOOM, GEN_PROC}`.
#[map]
pub(crate) static SHARED: Array<u64> = Array::with_max_entries(SHARED_LEN, 0);

/// Slots of the per-CPU caches (a power of two).
pub(crate) const CACHE_SLOTS: u32 = 4;

/// A memcg's watch verdict, cached per CPU (`MEMCG_CACHE`).
#[repr(C)]
pub(crate) struct MemcgVerdict {
    /// The css's `serial_nr` (0: empty).
    pub(crate) serial: u64,
    /// `SHARED[GEN_WATCH] << 1 | watched`.
    pub(crate) tag: u64,
}

/// Per CPU, by `serial_nr % CACHE_SLOTS`: whether a memcg is watched. Hot
/// hooks ask this before anything else; the ancestor walk runs on a miss.
/// `serial_nr` is never reused, so only a change of `WATCHED` invalidates it.
#[map]
pub(crate) static MEMCG_CACHE: PerCpuArray<MemcgVerdict> =
    PerCpuArray::with_max_entries(CACHE_SLOTS, 0);

/// A process's `ALLOC_LAST` value, cached per CPU (`PROC_CACHE`).
#[repr(C)]
pub(crate) struct ProcLast {
    /// `SHARED[GEN_PROC] << 32 | tgid` (0: empty).
    pub(crate) key: u64,
    /// The process image: its leader's `start_time` and its `self_exec_id`
    /// (a pid reused, or an exec, makes another stamp).
    pub(crate) stamp: u64,
    pub(crate) last: u64,
}

/// Per CPU, by `tgid % CACHE_SLOTS`: `ALLOC_LAST` of the processes that ran
/// here last, so that most `rss_stat` calls need no hash lookup.
#[map]
pub(crate) static PROC_CACHE: PerCpuArray<ProcLast> = PerCpuArray::with_max_entries(CACHE_SLOTS, 0);
