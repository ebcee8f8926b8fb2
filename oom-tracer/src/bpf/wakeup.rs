//! The thread that reads the ring buffer is latency-sensitive: an OOM kill
//! wakes it, and the kill's line is on stdout only once it has run. On a
//! node that is OOM-killing, the CPUs are busy (the OOMing task in the
//! kernel, its exit, other readers woken by the same kill), and with the
//! scheduler's default slice (EEVDF, Linux 6.6+) a woken task waits for
//! the task on the CPU to finish its slice, up to a few ms.
//!
//! A short custom slice (Linux 6.12+, `sched_setattr` with
//! `sched_runtime` on SCHED_OTHER) lets the woken reader preempt such a
//! task at once (the scheduler's PREEMPT_SHORT) and ask for the CPU back
//! sooner; it needs no privilege and changes neither the policy nor the
//! nice value. The thread does little per wake-up (a drain), so a short
//! slice costs it nothing. Older kernels accept the call and ignore the
//! slice.

/// The shortest slice the kernel takes (it clamps to 0.1–100 ms).
const SLICE_NS: u64 = 100_000;

/// `struct sched_attr`, `SCHED_ATTR_SIZE_VER0`.
#[repr(C)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

const _: () = assert!(size_of::<SchedAttr>() == 48);

/// Asks for a short slice for the calling thread (the one that will wait
/// on the ring buffer); says at debug level when the kernel refuses.
pub(crate) fn latency_sensitive() {
    // The nice value stays: sched_setattr sets the one it is given.
    // SAFETY: plain syscalls; errno is cleared first, as getpriority may
    // return -1 as a value.
    let nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    if nice == -1 && std::io::Error::last_os_error().raw_os_error() != Some(0) {
        return;
    }
    let attr = SchedAttr {
        size: size_of::<SchedAttr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_flags: 0,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: SLICE_NS,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: `attr` is a valid VER0 `sched_attr` that outlives the call;
    // pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
    if rc != 0 {
        tracing::debug!(
            "no short scheduler slice for the ring buffer's reader: {}",
            std::io::Error::last_os_error()
        );
    }
}
