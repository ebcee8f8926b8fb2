//! The read-only globals userspace fills at load time: kernel struct
//! offsets from BTF, classic tracepoint layouts, run-time settings.
use crate::OFFSET_ABSENT;

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
    /// `mem_cgroup.memory_events_local` (same entries as `memory_events`)
    /// and `MEMCG_OOM` in `enum memcg_memory_event`: a memcg's own count
    /// of OOMs, the one `mem_cgroup_oom()` raises on the memcg that hit
    /// its limit.
    pub memcg_events_local: u32,
    pub memcg_event_oom: u32,
    /// `cgroup.root` and `cgroup_root.hierarchy_id`: the hierarchy of a
    /// cgroup (0: the v2 one), the classic cgroup tracepoints' `root`.
    pub cgroup_root: u32,
    pub root_hierarchy_id: u32,
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
        memcg_events_local: OFFSET_ABSENT,
        memcg_event_oom: OFFSET_ABSENT,
        cgroup_root: OFFSET_ABSENT,
        root_hierarchy_id: OFFSET_ABSENT,
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
    /// 1: the OOM kill and the ramp's growth steps take stacks (`STACKS`,
    /// `CALLSITES`); 0: call sites are off (the helper is never called).
    pub callsites: u32,
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
        callsites: 0,
        watch_all: 0,
        oom_all: 0,
        _pad: 0,
    };
}

// The ABI, pinned. A change here must change both sides and these numbers.
const _: () = assert!(size_of::<KernelOffsets>() == 96 + 28 * 4);
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
}
