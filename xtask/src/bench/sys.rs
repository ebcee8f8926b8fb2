//! Small system helpers for the benchmark: clocks, /proc, cgroups, and the
//! kernel's own per-program statistics.
use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};

/// The cgroup v1 memory hierarchy's mount point.
pub(super) const MEMCG: &str = "/sys/fs/cgroup/memory";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM stop the benchmark at its next check instead of
/// killing it, so that its cgroups and processes are cleaned up. (Children
/// get the default handlers back at exec.)
pub(super) fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_interrupt as *const () as libc::sighandler_t) };
    }
}

/// Fails once Ctrl-C or SIGTERM arrived.
pub(super) fn check_interrupted() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: cleaning up");
    }
    Ok(())
}

/// Sleeps `d`, waking early on Ctrl-C.
pub(super) fn sleep(d: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + d;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC, in ns: the clock of bpftrace's `nsecs` (bpf_ktime_get_ns).
pub(super) fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME, in ns since the epoch.
pub(super) fn real_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Parses oom-tracer's `time` (`2026-11-27T18:56:28.707907Z`) to ns since the epoch.
pub(super) fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let frac_ns: u64 = format!("{frac:0<9}").get(..9)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(secs as u64 * 1_000_000_000 + frac_ns)
}

pub(super) fn rss_kib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// user + system CPU time of a process (all its threads), in ms.
pub(super) fn cpu_ms(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the comm's closing parenthesis start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 * 1000.0 / hz)
}

pub(super) fn signal(pid: u32, sig: i32) {
    // SAFETY: plain syscall; pid is a process we started.
    unsafe { libc::kill(pid as i32, sig) };
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| {
            let h = random_hex(16);
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        })
}

/// A memory cgroup's kernfs id: its directory's inode number.
pub(super) fn cgroup_id(dir: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .ino())
}

/// The path oom-tracer prints for a cgroup directory: relative to the hierarchy's root.
pub(super) fn cgroup_path(dir: &Path) -> String {
    format!(
        "/{}",
        dir.strip_prefix(MEMCG)
            .unwrap_or(dir)
            .to_string_lossy()
            .trim_start_matches('/')
    )
}

/// The process ids in a cgroup.
pub(super) fn procs(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The memory cgroups this benchmark created, removed in reverse order on
/// drop (processes left in them are killed first). Directories that existed
/// before are never touched.
#[derive(Default)]
pub(super) struct Cgroups {
    /// (directory, whether it was only created as a parent of another).
    created: Vec<(PathBuf, bool)>,
}

impl Cgroups {
    /// Creates `dir` (and the missing parents, which it then also owns).
    pub(super) fn create(&mut self, dir: &Path) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        let mut d = dir.to_owned();
        while !d.exists() {
            missing.push(d.clone());
            if !d.pop() {
                break;
            }
        }
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
            let parent = d != dir;
            self.created.push((d, parent));
        }
        Ok(())
    }

    pub(super) fn set_limit(dir: &Path, bytes: u64) -> anyhow::Result<()> {
        let f = dir.join("memory.limit_in_bytes");
        std::fs::write(&f, bytes.to_string()).with_context(|| format!("writing {}", f.display()))
    }

    /// Removes `dir` (one this set created) and everything it created below it.
    pub(super) fn remove(&mut self, dir: &Path) -> anyhow::Result<()> {
        let (below, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.created)
            .into_iter()
            .partition(|(d, _)| d.starts_with(dir));
        self.created = keep;
        let mut err = None;
        for (d, parent) in below.iter().rev() {
            if let Err(e) = remove_dir(d, *parent) {
                err.get_or_insert(e);
            }
        }
        err.map_or(Ok(()), Err)
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for (d, parent) in std::mem::take(&mut self.created).iter().rev() {
            if let Err(e) = remove_dir(d, *parent) {
                eprintln!("xtask: bench: {e:#}");
            }
        }
    }
}

