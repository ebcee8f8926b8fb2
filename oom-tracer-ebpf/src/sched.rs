//! Process lifecycle in watched cgroups: exec and exit.
//!
//! Both run for every exec and exit on the node: the memcg verdict comes
//! from this CPU's cache (plain loads through `current`), so an unwatched
//! process costs no helper call and no walk.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use oom_tracer_common::{EventKind, ExecEvent, ExitEvent};

use crate::{
    alloc::{restart_ramp, task_image_stamp_btf},
    emit::{NO_WAKE, header, output},
    kernel::{
        ReadResult, btf_load, current_task_btf, koff, memcg_watched, task_info_btf, task_memcg_btf,
    },
    maps::ALLOC_LAST,
};

#[btf_tracepoint(function = "sched_process_exec")]
pub(crate) fn sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    match try_sched_process_exec(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_process_exec(_ctx: &BtfTracePointContext) -> ReadResult<()> {
    let task = current_task_btf();
    let css = task_memcg_btf(task);
    if !memcg_watched(css) {
        return Ok(());
    }
    exec_record(task, css);
    Ok(())
}

/// An exec in a watched memcg (a subprogram: the filter above stays short).
#[inline(never)]
fn exec_record(task: u64, css: u64) {
    let ev = ExecEvent {
        hdr: header(EventKind::Exec),
        task: task_info_btf(task, css),
    };
    // A new image starts a new allocation ramp, from 0.
    restart_ramp(ev.task.tgid, task_image_stamp_btf(task));
    output(&ev, NO_WAKE);
}

#[btf_tracepoint(function = "sched_process_exit")]
pub(crate) fn sched_process_exit(ctx: BtfTracePointContext) -> u32 {
    match try_sched_process_exit(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_process_exit(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let task: u64 = ctx.arg(0);
    // Threads other than the leader: not a process exit.
    if btf_load::<i32>(task, koff!(task_pid))? != btf_load::<i32>(task, koff!(task_tgid))? {
        return Ok(());
    }
    let css = task_memcg_btf(task);
    if !memcg_watched(css) {
        return Ok(());
    }
    exit_record(task, css);
    Ok(())
}

/// A process exit in a watched memcg (a subprogram, as `exec_record`).
#[inline(never)]
fn exit_record(task: u64, css: u64) {
    let ev = ExitEvent {
        hdr: header(EventKind::Exit),
        task: task_info_btf(task, css),
        exit_code: btf_load::<i32>(task, koff!(task_exit_code)).unwrap_or(0) as u32,
        _pad: 0,
    };
    // The per-CPU copies need no invalidation: a reused pid has another stamp.
    let _ = ALLOC_LAST.remove(ev.task.tgid);
    output(&ev, NO_WAKE);
}
