//! Values and indices of the maps the programs and userspace share
//! (other than the ring buffer's records).

/// Reclaim under a watched memcg's limit, summed in the kernel
/// (`vmscan/mm_vmscan_memcg_reclaim_begin/end`), per memcg of the task
/// that reclaimed; the `PRESSURE` map's value, read by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PressureStat {
    /// Reclaim attempts that ended.
    pub reclaims: u64,
    /// Time tasks spent in them, ns.
    pub stall_ns: u64,
    /// Pages they got back.
    pub reclaimed_pages: u64,
    /// Attempts that got nothing back.
    pub fruitless: u64,
    /// `memory_events[MEMCG_MAX]` of the memcg at the last end: how often
    /// its limit (or an ancestor's) was hit.
    pub limit_hits: u64,
    /// `bpf_ktime_get_boot_ns()` of the last end.
    pub last_ns: u64,
}

/// `RUNTIME[0]` bit: `mark_victim_tasks` is attached, so `mark_victim`
/// leaves the reader's wakeup to the task list that follows its record.
pub const RUNTIME_TASK_LIST: u32 = 1 << 0;

/// What the growth hook keeps per watched memcg (`GROWTH` map value, by
/// css serial number).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrowthState {
    /// Net change of page cache and of shmem since first seen, pages.
    pub file_pages: i64,
    pub shmem_pages: i64,
    /// Their values at the last record.
    pub file_reported: i64,
    pub shmem_reported: i64,
}

/// A reclaim in progress (`RECLAIMING` map value, by thread id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStart {
    pub begin_ns: u64,
    pub memcg_id: u64,
}

/// Stacks `STACKS` holds at most: one bucket each (127 frames, about
/// 1 KiB of kernel memory): about 4 MiB in all. An id, once given, always
/// means the same stack (no `BPF_F_REUSE_STACKID`): a stack whose bucket
/// holds another gets `-EEXIST` and is counted, never mislabelled.
pub const STACKS_MAX: u32 = 4096;
/// Frames of a stack in `STACKS` (the kernel's `PERF_MAX_STACK_DEPTH`).
pub const STACK_DEPTH: usize = 127;
/// (memcg, stack) sums `CALLSITES` holds at most (LRU): 16 + 8 bytes each.
pub const CALLSITES_MAX: u32 = 8192;

/// `CALLSITES` key: the user stack that grew a watched process by a step,
/// in the process's memcg.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CallsiteKey {
    /// The process's memcg (cgroup id).
    pub memcg_id: u64,
    /// Its user stack in `STACKS`.
    pub stack_id: u32,
    /// The process (its addresses are in its address space).
    pub tgid: u32,
}

/// Index into the `COUNTERS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A record could not be reserved in the ring buffer (it was full).
    RingbufFull = 0,
    /// A kernel read (bpf_probe_read_kernel) failed while building a record.
    ReadError = 1,
    /// A growth step's user stack could not be taken (`bpf_get_stackid`
    /// failed: a bucket taken by another stack, or no user stack).
    StackLost = 2,
}

/// Number of entries of `COUNTERS`.
pub const COUNTERS_LEN: u32 = 3;

/// Index into the `SHARED` array: small values every program reads, with
/// one writer each.
///
/// `GEN_WATCH` (userspace) is bumped after `WATCHED` changed: the programs'
/// per-CPU memcg verdicts made before are stale. `WATCH_BLOOM` (userspace)
/// has bit `id % 64` set for every watched cgroup id, so that most ids are
/// rejected before a hash lookup. `GEN_PROC` (the programs) is bumped after
/// an `alloc` record (or a shrink) changed a process's `ALLOC_LAST` entry,
/// which other CPUs may have cached; it sits on a cache line of its own.
pub const GEN_WATCH: u32 = 0;
pub const WATCH_BLOOM: u32 = 1;
pub const GEN_PROC: u32 = 8;
/// Number of entries of `SHARED`.
pub const SHARED_LEN: u32 = 16;

/// The `WATCH_BLOOM` bit of a cgroup id.
pub const fn watch_bloom_bit(id: u64) -> u64 {
    1 << (id & 63)
}

// The ABI, pinned. A change here must change both sides and these numbers.
const _: () = assert!(size_of::<PressureStat>() == 48);
const _: () = assert!(size_of::<ReclaimStart>() == 16);
const _: () = assert!(size_of::<GrowthState>() == 32);
const _: () = assert!(size_of::<CallsiteKey>() == 16);

#[cfg(feature = "user")]
// SAFETY: a plain `#[repr(C)]` struct of integers with explicit padding.
unsafe impl aya::Pod for PressureStat {}
#[cfg(feature = "user")]
// SAFETY: a plain `#[repr(C)]` struct of integers with explicit padding.
unsafe impl aya::Pod for CallsiteKey {}
