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

/// After startup: gives the heap's free memory back ([`trim_heap`]) and
/// drops this binary's code pages from the resident set. Parsing BTF,
/// loading and attaching the programs, the flags and the clients run once
/// and touch most of the code; the tracing loop needs a small part of it,
/// which the kernel faults back in from the page cache as it runs. Only
/// the executable's read-only code mappings (`r-xp`) are dropped, never a
/// mapping that was written to (relro, data), so nothing is lost.
pub(crate) fn settle() {
    trim_heap();
    let dropped = drop_startup_code();
    tracing::debug!("dropped {} KiB of startup code pages", dropped >> 10);
}

/// Drops the resident pages of `bytes`, a static the binary carries and
/// no longer needs in memory (the eBPF object, once loaded). A static is
/// read-only file data: the pages come back from the file if it is read
/// again. Only whole pages inside `bytes` are dropped.
pub(crate) fn drop_static(bytes: &'static [u8]) {
    let page = 1usize << page_shift();
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) & !(page - 1);
    if end > start {
        // SAFETY: whole pages inside an immutable static of this binary (a
        // private, read-only file mapping, never written): MADV_DONTNEED
        // only unmaps them, and the next read faults them in again.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// `madvise(MADV_DONTNEED)` on the `r-xp` mappings of `/proc/self/exe`;
/// returns the bytes they span.
fn drop_startup_code() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut dropped = 0;
    for (start, end) in code_mappings(&maps, &exe.to_string_lossy()) {
        // SAFETY: a private, read-only, executable file mapping of this
        // binary, never written: MADV_DONTNEED only unmaps its pages, which
        // the next access faults in again from the file.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc == 0 {
            dropped += end - start;
        }
    }
    dropped
}

/// `[start, end)` of each `r-xp` mapping of `path` in a `/proc/PID/maps` text.
fn code_mappings(maps: &str, path: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let name = f.nth(3)?;
            if perms != "r-xp" || name != path {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let start = usize::from_str_radix(a, 16).ok()?;
            let end = usize::from_str_radix(b, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::code_mappings;

    #[test]
    fn only_the_binarys_code_mappings() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 123 /usr/bin/oom-tracer
55d0c0100000-55d0c0800000 r-xp 00100000 fd:01 123 /usr/bin/oom-tracer
55d0c0800000-55d0c0900000 r--p 00800000 fd:01 123 /usr/bin/oom-tracer
55d0c0900000-55d0c0910000 rw-p 00900000 fd:01 123 /usr/bin/oom-tracer
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 00:00 0
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
";
        assert_eq!(
            code_mappings(maps, "/usr/bin/oom-tracer"),
            [(0x55d0c0100000, 0x55d0c0800000)]
        );
        assert!(code_mappings("garbage\n\n1-2 r-xp", "/x").is_empty());
    }

    #[test]
    fn dropping_the_code_of_a_running_test_is_harmless() {
        super::settle();
        // Still running: the code faults back in.
        assert_eq!(code_mappings("", "/x"), []);
    }
}
