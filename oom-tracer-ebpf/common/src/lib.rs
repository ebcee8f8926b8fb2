//! The event ABI shared by the eBPF programs and the userspace agent.
//!
//! Every record the kernel side writes into the ring buffer starts with an
//! [`EventHeader`]; its `kind` says which of the structs below follows.
//! All structs are `#[repr(C)]`, hold only fixed-width integers and byte
//! arrays, make their padding explicit, and have their sizes pinned by
//! compile-time asserts, so that a change on one side cannot silently
//! disagree with the other.
//!
//! With the `user` feature this crate also provides the length-checked
//! decoder used by userspace ([`decode`]).
#![cfg_attr(not(feature = "user"), no_std)]

#[cfg(feature = "user")]
pub mod decode;
pub mod names;

/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of a cgroup path carried by cgroup lifecycle events (truncated, NUL padded).
pub const CGROUP_PATH_LEN: usize = 256;
/// Marks a field offset that the running kernel does not have.
pub const OFFSET_ABSENT: u32 = u32::MAX;
/// How many memcg ancestors the programs walk (watch filter, `oom_lock` search).
pub const MAX_CGROUP_DEPTH: u32 = 12;
/// `si_code` of a signal sent by the kernel itself (the OOM killer's SIGKILL).
pub const SI_KERNEL: i32 = 0x80;

/// Which record follows the header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Exit = 2,
    Alloc = 3,
    Oom = 4,
    Signal = 5,
    CgroupMkdir = 6,
    CgroupRmdir = 7,
    CgroupAttach = 8,
    /// A memcg's raw statistics, asked for by userspace's startup check.
    MemcgProbe = 9,
    /// The tasks of the memcg that hit its limit, at the kill.
    OomTasks = 10,
    /// A memcg's page cache or shmem grew by a step.
    MemcgGrowth = 11,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        Ok(match v {
            1 => Self::Exec,
            2 => Self::Exit,
            3 => Self::Alloc,
            4 => Self::Oom,
            5 => Self::Signal,
            6 => Self::CgroupMkdir,
            7 => Self::CgroupRmdir,
            8 => Self::CgroupAttach,
            9 => Self::MemcgProbe,
            10 => Self::OomTasks,
            11 => Self::MemcgGrowth,
            other => return Err(other),
        })
    }
}

/// Starts every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] discriminant.
    pub kind: u32,
    /// CPU the event was recorded on.
    pub cpu: u32,
    /// `bpf_ktime_get_boot_ns()` (CLOCK_BOOTTIME) at the event.
    pub boot_ns: u64,
}

/// A task as the programs see it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskInfo {
    /// Thread id (the kernel's `pid`).
    pub pid: u32,
    /// Process id (the kernel's `tgid`).
    pub tgid: u32,
    /// Id of the task's memory cgroup (the kernfs id, equal to the
    /// directory's inode number); 0 if unknown.
    pub memcg_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// `sched/sched_process_exec` in a watched cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    pub task: TaskInfo,
}

/// `sched/sched_process_exit` of a thread-group leader in a watched cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitEvent {
    pub hdr: EventHeader,
    pub task: TaskInfo,
    /// Raw `task->exit_code`: `(status << 8) | signal`.
    pub exit_code: u32,
    pub _pad: u32,
}

/// `kmem/rss_stat`: anonymous memory of a watched process grew by a step.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocEvent {
    pub hdr: EventHeader,
    pub task: TaskInfo,
    /// Anonymous resident memory of the process, bytes.
    pub anon_bytes: u64,
}

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

/// `MemcgGrowthEvent::kind`: page cache without shmem.
pub const GROWTH_FILE: u32 = 1;
/// `MemcgGrowthEvent::kind`: shmem (tmpfs, shared memory).
pub const GROWTH_SHMEM: u32 = 2;

/// A watched memcg's page cache or shmem grew by another step since the
/// tracer first saw it (`memcg/mod_memcg_lruvec_state`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcgGrowthEvent {
    pub hdr: EventHeader,
    /// `current`, whose charge it was.
    pub task: TaskInfo,
    /// The memcg whose statistic changed.
    pub memcg_id: u64,
    /// `GROWTH_*`.
    pub kind: u32,
    pub _pad: u32,
    /// Growth of that kind since the tracer first saw the memcg, bytes.
    pub bytes: u64,
    /// `current`'s anonymous memory, bytes (0 if unknown).
    pub anon_rss_bytes: u64,
}

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

