//! Memory cgroup lifecycle: mkdir, rmdir, and tasks moving in.
//!
//! On cgroup v1 these tracepoints fire once per hierarchy; only the memory
//! controller's hierarchy (`SETTINGS.memory_hierarchy`, 0 on v2) is kept.
use aya_ebpf::{
    EbpfContext as _,
    cty::c_void,
    helpers::bpf_probe_read_kernel_str_bytes,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use oom_tracer_common::{COMM_LEN, CgroupEvent, EventKind};

use crate::{
    emit::{NO_WAKE, header, output},
    kernel::{
        ReadResult, btf_load, is_watched_id, koff, read, read_data_loc, read_or_zero, setting, tpl,
    },
};

/// tp_btf/cgroup_mkdir(struct cgroup *cgrp, const char *path): attached
/// through a bpf_link, no perf_event_open (which Debian's
/// perf_event_paranoid=3 refuses to a pod with only CAP_BPF and
/// CAP_PERFMON); the classic tracepoint below is the fallback.
#[btf_tracepoint(function = "cgroup_mkdir")]
pub(crate) fn cgroup_mkdir(ctx: BtfTracePointContext) -> u32 {
    match try_cgroup_dir_btf(&ctx, EventKind::CgroupMkdir) {
        Ok(()) | Err(_) => 0,
    }
}

/// tp_btf/cgroup_rmdir(struct cgroup *cgrp, const char *path).
#[btf_tracepoint(function = "cgroup_rmdir")]
pub(crate) fn cgroup_rmdir(ctx: BtfTracePointContext) -> u32 {
    match try_cgroup_dir_btf(&ctx, EventKind::CgroupRmdir) {
        Ok(()) | Err(_) => 0,
    }
}

/// The classic tracepoint's fields, read from the cgroup: the hierarchy
/// (`cgrp->root->hierarchy_id`, 0 on v2), the id (`cgrp->kn->id`), the
/// level, and the path the kernel formatted for the event.
fn try_cgroup_dir_btf(ctx: &BtfTracePointContext, kind: EventKind) -> ReadResult<()> {
    let cgrp: u64 = ctx.arg(0);
    let root = btf_load::<u64>(cgrp, koff!(cgroup_root))?;
    if btf_load::<i32>(root, koff!(root_hierarchy_id))? as u32 != setting!(memory_hierarchy) {
        return Ok(());
    }
    let kn = btf_load::<u64>(cgrp, koff!(cgroup_kn))?;
    let mut ev = CgroupEvent {
        hdr: header(kind),
        id: btf_load::<u64>(kn, koff!(kn_id))?,
        level: btf_load::<i32>(cgrp, koff!(cgroup_level))? as u32,
        ..Default::default()
    };
    let path: u64 = ctx.arg(1);
    // SAFETY: the helper bounds the read by the buffer's length.
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(path as *const u8, &mut ev.path) };
    output(&ev, NO_WAKE);
    Ok(())
}

/// tracepoint/cgroup/cgroup_mkdir: the fallback where tp_btf is not
/// available, fields read by the format file's layout.
#[tracepoint(category = "cgroup", name = "cgroup_mkdir")]
pub(crate) fn cgroup_cgroup_mkdir(ctx: TracePointContext) -> u32 {
    match try_cgroup_dir(&ctx, EventKind::CgroupMkdir) {
        Ok(()) | Err(_) => 0,
    }
}