/// Kills what is left in a cgroup, then removes it (memcg removal waits
/// for the killed tasks to be released). A directory created only as a
/// parent (kubepods/burstable on a machine without a kubelet) may have been
/// taken into use by someone else meanwhile: it is removed only if empty.
fn remove_dir(dir: &Path, parent: bool) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if parent {
        return std::fs::remove_dir(dir).or_else(|e| {
            eprintln!(
                "xtask: bench: leaving {} ({e}): it is in use",
                dir.display()
            );
            Ok(())
        });
    }
    // Everything below a cgroup this benchmark created is its own
    // (oom-tracer run's pod cgroups under --cgroup-parent included).
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir(&e.path(), false)?;
            }
        }
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        for pid in procs(dir) {
            signal(pid, libc::SIGKILL);
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() > until => {
                bail!("removing cgroup {}: {e}", dir.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The hooks both tools attach, by tracepoint name.
pub(super) const HOOKS: [&str; 8] = [
    "mark_victim",
    "signal_generate",
    "sched_process_exec",
    "sched_process_exit",
    "rss_stat",
    "cgroup_mkdir",
    "cgroup_rmdir",
    "cgroup_attach_task",
];

/// oom-tracer's programs that bpftrace's script has no counterpart for:
/// their cost per run is shown for oom-tracer alone.
pub(super) const OWN_HOOKS: [&str; 4] = [
    "mark_victim_tasks",
    "mm_vmscan_memcg_reclaim_begin",
    "mm_vmscan_memcg_reclaim_end",
    "mod_memcg_lruvec_state",
];

/// The row a program counts in: its tracepoint, or, where the program's
/// kernel name (15 characters) is not the start of the tracepoint's name,
/// the oom-tracer program of that name (a second program on a tracepoint).
pub(super) fn hook_label(tp: &str, kernel_name: &str) -> String {
    if kernel_name.is_empty() || tp.starts_with(kernel_name) {
        return tp.to_owned();
    }
    oom_tracer_common::names::PROGRAMS
        .iter()
        .find(|p| p.starts_with(kernel_name))
        .map_or_else(|| kernel_name.to_owned(), |p| (*p).to_owned())
}

/// One BPF program of a tool and the tracepoint it is attached to.
#[derive(Clone, Debug)]
pub(super) struct Prog {
    pub id: u32,
    pub hook: String,
}

#[repr(C)]
#[derive(Default)]
struct TaskFdQuery {
    pid: u32,
    fd: u32,
    flags: u32,
    buf_len: u32,
    buf: u64,
    prog_id: u32,
    fd_type: u32,
    probe_offset: u64,
    probe_addr: u64,
}

const BPF_TASK_FD_QUERY: libc::c_long = 20;

/// BPF_TASK_FD_QUERY on a perf event fd of `pid` (what `bpftool perf` does):
/// the program attached through it and the tracepoint's name.
fn task_fd_query(pid: u32, fd: u32) -> Option<(u32, String)> {
    let mut buf = [0u8; 256];
    let mut q = TaskFdQuery {
        pid,
        fd,
        buf_len: buf.len() as u32,
        buf: buf.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: the attr and the name buffer outlive the call; the kernel
    // writes at most buf_len bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_TASK_FD_QUERY,
            &mut q as *mut TaskFdQuery,
            size_of::<TaskFdQuery>(),
        )
    };
    if r != 0 || q.prog_id == 0 {
        return None;
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some((q.prog_id, String::from_utf8_lossy(&buf[..n]).into_owned()))
}

/// The BPF programs a process has attached, each with its tracepoint, found
/// through the process's own file descriptors:
/// - a bpf_link (oom-tracer: raw_tracepoint links for tp_btf, perf links for
///   tracepoints) shows `prog_id` and `tp_name` in its fdinfo;
/// - a perf event with a program (bpftrace attaches tracepoints with
///   PERF_EVENT_IOC_SET_BPF) answers BPF_TASK_FD_QUERY.
///
/// Program names cannot tell them apart: the kernel keeps 15 characters,
/// so both tools' exec and exit programs are named `sched_process_e`.
pub(super) fn attached_progs(pid: u32) -> Vec<Prog> {
    let mut v: Vec<Prog> = Vec::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return v;
    };
    for e in fds.filter_map(Result::ok) {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
        };
        let found = if info.contains("link_type:") {
            match (
                field("prog_id:").and_then(|v| v.parse().ok()),
                field("tp_name:"),
            ) {
                (Some(id), Some(tp)) => Some((id, tp)),
                _ => None,
            }
        } else if std::fs::read_link(e.path())
            .is_ok_and(|t| t.to_string_lossy() == "anon_inode:[perf_event]")
        {
            task_fd_query(pid, fd)
        } else {
            None
        };
        if let Some((id, hook)) = found
            && !v.iter().any(|p| p.id == id)
        {
            v.push(Prog { id, hook });
        }
    }
    // A second program on one tracepoint (oom-tracer's task list on
    // mark_victim) is its own row, named after the program.
    let ids: Vec<u32> = v.iter().map(|x| x.id).collect();
    let stats = prog_stats(&ids);
    for x in &mut v {
        if let Some(st) = stats.get(&x.id) {
            x.hook = hook_label(&x.hook, &st.name);
        }
    }
    v.sort_by(|a, b| a.hook.cmp(&b.hook));
    v
}

/// A program's cumulative kernel statistics (kernel.bpf_stats_enabled).
#[derive(Clone, Debug, Default)]
pub(super) struct ProgStat {
    pub run_time_ns: u64,
    pub run_count: u64,
    pub name: String,
    pub loaded_at: Option<SystemTime>,
}

/// The kernel's statistics of programs `ids`, from the list of all loaded
/// programs (aya::programs::loaded_programs: BPF_PROG_GET_NEXT_ID + info).
pub(super) fn prog_stats(ids: &[u32]) -> BTreeMap<u32, ProgStat> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| {
            (
                p.id(),
                ProgStat {
                    run_time_ns: p.run_time().as_nanos() as u64,
                    run_count: p.run_count(),
                    name: p.name_as_str().unwrap_or_default().to_owned(),
                    loaded_at: p.loaded_at(),
                },
            )
        })
        .collect()
}