/// What the growth hook keeps per memcg (`GROWTH` map value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrowthState {
    /// 1: the memcg is watched; 2: it is not (decided once).
    pub verdict: u32,
    pub _pad: u32,
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

/// `signal/signal_generate`: SIGKILL generated for a watched task.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalEvent {
    pub hdr: EventHeader,
    pub target: TaskInfo,
    /// `current`: who sent it (for an OOM kill, the trigger).
    pub sender: TaskInfo,
    pub sig: u32,
    /// `si_code`; [`SI_KERNEL`] for the OOM killer.
    pub code: i32,
    /// `TRACE_SIGNAL_*` result (0 = delivered).
    pub result: i32,
    pub _pad: u32,
}

/// `cgroup/cgroup_mkdir`, `cgroup_rmdir`, `cgroup_attach_task` on the memory hierarchy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupEvent {
    pub hdr: EventHeader,
    /// The cgroup's id (for attach: the destination's).
    pub id: u64,
    /// Attach only: the moved task; 0 otherwise.
    pub pid: u32,
    pub level: u32,
    /// Attach only: the moved task's comm.
    pub comm: [u8; COMM_LEN],
    /// Path below the hierarchy root, NUL terminated/padded, possibly truncated.
    pub path: [u8; CGROUP_PATH_LEN],
}

impl Default for CgroupEvent {
    fn default() -> Self {
        Self {
            hdr: EventHeader::default(),
            id: 0,
            pid: 0,
            level: 0,
            comm: [0; COMM_LEN],
            path: [0; CGROUP_PATH_LEN],
        }
    }
}

/// Byte offsets into kernel structs, read from the running kernel's BTF at
/// load time and handed to the programs as a read-only global (`KOFFS`).
/// [`OFFSET_ABSENT`] marks a field the kernel does not have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_exit_code: u32,
    pub task_mm: u32,
    pub task_signal: u32,
    pub task_cgroups: u32,
    /// `css_set.subsys[memory_cgrp_id]`, already indexed.
    pub css_set_memory: u32,
    pub css_cgroup: u32,
    pub css_parent: u32,
    pub cgroup_kn: u32,
    pub kn_id: u32,
    pub signal_oom_score_adj: u32,
    pub mm_total_vm: u32,
    /// RSS counter `i` of an mm lives at `mm + mm_rss_base + i * mm_rss_stride`.
    pub mm_rss_base: u32,
    pub mm_rss_stride: u32,
    /// Offset of the `memory` page_counter inside `mem_cgroup`.
    pub memcg_memory: u32,
    pub memcg_oom_lock: u32,
    pub page_counter_usage: u32,
    pub page_counter_max: u32,
    pub page_counter_failcnt: u32,
    /// `MM_ANONPAGES` etc. as the kernel numbers them.
    pub mm_anonpages: u32,
    pub mm_filepages: u32,
    pub mm_shmempages: u32,
    /// `mem_cgroup.vmstats`: its offset, and 1 if it is a pointer (6.2+?),
    /// 0 if the struct is embedded.
    pub memcg_vmstats: u32,
    pub memcg_vmstats_is_ptr: u32,
    /// `memcg_vmstats.state`, its entries (at most `STATE_MAX` are read),
    /// and `memcg_vmstats.stats_updates`.
    pub vmstats_state: u32,
    pub vmstats_state_len: u32,
    pub vmstats_updates: u32,
    /// `mem_cgroup.memory_events` and its entries.
    pub memcg_events: u32,
    pub memcg_events_len: u32,
    /// `MEMCG_MAX` in `enum memcg_memory_event`.
    pub memcg_event_max: u32,
    /// `enum node_stat_item` values of `NR_FILE_PAGES` and `NR_SHMEM`: the
    /// `item` of `memcg/mod_memcg_lruvec_state`.
    pub item_file_pages: u32,
    pub item_shmem: u32,
    /// The walk over a memcg's tasks: `cgroup.cset_links`,
    /// `cgrp_cset_link.cset_link` and `.cset`, `css_set.tasks`,
    /// `task_struct.cg_list`, and `cgroup_subsys_state.children`/`.sibling`.
    pub cgroup_cset_links: u32,
    pub link_cset_link: u32,
    pub link_cset: u32,
    pub cset_tasks: u32,
    pub task_cg_list: u32,
    pub css_children: u32,
    pub css_sibling: u32,
    /// `cgroup_subsys_state.serial_nr`: unique for the life of the system
    /// (never reused), the key of the programs' per-CPU memcg verdict cache.
    pub css_serial_nr: u32,
    /// `cgroup.subsys[memory_cgrp_id]`, already indexed: set only in the
    /// memory hierarchy (v1) or where the memory controller is enabled (v2).
    pub cgroup_subsys_memory: u32,
    /// `cgroup.level`.
    pub cgroup_level: u32,
    /// `task_struct.group_leader`, `.start_time`, `.self_exec_id`: with the
    /// tgid, they tell a process image apart from any other (the key of the
    /// programs' per-CPU cache of `ALLOC_LAST`).
    pub task_group_leader: u32,
    pub task_start_time: u32,
    pub task_self_exec_id: u32,
    pub _pad: u32,
}