/// tracepoint/cgroup/cgroup_rmdir: the fallback, as above.
#[tracepoint(category = "cgroup", name = "cgroup_rmdir")]
pub(crate) fn cgroup_cgroup_rmdir(ctx: TracePointContext) -> u32 {
    match try_cgroup_dir(&ctx, EventKind::CgroupRmdir) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_cgroup_dir(ctx: &TracePointContext, kind: EventKind) -> ReadResult<()> {
    let base = ctx.as_ptr() as u64;
    if read::<i32>(base, tpl!(cg_root))? as u32 != setting!(memory_hierarchy) {
        return Ok(());
    }
    let mut ev = CgroupEvent {
        hdr: header(kind),
        id: read::<u64>(base, tpl!(cg_id))?,
        level: read::<i32>(base, tpl!(cg_level))? as u32,
        ..Default::default()
    };
    let _ = read_data_loc(base, tpl!(cg_path), &mut ev.path);
    output(&ev, NO_WAKE);
    Ok(())
}

/// Whether a task moving into the cgroup `id` is recorded: `id` itself is
/// watched (the agent watches kubepods: a kubelet moving a task there; `run`
/// watches its pod and container: its workload moving in).
#[inline(always)]
fn attach_recorded(id: u64) -> bool {
    setting!(watch_all) != 0 || is_watched_id(id)
}

/// tp_btf/cgroup_attach_task(struct cgroup *dst_cgrp, const char *path,
/// struct task_struct *task, bool threadgroup): the filter reads the
/// destination through BTF pointers (plain loads, no helper call).
#[btf_tracepoint(function = "cgroup_attach_task")]
pub(crate) fn cgroup_attach_task(ctx: BtfTracePointContext) -> u32 {
    match try_cgroup_attach_task(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_cgroup_attach_task(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let dst: u64 = ctx.arg(0);
    // A memory cgroup: on v1 the memory hierarchy (as the classic filter's
    // root check), on v2 one with the memory controller on. A field of the
    // destination cgroup, which the kernel has just used for the move.
    if btf_load::<u64>(dst, koff!(cgroup_subsys_memory))? == 0 {
        return Ok(());
    }
    let kn = btf_load::<u64>(dst, koff!(cgroup_kn))?;
    let id = btf_load::<u64>(kn, koff!(kn_id))?;
    if !attach_recorded(id) {
        return Ok(());
    }
    attach_record(ctx.as_ptr(), id);
    Ok(())
}

/// A recorded attach (a subprogram: the filter above stays short).
#[inline(never)]
fn attach_record(ctx: *mut c_void, id: u64) -> u64 {
    let ctx = BtfTracePointContext::new(ctx);
    let dst: u64 = ctx.arg(0);
    let task: u64 = ctx.arg(2);
    let mut ev = CgroupEvent {
        hdr: header(EventKind::CgroupAttach),
        id,
        pid: btf_load::<i32>(task, koff!(task_pid)).unwrap_or(0) as u32,
        level: btf_load::<i32>(dst, koff!(cgroup_level)).unwrap_or(0) as u32,
        comm: read_or_zero::<[u8; COMM_LEN]>(task, koff!(task_comm)),
        ..Default::default()
    };
    let path: u64 = ctx.arg(1);
    // SAFETY: the helper bounds the read by the buffer's length.
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(path as *const u8, &mut ev.path) };
    output(&ev, NO_WAKE);
    0
}

/// tracepoint/cgroup/cgroup_attach_task: the fallback where tp_btf is not
/// available, fields read by the format file's layout.
#[tracepoint(category = "cgroup", name = "cgroup_attach_task")]
pub(crate) fn cgroup_cgroup_attach_task(ctx: TracePointContext) -> u32 {
    match try_cgroup_cgroup_attach_task(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_cgroup_cgroup_attach_task(ctx: &TracePointContext) -> ReadResult<()> {
    let base = ctx.as_ptr() as u64;
    if read::<i32>(base, tpl!(at_root))? as u32 != setting!(memory_hierarchy) {
        return Ok(());
    }
    let id = read::<u64>(base, tpl!(at_id))?;
    if !attach_recorded(id) {
        return Ok(());
    }
    let mut ev = CgroupEvent {
        hdr: header(EventKind::CgroupAttach),
        id,
        pid: read::<i32>(base, tpl!(at_pid))? as u32,
        level: read::<i32>(base, tpl!(at_level))? as u32,
        ..Default::default()
    };
    let _ = read_data_loc(base, tpl!(at_path), &mut ev.path);
    let _ = read_data_loc(base, tpl!(at_comm), &mut ev.comm);
    output(&ev, NO_WAKE);
    Ok(())
}
