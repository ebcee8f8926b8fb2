//! What filled a memory cgroup: the breakdown read at the kill, the cause
//! in words, the tasks that were there, and the reclaim pressure before.
use serde::{Deserialize, Serialize};

use super::{ContainerRef, Timestamp};

/// A memory cgroup's usage by kind, read in the kernel at the kill
/// (`memcg->vmstats`, flushed by the kernel for its own OOM report).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Breakdown {
    /// Anonymous memory (heap, stacks, private mappings).
    pub(crate) anon_bytes: u64,
    /// Page cache without shmem: file contents the kernel could drop or
    /// write back.
    pub(crate) file_bytes: u64,
    /// tmpfs (an `emptyDir` with `medium: Memory`), shared memory, memfd.
    pub(crate) shmem_bytes: u64,
    /// All kernel memory charged to the cgroup.
    pub(crate) kernel_bytes: u64,
    /// Socket buffers (charged to the memory limit on cgroup v2 only).
    pub(crate) sock_bytes: Option<u64>,
    /// Swap used; null where the kernel does not count it here.
    pub(crate) swap_bytes: Option<u64>,
    /// Parts of `kernel_bytes`.
    pub(crate) kernel: KernelParts,
    /// The cgroup's memory events: times its limit was hit (`max`), OOMs
    /// (`oom`) and OOM kills (`oom_kill`); on v2 including descendants, on
    /// v1 each counted in one cgroup.
    pub(crate) events: MemoryEvents,
    /// Statistic updates the kernel had not flushed yet (0: exact).
    pub(crate) pending_updates: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct KernelParts {
    pub(crate) slab_reclaimable_bytes: u64,
    pub(crate) slab_unreclaimable_bytes: u64,
    pub(crate) kernel_stack_bytes: u64,
    pub(crate) pagetables_bytes: u64,
    pub(crate) percpu_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MemoryEvents {
    pub(crate) max: u64,
    pub(crate) oom: u64,
    pub(crate) oom_kill: u64,
}

/// The part of a breakdown that filled the cgroup.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Part {
    Anon,
    File,
    Shmem,
    Kernel,
    Sock,
}

impl Part {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Anon => "anon",
            Self::File => "file",
            Self::Shmem => "shmem",
            Self::Kernel => "kernel",
            Self::Sock => "sock",
        }
    }

    /// How people call it.
    pub(crate) fn words(self) -> &'static str {
        match self {
            Self::Anon => "anonymous memory",
            Self::File => "page cache",
            Self::Shmem => "tmpfs/shmem",
            Self::Kernel => "kernel memory",
            Self::Sock => "socket buffers",
        }
    }
}

/// Why the cgroup was full, in one part and in words.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Cause {
    /// The largest part of the breakdown.
    pub(crate) part: Part,
    pub(crate) bytes: u64,
    /// Its share of the limit that was hit, percent.
    pub(crate) share_of_limit_pct: u32,
    /// The victim's own resident memory (anon + file + shmem), when read.
    pub(crate) victim_rss_bytes: Option<u64>,
    /// For people: "tmpfs/shmem 78% of the 50Mi limit; the victim's own RSS was 3Mi".
    pub(crate) text: String,
}

/// A task of the cgroup that hit its limit, at the kill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct OomTask {
    pub(crate) pid: u32,
    pub(crate) tgid: u32,
    pub(crate) comm: String,
    pub(crate) anon_rss_bytes: u64,
    pub(crate) file_rss_bytes: u64,
    pub(crate) shmem_rss_bytes: u64,
    pub(crate) oom_score_adj: i32,
    /// The OOM killer chose it.
    pub(crate) victim: bool,
    pub(crate) cgroup: Option<String>,
    /// Its container (the agent, for tasks in the pod's containers).
    pub(crate) container: Option<ContainerRef>,
}

/// Reclaim at a cgroup's limit over a window: how the pressure built up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Pressure {
    pub(crate) window_ms: u64,
    /// Times the limit was hit (`memory.events` `max`) in the window.
    pub(crate) limit_hits: u64,
    /// Reclaim attempts at the limit.
    pub(crate) reclaims: u64,
    /// Of those, attempts that got nothing back.
    pub(crate) fruitless: u64,
    /// Time the cgroup's tasks stalled in reclaim.
    pub(crate) stall_ms: u64,
    /// What reclaim got back.
    pub(crate) reclaimed_bytes: u64,
    /// When the window's last reclaim ended.
    pub(crate) last_at: Option<Timestamp>,
}
