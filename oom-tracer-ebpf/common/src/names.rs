//! Names the loader looks up in the eBPF object: maps, read-only globals
//! and programs. The eBPF crate defines items with exactly these names
//! (the attribute macros take identifiers, not constants); the loader uses
//! only these constants, and its tests check that the object has them all.

/// Ring buffer of records, kernel → userspace.
pub const MAP_EVENTS: &str = "EVENTS";
/// Watched memory cgroup ids.
pub const MAP_WATCHED: &str = "WATCHED";
/// Per-CPU drop and error counters.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Tasks asking for their memcg's statistics (the startup check).
pub const MAP_PROBE: &str = "PROBE";
/// Reclaim sums per watched memcg.
pub const MAP_PRESSURE: &str = "PRESSURE";
/// Kernel struct offsets (`KernelOffsets`).
pub const GLOBAL_KOFFS: &str = "KOFFS";
/// Classic tracepoint field offsets (`TracepointLayout`).
pub const GLOBAL_TPL: &str = "TPL";
/// Run-time settings (`Settings`).
pub const GLOBAL_SETTINGS: &str = "SETTINGS";

/// Flags userspace sets after attaching (`RUNTIME_*`).
pub const MAP_RUNTIME: &str = "RUNTIME";
/// Generation counters and the watch filter's bloom word (`GEN_WATCH`,
/// `WATCH_BLOOM`, `GEN_PROC`).
pub const MAP_SHARED: &str = "SHARED";

/// Stacks (user and kernel) by id.
pub const MAP_STACKS: &str = "STACKS";
/// Bytes of the ramp per (memcg, user stack).
pub const MAP_CALLSITES: &str = "CALLSITES";

/// Every map the loader takes.
pub const MAPS: [&str; 9] = [
    MAP_STACKS,
    MAP_CALLSITES,
    MAP_EVENTS,
    MAP_WATCHED,
    MAP_COUNTERS,
    MAP_PROBE,
    MAP_PRESSURE,
    MAP_RUNTIME,
    MAP_SHARED,
];
/// Every global the loader fills.
pub const GLOBALS: [&str; 3] = [GLOBAL_KOFFS, GLOBAL_TPL, GLOBAL_SETTINGS];

/// Programs, named after their attach points.
pub const PROG_MARK_VICTIM: &str = "mark_victim";
pub const PROG_OOM_MARK_VICTIM: &str = "oom_mark_victim";
pub const PROG_SIGNAL_GENERATE: &str = "signal_generate";
pub const PROG_SCHED_PROCESS_EXEC: &str = "sched_process_exec";
pub const PROG_SCHED_PROCESS_EXIT: &str = "sched_process_exit";
pub const PROG_RSS_STAT: &str = "rss_stat";
pub const PROG_KMEM_RSS_STAT: &str = "kmem_rss_stat";
pub const PROG_CGROUP_MKDIR: &str = "cgroup_mkdir";
pub const PROG_CGROUP_RMDIR: &str = "cgroup_rmdir";
/// The classic tracepoints' programs, where tp_btf is refused.
pub const PROG_CGROUP_MKDIR_TP: &str = "cgroup_cgroup_mkdir";
pub const PROG_CGROUP_RMDIR_TP: &str = "cgroup_cgroup_rmdir";
pub const PROG_CGROUP_ATTACH_TASK: &str = "cgroup_attach_task";
/// The classic tracepoint's program, where tp_btf is refused.
pub const PROG_CGROUP_ATTACH_TASK_TP: &str = "cgroup_cgroup_attach_task";
pub const PROG_MARK_VICTIM_TASKS: &str = "mark_victim_tasks";
pub const PROG_RECLAIM_BEGIN: &str = "mm_vmscan_memcg_reclaim_begin";
pub const PROG_RECLAIM_END: &str = "mm_vmscan_memcg_reclaim_end";
pub const PROG_MEMCG_GROWTH: &str = "mod_memcg_lruvec_state";

/// Every program in the object.
pub const PROGRAMS: [&str; 17] = [
    PROG_MARK_VICTIM,
    PROG_OOM_MARK_VICTIM,
    PROG_SIGNAL_GENERATE,
    PROG_SCHED_PROCESS_EXEC,
    PROG_SCHED_PROCESS_EXIT,
    PROG_RSS_STAT,
    PROG_KMEM_RSS_STAT,
    PROG_CGROUP_MKDIR,
    PROG_CGROUP_RMDIR,
    PROG_CGROUP_MKDIR_TP,
    PROG_CGROUP_RMDIR_TP,
    PROG_CGROUP_ATTACH_TASK,
    PROG_CGROUP_ATTACH_TASK_TP,
    PROG_MARK_VICTIM_TASKS,
    PROG_RECLAIM_BEGIN,
    PROG_RECLAIM_END,
    PROG_MEMCG_GROWTH,
];
