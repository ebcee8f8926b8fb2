//! Facts about this host and small things done to it: the kernel release,
//! the page size, giving freed heap back to the kernel.

/// The running kernel's release (`uname -r`), or `unknown`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// log2 of the page size (12 where sysconf cannot tell).
pub fn page_shift() -> u64 {
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
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: glibc call without preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