impl KernelOffsets {
    pub const ABSENT: Self = Self {
        task_pid: OFFSET_ABSENT,
        task_tgid: OFFSET_ABSENT,
        task_comm: OFFSET_ABSENT,
        task_exit_code: OFFSET_ABSENT,
        task_mm: OFFSET_ABSENT,
        task_signal: OFFSET_ABSENT,
        task_cgroups: OFFSET_ABSENT,
        css_set_memory: OFFSET_ABSENT,
        css_cgroup: OFFSET_ABSENT,
        css_parent: OFFSET_ABSENT,
        cgroup_kn: OFFSET_ABSENT,
        kn_id: OFFSET_ABSENT,
        signal_oom_score_adj: OFFSET_ABSENT,
        mm_total_vm: OFFSET_ABSENT,
        mm_rss_base: OFFSET_ABSENT,
        mm_rss_stride: OFFSET_ABSENT,
        memcg_memory: OFFSET_ABSENT,
        memcg_oom_lock: OFFSET_ABSENT,
        page_counter_usage: OFFSET_ABSENT,
        page_counter_max: OFFSET_ABSENT,
        page_counter_failcnt: OFFSET_ABSENT,
        mm_anonpages: 1,
        mm_filepages: 0,
        mm_shmempages: 3,
        memcg_vmstats: OFFSET_ABSENT,
        memcg_vmstats_is_ptr: 0,
        vmstats_state: OFFSET_ABSENT,
        vmstats_state_len: 0,
        vmstats_updates: OFFSET_ABSENT,
        memcg_events: OFFSET_ABSENT,
        memcg_events_len: 0,
        memcg_event_max: OFFSET_ABSENT,
        item_file_pages: OFFSET_ABSENT,
        item_shmem: OFFSET_ABSENT,
        cgroup_cset_links: OFFSET_ABSENT,
        link_cset_link: OFFSET_ABSENT,
        link_cset: OFFSET_ABSENT,
        cset_tasks: OFFSET_ABSENT,
        task_cg_list: OFFSET_ABSENT,
        css_children: OFFSET_ABSENT,
        css_sibling: OFFSET_ABSENT,
        css_serial_nr: OFFSET_ABSENT,
        cgroup_subsys_memory: OFFSET_ABSENT,
        cgroup_level: OFFSET_ABSENT,
        task_group_leader: OFFSET_ABSENT,
        task_start_time: OFFSET_ABSENT,
        task_self_exec_id: OFFSET_ABSENT,
        _pad: 0,
    };
}

/// Field offsets of the classic tracepoints, read from their `format` files
/// at load time ([`OFFSET_ABSENT`] where a kernel lacks a field).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointLayout {
    /// oom/mark_victim
    pub mv_pid: u32,
    pub mv_comm: u32,
    pub mv_total_vm: u32,
    pub mv_anon_rss: u32,
    pub mv_file_rss: u32,
    pub mv_shmem_rss: u32,
    pub mv_uid: u32,
    pub mv_oom_score_adj: u32,
    /// kmem/rss_stat
    pub rss_curr: u32,
    pub rss_member: u32,
    pub rss_size: u32,
    /// cgroup/cgroup_mkdir and cgroup_rmdir
    pub cg_root: u32,
    pub cg_level: u32,
    pub cg_id: u32,
    pub cg_path: u32,
    /// cgroup/cgroup_attach_task
    pub at_root: u32,
    pub at_level: u32,
    pub at_id: u32,
    pub at_pid: u32,
    pub at_path: u32,
    pub at_comm: u32,
}

