//! The workload: which command, its ids, starting it inside its container
//! cgroup, and stopping it.
use std::{ffi::OsString, os::fd::AsRawFd as _, time::SystemTime};

use super::{RunError, output::WorkloadStdio};
use crate::{
    cgroup::pod::{OwnedCgroup, procs},
    cli::RunArgs,
    host,
};

/// A uuid-shaped pod uid and a 64-hex container id, unique enough for one box.
pub(super) fn ids(seed: u64) -> (String, String) {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ seed.rotate_left(32) ^ u64::from(std::process::id());
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9e3779b97f4a7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    let a = next();
    let b = next();
    let uid = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    );
    let cid = format!(
        "{:016x}{:016x}{:016x}{:016x}",
        next(),
        next(),
        next(),
        next()
    );
    (uid, cid)
}

/// Command words as text for the records (invalid UTF-8 shown as U+FFFD).
pub(super) fn lossy(cmd: &[OsString]) -> Vec<String> {
    cmd.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// Resolves the workload: the command given, or the bundled stress.
pub(super) fn workload(args: &RunArgs) -> Result<Vec<OsString>, RunError> {
    if !args.command.is_empty() {
        return Ok(args.command.clone());
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let stress = exe.with_file_name("stress");
    if !stress.is_file() {
        return Err(RunError::NoStress { exe });
    }
    Ok(vec![
        stress.into_os_string(),
        "--step".into(),
        "5Mi".into(),
        "--interval".into(),
        "50ms".into(),
    ])
}

/// Starts `cmd` inside `cgroup`: the child writes itself into
/// `cgroup.procs` between fork and exec, so it runs its first instruction
/// under the limit.
pub(super) fn spawn(
    cmd: &[OsString],
    cgroup: &OwnedCgroup,
    output: &WorkloadStdio,
) -> Result<tokio::process::Child, RunError> {
    let spawn_err = |source| RunError::Spawn {
        command: lossy(cmd).join(" "),
        source,
    };
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(cgroup.dir.join("cgroup.procs"))
        .map_err(spawn_err)?;
    let (stdout, stderr) = output.stdio().map_err(spawn_err)?;
    let mut c = tokio::process::Command::new(&cmd[0]);
    c.args(&cmd[1..])
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        // Its own process group: a terminal's Ctrl-C reaches oom-tracer,
        // which then stops the workload itself, as a runtime would.
        .process_group(0);
    let fd = procs.as_raw_fd();
    // SAFETY: only async-signal-safe calls (write) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let rc = libc::write(fd, b"0".as_ptr().cast(), 1);
            if rc == 1 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let child = c.spawn().map_err(spawn_err)?;
    drop(procs);
    Ok(child)
}

/// SIGKILLs every process in the container, as a runtime stopping it would.
pub(super) fn kill_all(ctr: &OwnedCgroup) {
    host::kill_all(&procs(&ctr.dir));
}
