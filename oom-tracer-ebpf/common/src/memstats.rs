//! A memory cgroup's statistics, copied raw from the kernel.

/// Entries of `memcg_vmstats.state[]` a record carries (6.18 has 40; 6.1
/// has one per item of both enums, 58).
pub const STATE_MAX: usize = 64;
/// Entries of `mem_cgroup.memory_events[]` a record carries.
pub const MEMCG_EVENTS_MAX: usize = 10;

/// `MemcgStats::flags`: `state` was read.
pub const STATS_STATE: u32 = 1 << 0;
/// `MemcgStats::flags`: `events` was read.
pub const STATS_EVENTS: u32 = 1 << 1;

/// A memory cgroup's statistics as the kernel holds them: `state` raw
/// (`vmstats->state[]`, whose layout userspace knows per kernel, see
/// `bpf/memstat.rs`), `events` as `memory_events[]` (indexed by
/// `enum memcg_memory_event`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemcgStats {
    pub memcg_id: u64,
    pub state: [i64; STATE_MAX],
    pub events: [u64; MEMCG_EVENTS_MAX],
    /// `vmstats->stats_updates`: updates not flushed into `state` yet.
    pub pending_updates: u64,
    /// Entries of `state` that are the kernel's (the rest are 0).
    pub state_len: u32,
    /// `STATS_*` bits.
    pub flags: u32,
}

impl MemcgStats {
    pub const EMPTY: Self = Self {
        memcg_id: 0,
        state: [0; STATE_MAX],
        events: [0; MEMCG_EVENTS_MAX],
        pending_updates: 0,
        state_len: 0,
        flags: 0,
    };
}

impl Default for MemcgStats {
    fn default() -> Self {
        Self::EMPTY
    }
}

// The ABI, pinned. A change here must change both sides and these numbers.
const _: () = assert!(size_of::<MemcgStats>() == 616);