impl TracepointLayout {
    pub const ABSENT: Self = Self {
        mv_pid: OFFSET_ABSENT,
        mv_comm: OFFSET_ABSENT,
        mv_total_vm: OFFSET_ABSENT,
        mv_anon_rss: OFFSET_ABSENT,
        mv_file_rss: OFFSET_ABSENT,
        mv_shmem_rss: OFFSET_ABSENT,
        mv_uid: OFFSET_ABSENT,
        mv_oom_score_adj: OFFSET_ABSENT,
        rss_curr: OFFSET_ABSENT,
        rss_member: OFFSET_ABSENT,
        rss_size: OFFSET_ABSENT,
        cg_root: OFFSET_ABSENT,
        cg_level: OFFSET_ABSENT,
        cg_id: OFFSET_ABSENT,
        cg_path: OFFSET_ABSENT,
        at_root: OFFSET_ABSENT,
        at_level: OFFSET_ABSENT,
        at_id: OFFSET_ABSENT,
        at_pid: OFFSET_ABSENT,
        at_path: OFFSET_ABSENT,
        at_comm: OFFSET_ABSENT,
    };
}

/// Run-time settings for the programs (read-only global `SETTINGS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// log2 of the page size.
    pub page_shift: u64,
    /// Emit an `alloc` record each time a process's anonymous RSS grew by this much.
    pub alloc_step_bytes: u64,
    /// cgroup v1 hierarchy id of the memory controller; 0 on cgroup v2.
    pub memory_hierarchy: u32,
    /// Signal a task sends itself to have its memcg's statistics read
    /// (`MemcgProbeEvent`), if it is in the `PROBE` map.
    pub probe_signal: u32,
    pub _pad2: u32,
    /// 1: every memcg is watched (no `WATCHED` lookup).
    pub watch_all: u32,
    /// 1: OOM kills and SIGKILLs are recorded in every memcg, watched or not
    /// (the node agent: a kill anywhere on the node matters).
    pub oom_all: u32,
    pub _pad: u32,
}

impl Settings {
    pub const DEFAULT: Self = Self {
        page_shift: 12,
        alloc_step_bytes: 4 << 20,
        memory_hierarchy: 0,
        probe_signal: 28,
        _pad2: 0,
        watch_all: 0,
        oom_all: 0,
        _pad: 0,
    };
}

/// Index into the `COUNTERS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A record could not be reserved in the ring buffer (it was full).
    RingbufFull = 0,
    /// A kernel read (bpf_probe_read_kernel) failed while building a record.
    ReadError = 1,
}

/// Number of entries of `COUNTERS`.
pub const COUNTERS_LEN: u32 = 2;

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
const _: () = assert!(size_of::<EventHeader>() == 16);
const _: () = assert!(size_of::<TaskInfo>() == 32);
const _: () = assert!(size_of::<ExecEvent>() == 48);
const _: () = assert!(size_of::<ExitEvent>() == 56);
const _: () = assert!(size_of::<AllocEvent>() == 56);
const _: () = assert!(size_of::<MemcgStats>() == 616);
const _: () = assert!(size_of::<OomEvent>() == 160 + 2 * 616);
const _: () = assert!(size_of::<MemcgProbeEvent>() == 24 + 616);
const _: () = assert!(size_of::<OomTask>() == 64);
const _: () = assert!(size_of::<OomTasksEvent>() == 40 + 16 * 64);
const _: () = assert!(size_of::<MemcgGrowthEvent>() == 80);
const _: () = assert!(size_of::<PressureStat>() == 48);
const _: () = assert!(size_of::<ReclaimStart>() == 16);
const _: () = assert!(size_of::<GrowthState>() == 40);
const _: () = assert!(size_of::<SignalEvent>() == 96);
const _: () = assert!(size_of::<CgroupEvent>() == 304);
const _: () = assert!(size_of::<KernelOffsets>() == 96 + 24 * 4);
const _: () = assert!(size_of::<TracepointLayout>() == 84);
const _: () = assert!(size_of::<Settings>() == 40);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: a plain `#[repr(C)]` struct of integers with explicit padding.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: a plain `#[repr(C)]` struct of integers with explicit padding.
    unsafe impl aya::Pod for super::TracepointLayout {}
    // SAFETY: a plain `#[repr(C)]` struct of integers with explicit padding.
    unsafe impl aya::Pod for super::Settings {}
    // SAFETY: a plain `#[repr(C)]` struct of integers with explicit padding.
    unsafe impl aya::Pod for super::PressureStat {}
}
