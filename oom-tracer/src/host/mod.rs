//! Facts about this host and small things done to it: the kernel release,
//! the page size, giving freed heap back to the kernel, killing processes;
//! its clocks (`clock.rs`) and the stop signals (`signals.rs`).
pub(crate) mod clock;
pub(crate) mod signals;

/// The running kernel's release (`uname -r`), or `unknown`.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// log2 of the page size (12 where sysconf cannot tell).
pub(crate) fn page_shift() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        u64::from((p as u64).trailing_zeros())
    } else {
        12
    }
}

/// Gives the heap's free memory back to the kernel after a burst (BTF
/// parsing, the first runtime listing): an agent idles for days. glibc
/// only; musl's allocator returns memory on its own and has no such call.
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc call without preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// SIGKILLs each process in `pids` (a container's `cgroup.procs`), as a
/// runtime stopping the container would.
pub(crate) fn kill_all(pids: &[i32]) {
    for &pid in pids {
        // SAFETY: plain syscall.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The effective capabilities that matter to the tracer.
pub(crate) fn effective_caps() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    CAPS.iter()
        .filter(|(bit, _)| eff & (1u64 << bit) != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// The capabilities loading and attaching the programs needs (or
/// CAP_SYS_ADMIN, which implies them), with their numbers.
const CAPS: [(u32, &str); 3] = [(21, "CAP_SYS_ADMIN"), (38, "CAP_PERFMON"), (39, "CAP_BPF")];

/// The capabilities from [`effective_caps`] that the eBPF programs need
/// and this process lacks: CAP_BPF to load programs and maps, CAP_PERFMON
/// to attach tracepoints and read kernel memory. Empty with CAP_SYS_ADMIN.
pub(crate) fn missing_bpf_caps() -> Vec<&'static str> {
    let have = effective_caps();
    if have.contains(&"CAP_SYS_ADMIN") {
        return Vec::new();
    }
    ["CAP_BPF", "CAP_PERFMON"]
        .into_iter()
        .filter(|c| !have.contains(c))
        .collect()
}
