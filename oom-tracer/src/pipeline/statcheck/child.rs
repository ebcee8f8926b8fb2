//! The check's child process: oom-tracer's own binary, re-executed as
//! `oom-tracer __stat-probe` (a hidden subcommand `main` answers before
//! parsing any flag). It holds memory of sizes nothing else has in the
//! cgroup it was put in, for as long as the check needs it; whatever
//! happens to it (an OOM kill, a cgroup it cannot leave), the tracer goes
//! on.
//!
//! The protocol, on its stdin and stdout: the parent places the child in
//! its cgroup, writes `go`; the child charges its memory there and
//! answers `ready`; it exits at the end of its stdin (or with its parent:
//! it asks for SIGKILL when the thread that started it ends).
use std::{
    io::{BufRead as _, Read as _, Write as _},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    process::ExitCode,
};

/// The hidden subcommand.
pub(crate) const SUBCOMMAND: &str = "__stat-probe";

/// What the child puts in its cgroup: amounts no other statistic has.
pub(super) const ANON_BYTES: usize = (4 << 20) + 5 * 4096;
const SHMEM_BYTES: usize = (1 << 20) + 3 * 4096;

/// The child's side: wait for `go`, charge the memory, say `ready`, hold
/// it until stdin ends.
pub(crate) fn serve() -> ExitCode {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    if stdin.read_line(&mut line).is_err() || line.trim() != "go" {
        return ExitCode::SUCCESS;
    }
    let mut stdout = std::io::stdout().lock();
    let load = match Load::new() {
        Ok(load) => load,
        Err(e) => {
            let _ = writeln!(stdout, "error {e}");
            return ExitCode::FAILURE;
        }
    };
    if writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    let mut rest = Vec::new();
    let _ = stdin.read_to_end(&mut rest);
    drop(load);
    ExitCode::SUCCESS
}

/// Anonymous memory and shmem of sizes nothing else has, held for the check.
struct Load {
    _anon: Vec<u8>,
    _shmem: OwnedFd,
}

impl Load {
    fn new() -> std::io::Result<Self> {
        // Every page written, so every page is charged.
        let anon = vec![0x5a_u8; ANON_BYTES];
        // SAFETY: memfd_create with a NUL-terminated name; the fd is owned below.
        let fd = unsafe { libc::memfd_create(c"oom-tracer-probe".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let shmem = unsafe { OwnedFd::from_raw_fd(fd) };
        let chunk = vec![0xa5_u8; SHMEM_BYTES];
        // SAFETY: writing `chunk` to our own memfd.
        let n = unsafe { libc::write(shmem.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) };
        if n != SHMEM_BYTES as isize {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            _anon: anon,
            _shmem: shmem,
        })
    }
}
