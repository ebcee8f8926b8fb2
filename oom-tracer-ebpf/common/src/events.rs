//! The ring-buffer records other than the OOM kill's: the header every
//! record starts with, the task, and the exec, exit, allocation, growth,
//! signal and cgroup records.
use crate::{CGROUP_PATH_LEN, COMM_LEN};

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
    /// With call sites on: the step's user stack in `STACKS`, whose sum in
    /// `CALLSITES` the step's bytes went to (userspace learns the keys it
    /// will look up at a kill from these), or the helper's negative errno
    /// (no sum). 0 with call sites off.
    pub stack_id: i32,
    pub _pad: u32,
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

// The ABI, pinned. A change here must change both sides and these numbers.
const _: () = assert!(size_of::<EventHeader>() == 16);
const _: () = assert!(size_of::<TaskInfo>() == 32);
const _: () = assert!(size_of::<ExecEvent>() == 48);
const _: () = assert!(size_of::<ExitEvent>() == 56);
const _: () = assert!(size_of::<AllocEvent>() == 64);
const _: () = assert!(size_of::<MemcgGrowthEvent>() == 80);
const _: () = assert!(size_of::<SignalEvent>() == 96);
const _: () = assert!(size_of::<CgroupEvent>() == 304);
