//! Maps shared by the programs and userspace. Names are part of the
//! contract with `oom-tracer/src/bpf/loader.rs`.
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use oom_tracer_common::COUNTERS_LEN;

/// All records, kernel → userspace. Userspace may resize it at load time.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Memory cgroup ids (kernfs ids) whose tasks, and those of their
/// descendants, are traced. Filled by userspace.
#[map]
pub static WATCHED: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);

/// Per process (tgid): anonymous RSS at the last `alloc` record, or
/// `u64::MAX` for a process known to be outside the watched cgroups.
#[map]
pub static ALLOC_LAST: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// Drop and error counters, indexed by `oom_tracer_common::Counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTERS_LEN, 0);

/// Tasks (tgid) that asked for their memcg's statistics with
/// `SETTINGS.probe_signal`. Filled by userspace for its startup check.
#[map]
pub static PROBE: HashMap<u32, u8> = HashMap::with_max_entries(16, 0);

/// Flags userspace sets after attaching (`RUNTIME_*` in the common crate).
#[map]
pub static RUNTIME: aya_ebpf::maps::Array<u32> = aya_ebpf::maps::Array::with_max_entries(1, 0);

/// The memcg that hit its limit at the last kill on this CPU, for the
/// task list read right after it on the same tracepoint (`tasks.rs`).
#[map]
pub static LAST_OOM: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Reclaims in progress, by thread id (`pressure.rs`).
#[map]
pub static RECLAIMING: LruHashMap<u32, oom_tracer_common::ReclaimStart> =
    LruHashMap::with_max_entries(4096, 0);

/// Reclaim sums per watched memcg id; read by userspace.
#[map]
pub static PRESSURE: LruHashMap<u64, oom_tracer_common::PressureStat> =
    LruHashMap::with_max_entries(4096, 0);

/// Page cache and shmem growth per memcg (`struct mem_cgroup *`), for the
/// ramp by kind (`growth.rs`).
#[map]
pub static GROWTH: LruHashMap<u64, oom_tracer_common::GrowthState> =
    LruHashMap::with_max_entries(4096, 0);

/// Per-CPU room for a task list while it is gathered (a record too large
/// for the BPF stack).
#[map]
pub static SCRATCH: PerCpuArray<oom_tracer_common::OomTasksEvent> =
    PerCpuArray::with_max_entries(1, 0);
