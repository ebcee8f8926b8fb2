//! SIGKILLs generated for watched tasks: the OOM killer's, and anyone else's.
use aya_ebpf::{
    EbpfContext as _, cty::c_void, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use oom_tracer_common::{EventKind, MemcgProbeEvent, SI_KERNEL, SignalEvent};

use crate::{
    emit::{NO_WAKE, WAKE, header, output, reserve},
    kernel::{
        ReadResult, current_task_btf, memcg_oom_watched, read, setting, task_info_btf, task_memcg,
        task_memcg_btf,
    },
    maps::PROBE,
    memstat::read_memcg_stats,
};

const SIGKILL: i32 = 9;
/// `SEND_SIG_NOINFO` and `SEND_SIG_PRIV`: pseudo-pointers, not siginfo.
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;
const SI_USER: i32 = 0;

/// tp_btf/signal_generate(int sig, struct kernel_siginfo *info,
/// struct task_struct *task, int group, int result)
#[btf_tracepoint(function = "signal_generate")]
pub(crate) fn signal_generate(ctx: BtfTracePointContext) -> u32 {
    match try_signal_generate(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_signal_generate(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let sig: i32 = ctx.arg(0);
    if sig != SIGKILL {
        if sig as u32 == setting!(probe_signal) {
            probe(ctx.arg(2));
        }
        return Ok(());
    }
    sigkill(ctx.as_ptr());
    Ok(())
}

/// A SIGKILL: the rest, in a subprogram of its own, so that the check above
/// (every signal on the node) runs in a small, lean function.
#[inline(never)]
fn sigkill(ctx: *mut c_void) -> u64 {
    match try_sigkill(&BtfTracePointContext::new(ctx)) {
        Ok(()) | Err(_) => 0,
    }
}

#[inline(always)]
fn try_sigkill(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let sig = SIGKILL;
    let task: u64 = ctx.arg(2);
    let css = task_memcg_btf(task);
    if !memcg_oom_watched(css) {
        return Ok(());
    }
    let info: u64 = ctx.arg(1);
    let code = match info {
        SEND_SIG_NOINFO => SI_USER,
        SEND_SIG_PRIV => SI_KERNEL,
        // kernel_siginfo starts with si_signo, si_errno, si_code. Read
        // with the helper: once compared with the pseudo-pointers above,
        // some verifiers (Debian's 6.12) no longer take it as a pointer.
        p => read::<i32>(p, 8).unwrap_or(SI_USER),
    };
    let sender = current_task_btf();
    let ev = SignalEvent {
        hdr: header(EventKind::Signal),
        target: task_info_btf(task, css),
        sender: task_info_btf(sender, task_memcg_btf(sender)),
        sig: sig as u32,
        code,
        result: ctx.arg(4),
        _pad: 0,
    };
    // The kernel's own SIGKILL (the OOM killer's comes microseconds before
    // its `mark_victim`) wakes the reader: it is on a CPU, with what came
    // before the kill drained, by the time the kill's record arrives, and
    // ahead of other readers woken at the kill.
    output(&ev, if code == SI_KERNEL { WAKE } else { NO_WAKE });
    Ok(())
}

/// A task in the `PROBE` map signalled itself: the statistics of its memcg,
/// for userspace's startup check of their layout.
#[inline(never)]
fn probe(task: u64) {
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    if PROBE.get_ptr(tgid).is_none() {
        return;
    }
    let Ok(css) = task_memcg(task) else { return };
    let Some(mut entry) = reserve::<MemcgProbeEvent>() else {
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the reserved record, zeroed; its fields are written
    // before it is submitted.
    unsafe {
        (*ev).hdr = header(EventKind::MemcgProbe);
        (*ev).tgid = tgid;
        read_memcg_stats(css, core::ptr::addr_of_mut!((*ev).stats));
    }
    entry.submit(WAKE);
}
