//! The OOM kill's records: `OomEvent` with its flags, the task list that
//! follows it, and the statistics probe of the startup check.
use crate::{COMM_LEN, EventHeader, MemcgStats, TaskInfo};

/// `OomEvent::flags`: the victim's memcg id is known.
pub const OOM_VICTIM_MEMCG: u32 = 1 << 0;
/// `OomEvent::flags`: the RSS fields and `total_vm_bytes` are valid.
pub const OOM_RSS: u32 = 1 << 1;
/// `OomEvent::flags`: `oom_score_adj` is valid.
pub const OOM_SCORE_ADJ: u32 = 1 << 2;
/// `OomEvent::flags`: `uid` is valid.
pub const OOM_UID: u32 = 1 << 3;
/// `OomEvent::flags`: a memcg holding `oom_lock` (or at its limit, see
/// `OOM_MEMCG_AT_LIMIT`) was found: this is a memcg
/// OOM and `oom_memcg_id`/usage/limit/failcnt describe the memcg that hit
/// its limit. Unset: a global (system-wide) OOM, or the walk was impossible.
pub const OOM_MEMCG_FOUND: u32 = 1 << 4;
/// `OomEvent::flags`: the kernel has no `mem_cgroup.oom_lock`; the memcg
/// that hit its limit was searched by usage against max only.
pub const OOM_NO_LOCK_FIELD: u32 = 1 << 5;
/// `OomEvent::flags`: the memcg was found at its limit, not by `oom_lock` (kernels without
/// CONFIG_MEMCG_V1 on cgroup v2).
pub const OOM_MEMCG_AT_LIMIT: u32 = 1 << 6;

/// `OomEvent::flags`: `limit_stats` holds the statistics of the memcg
/// that hit its limit.
pub const OOM_LIMIT_STATS: u32 = 1 << 7;
/// `OomEvent::flags`: `victim_stats` holds the statistics of the victim's
/// own memcg (set only when it is another memcg than the one that hit its
/// limit).
pub const OOM_VICTIM_STATS: u32 = 1 << 8;
/// `OomEvent::flags`: the memcg was found as the lowest ancestor of the
/// victim whose own OOM count (`memory.events.local` `oom`) rose since the
/// last kill, not by `oom_lock` (kernels without CONFIG_MEMCG_V1).
pub const OOM_MEMCG_OOM_COUNT: u32 = 1 << 9;

/// `OomEvent::flags`: call sites are on; `user_stack_id` and
/// `kernel_stack_id` say what `bpf_get_stackid` gave.
pub const OOM_STACKS: u32 = 1 << 9;

/// `OomEvent::source`: from `tp_btf/mark_victim` (task pointer).
pub const OOM_SOURCE_TP_BTF: u32 = 1;
/// `OomEvent::source`: from `tracepoint/oom/mark_victim` (fields).
pub const OOM_SOURCE_TRACEPOINT: u32 = 2;

/// `oom/mark_victim`: the kernel chose a victim.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomEvent {
    pub hdr: EventHeader,
    pub victim: TaskInfo,
    /// `current` when the victim was marked: the task whose allocation
    /// triggered the OOM.
    pub trigger: TaskInfo,
    /// The memcg that hit its limit (see [`OOM_MEMCG_FOUND`]).
    pub oom_memcg_id: u64,
    pub usage_bytes: u64,
    pub limit_bytes: u64,
    pub failcnt: u64,
    pub total_vm_bytes: u64,
    pub anon_rss_bytes: u64,
    pub file_rss_bytes: u64,
    pub shmem_rss_bytes: u64,
    pub uid: u32,
    pub oom_score_adj: i32,
    /// `OOM_*` flag bits.
    pub flags: u32,
    /// `OOM_SOURCE_*`.
    pub source: u32,
    /// See [`OOM_LIMIT_STATS`].
    pub limit_stats: MemcgStats,
    /// See [`OOM_VICTIM_STATS`].
    pub victim_stats: MemcgStats,
    /// See [`OOM_STACKS`]: the trigger's user stack in `STACKS` (a
    /// negative errno where the kernel could not take it, e.g. `-EFAULT`
    /// for a kernel thread, `-EEXIST` for a full bucket).
    pub user_stack_id: i32,
    /// See [`OOM_STACKS`]: the kernel stack of the failed charge.
    pub kernel_stack_id: i32,
}

/// `memcg`-`probe`: the statistics of the memcg of a task userspace asked
/// about (its startup check of the `state[]` layout against `memory.stat`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcgProbeEvent {
    pub hdr: EventHeader,
    /// The task that asked (it signalled itself).
    pub tgid: u32,
    pub _pad: u32,
    pub stats: MemcgStats,
}

/// Tasks an `OomTasksEvent` carries at most.
pub const OOM_TASKS_MAX: usize = 16;

/// One task of the memcg that hit its limit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OomTask {
    pub pid: u32,
    pub tgid: u32,
    pub memcg_id: u64,
    pub anon_pages: u64,
    pub file_pages: u64,
    pub shmem_pages: u64,
    pub comm: [u8; COMM_LEN],
    pub oom_score_adj: i32,
    pub _pad: u32,
}

/// The tasks of the memcg that hit its limit (and of its child cgroups),
/// read at `mark_victim` by a second program on the same tracepoint; it
/// follows its `OomEvent` in the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomTasksEvent {
    pub hdr: EventHeader,
    pub victim_pid: u32,
    /// Tasks in `tasks`.
    pub count: u32,
    /// The memcg whose tasks these are.
    pub memcg_id: u64,
    /// More tasks were there than `tasks` holds.
    pub truncated: u32,
    pub _pad: u32,
    pub tasks: [OomTask; OOM_TASKS_MAX],
}

impl Default for OomTasksEvent {
    fn default() -> Self {
        Self {
            hdr: EventHeader::default(),
            victim_pid: 0,
            count: 0,
            memcg_id: 0,
            truncated: 0,
            _pad: 0,
            tasks: [OomTask::default(); OOM_TASKS_MAX],
        }
    }
}

// The ABI, pinned. A change here must change both sides and these numbers.
const _: () = assert!(size_of::<OomEvent>() == 160 + 2 * 616 + 8);
const _: () = assert!(size_of::<MemcgProbeEvent>() == 24 + 616);
const _: () = assert!(size_of::<OomTask>() == 64);
const _: () = assert!(size_of::<OomTasksEvent>() == 40 + 16 * 64);
