//! Process lifecycle in watched cgroups: exec and exit.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use oom_tracer_common::{EventKind, ExecEvent, ExitEvent};

use crate::{
    emit::{NO_WAKE, header, output},
    kernel::{
        ReadResult, current_info, current_task, is_watched, koff, read_or_zero, task_info,
        task_memcg,
    },
    maps::ALLOC_LAST,
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    match try_sched_process_exec(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_process_exec(_ctx: &BtfTracePointContext) -> ReadResult<()> {
    let css = task_memcg(current_task())?;
    if !is_watched(css) {
        return Ok(());
    }
    let ev = ExecEvent {
        hdr: header(EventKind::Exec),
        task: current_info(css),
    };
    // A new image starts a new allocation ramp.
    let _ = ALLOC_LAST.insert(ev.task.tgid, 0u64, 0);
    output(&ev, NO_WAKE);
    Ok(())
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> u32 {
    match try_sched_process_exit(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sched_process_exit(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    // Threads other than the leader: not a process exit.
    if pid_tgid as u32 != (pid_tgid >> 32) as u32 {
        return Ok(());
    }
    let task: u64 = ctx.arg(0);
    let css = task_memcg(task)?;
    if !is_watched(css) {
        return Ok(());
    }
    let ev = ExitEvent {
        hdr: header(EventKind::Exit),
        task: task_info(task, css),
        exit_code: read_or_zero::<u32>(task, koff!(task_exit_code)),
        _pad: 0,
    };
    let _ = ALLOC_LAST.remove(ev.task.tgid);
    output(&ev, NO_WAKE);
    Ok(())
}
