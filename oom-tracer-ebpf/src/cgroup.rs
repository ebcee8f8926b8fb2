//! Memory cgroup lifecycle: mkdir, rmdir, and tasks moving in.
//!
//! On cgroup v1 these tracepoints fire once per hierarchy; only the memory
//! controller's hierarchy (`SETTINGS.memory_hierarchy`, 0 on v2) is kept.
use aya_ebpf::{EbpfContext as _, macros::tracepoint, programs::TracePointContext};
use oom_tracer_common::{CgroupEvent, EventKind};

use crate::{
    emit::{NO_WAKE, header, output},
    kernel::{ReadResult, read, read_data_loc, setting, tpl},
    maps::{ALLOC_LAST, WATCHED},
};

#[tracepoint(category = "cgroup", name = "cgroup_mkdir")]
pub fn cgroup_mkdir(ctx: TracePointContext) -> u32 {
    match try_cgroup_dir(&ctx, EventKind::CgroupMkdir) {
        Ok(()) | Err(_) => 0,
    }
}

#[tracepoint(category = "cgroup", name = "cgroup_rmdir")]
pub fn cgroup_rmdir(ctx: TracePointContext) -> u32 {
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

#[tracepoint(category = "cgroup", name = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: TracePointContext) -> u32 {
    match try_cgroup_attach_task(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_cgroup_attach_task(ctx: &TracePointContext) -> ReadResult<()> {
    let base = ctx.as_ptr() as u64;
    if read::<i32>(base, tpl!(at_root))? as u32 != setting!(memory_hierarchy) {
        return Ok(());
    }
    let id = read::<u64>(base, tpl!(at_id))?;
    if setting!(watch_all) == 0 && WATCHED.get_ptr(id).is_none() {
        return Ok(());
    }
    let pid = read::<i32>(base, tpl!(at_pid))? as u32;
    // The process entered a watched cgroup. Its ramp starts at its exec
    // (which resets this): until then it is the runtime's forked copy,
    // whose inherited RSS is not the workload's.
    let _ = ALLOC_LAST.insert(pid, u64::MAX, 0);
    let mut ev = CgroupEvent {
        hdr: header(EventKind::CgroupAttach),
        id,
        pid,
        level: read::<i32>(base, tpl!(at_level))? as u32,
        ..Default::default()
    };
    let _ = read_data_loc(base, tpl!(at_path), &mut ev.path);
    let _ = read_data_loc(base, tpl!(at_comm), &mut ev.comm);
    output(&ev, NO_WAKE);
    Ok(())
}
