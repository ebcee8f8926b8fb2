//! The BPF programs each tool attached, their kernel statistics, and the
//! kernel parameters the bpftrace script needs from BTF.
use std::{collections::BTreeMap, time::SystemTime};

use anyhow::Context as _;

/// The hooks both tools attach, by tracepoint name.
pub(in crate::bench) const HOOKS: [&str; 8] = [
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
pub(in crate::bench) const OWN_HOOKS: [&str; 4] = [
    "mark_victim_tasks",
    "mm_vmscan_memcg_reclaim_begin",
    "mm_vmscan_memcg_reclaim_end",
    "mod_memcg_lruvec_state",
];

/// The row a program counts in: its tracepoint, or, where the program's
/// kernel name (15 characters) is not the start of the tracepoint's name,
/// the oom-tracer program of that name (a second program on a tracepoint).
fn hook_label(tp: &str, kernel_name: &str) -> String {
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
pub(in crate::bench) struct Prog {
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
pub(in crate::bench) fn attached_progs(pid: u32) -> Vec<Prog> {
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
pub(in crate::bench) struct ProgStat {
    pub run_time_ns: u64,
    pub run_count: u64,
    pub name: String,
    pub loaded_at: Option<SystemTime>,
}

/// The kernel's statistics of programs `ids`, from the list of all loaded
/// programs (aya::programs::loaded_programs: BPF_PROG_GET_NEXT_ID + info).
pub(in crate::bench) fn prog_stats(ids: &[u32]) -> BTreeMap<u32, ProgStat> {
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
pub(in crate::bench) struct KernelParams {
    pub memory_cgrp_id: u32,
    pub memory_hierarchy: u32,
    pub kn_id_offset: u32,
}

pub(in crate::bench) fn kernel_params() -> anyhow::Result<KernelParams> {
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