/// The memory controller's parameters for the bpftrace script: its index in
/// `css_set.subsys` (enum cgroup_subsys_id), its v1 hierarchy id, and
/// offsetof(struct kernfs_node, id), from the kernel's BTF.
pub(super) struct KernelParams {
    pub memory_cgrp_id: u32,
    pub memory_hierarchy: u32,
    pub kn_id_offset: u32,
}

pub(super) fn kernel_params() -> anyhow::Result<KernelParams> {
    let cgroups = std::fs::read_to_string("/proc/cgroups").context("reading /proc/cgroups")?;
    // /proc/cgroups lists the controllers in cgroup_subsys_id order.
    let (idx, hier) = cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .enumerate()
        .find_map(|(i, l)| {
            let mut f = l.split_whitespace();
            (f.next() == Some("memory"))
                .then(|| (i as u32, f.next().and_then(|h| h.parse().ok()).unwrap_or(0)))
        })
        .context("no memory controller in /proc/cgroups")?;
    let btf = btf_rs::Btf::from_file("/sys/kernel/btf/vmlinux")
        .context("the bpftrace script needs the kernel's BTF (/sys/kernel/btf/vmlinux)")?;
    let memory_cgrp_id = enumerator(&btf, "cgroup_subsys_id", "memory_cgrp_id").unwrap_or(idx);
    let kn_id_offset = member_offset(&btf, "kernfs_node", "id")
        .context("no struct kernfs_node.id in the kernel's BTF")?;
    Ok(KernelParams {
        memory_cgrp_id,
        memory_hierarchy: hier,
        kn_id_offset,
    })
}

fn enumerator(btf: &btf_rs::Btf, e: &str, name: &str) -> Option<u32> {
    btf.resolve_types_by_name(e)
        .ok()?
        .into_iter()
        .find_map(|t| match t {
            btf_rs::Type::Enum(en) => en
                .members
                .iter()
                .find(|m| btf.resolve_name(*m).is_ok_and(|n| n == name))
                .map(|m| m.val()),
            _ => None,
        })
}

fn member_offset(btf: &btf_rs::Btf, strct: &str, field: &str) -> Option<u32> {
    btf.resolve_types_by_name(strct)
        .ok()?
        .into_iter()
        .find_map(|t| match t {
            btf_rs::Type::Struct(s) if !s.members.is_empty() => s
                .members
                .iter()
                .find(|m| btf.resolve_name(*m).is_ok_and(|n| n == field))
                .map(|m| m.bit_offset() / 8),
            _ => None,
        })
}
