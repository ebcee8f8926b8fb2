//! The allocation ramp: `kmem/rss_stat`, filtered in the kernel.
//!
//! This is the hottest hook (tens of calls per fork/exec anywhere on the
//! box), so the cheap checks run first: the counter is MM_ANONPAGES, the
//! process is watched (one map lookup; the memcg walk runs once per
//! process), the counter belongs to the current task's mm, and the
//! per-process size grew by a step since the last record. Kernel memory is
//! read only for watched processes.
//!
//! Two programs, one attached: `rss_stat` (tp_btf: the member is a plain
//! argument, so most calls end after one load, with no helper call) and
//! `kmem_rss_stat` (the classic tracepoint, fields read by offset) where
//! tp_btf is not available.
use aya_ebpf::{
    EbpfContext as _,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use oom_tracer_common::{AllocEvent, EventKind};

use crate::{
    emit::{NO_WAKE, header, output},
    kernel::{
        ReadResult, btf_load, current_info, current_task, current_task_btf, is_watched, koff,
        pages_to_bytes, read, setting, task_memcg, tpl,
    },
    maps::ALLOC_LAST,
};

/// `ALLOC_LAST` value of a process outside the watched cgroups.
const UNWATCHED: u64 = u64::MAX;

/// tp_btf/rss_stat(struct mm_struct *mm, int member)
#[btf_tracepoint(function = "rss_stat")]
pub fn rss_stat(ctx: BtfTracePointContext) -> u32 {
    match try_rss_stat(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_rss_stat(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let member: i32 = ctx.arg(1);
    if member as u32 != koff!(mm_anonpages) {
        return Ok(());
    }
    // Unwatched processes end here, before any read of kernel memory.
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(last) = last_record(tgid)? else {
        return Ok(());
    };
    // Both pointers are BTF-typed: plain loads, no probe-read helper.
    let mm: u64 = ctx.arg(0);
    // The tracepoint's `curr`: the counter of the current task's mm.
    if btf_load::<u64>(current_task_btf(), koff!(task_mm))? != mm {
        return Ok(());
    }
    // percpu_counter.count (6.2+) or atomic_long_t, as get_mm_counter()
    // reads it. The offset uses the constant member, so the verifier knows
    // it. Verifiers of kernels with the atomic_long_t array (6.1) cannot walk
    // it through BTF ("not a struct"): those read it with the helper. The
    // stride is a constant, so the verifier sees only one of the two paths.
    let off = koff!(mm_rss_base) + koff!(mm_anonpages) * koff!(mm_rss_stride);
    let pages = if koff!(mm_rss_stride) == 8 {
        read::<i64>(mm, off)?
    } else {
        btf_load::<i64>(mm, off)?
    };
    let size = if pages < 0 {
        0
    } else {
        pages_to_bytes(pages as u64)
    };
    ramp(tgid, last, size)
}

/// tracepoint/kmem/rss_stat: fields per the kernel's format file.
#[tracepoint(category = "kmem", name = "rss_stat")]
pub fn kmem_rss_stat(ctx: TracePointContext) -> u32 {
    match try_kmem_rss_stat(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_kmem_rss_stat(ctx: &TracePointContext) -> ReadResult<()> {
    let base = ctx.as_ptr() as u64;
    if read::<i32>(base, tpl!(rss_member))? as u32 != koff!(mm_anonpages) {
        return Ok(());
    }
    if read::<u32>(base, tpl!(rss_curr))? != 1 {
        return Ok(());
    }
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let Some(last) = last_record(tgid)? else {
        return Ok(());
    };
    let size = read::<i64>(base, tpl!(rss_size))?;
    ramp(tgid, last, if size < 0 { 0 } else { size as u64 })
}

/// The anonymous size at the process's last `alloc` record (0 before the
/// first), or `None` for a process outside the watched cgroups.
#[inline(always)]
fn last_record(tgid: u32) -> ReadResult<Option<u64>> {
    let last = match ALLOC_LAST.get_ptr(tgid) {
        // SAFETY: value pointer from a successful lookup.
        Some(p) => unsafe { *p },
        None => {
            // First sighting of this process: the memcg walk, once.
            let css = task_memcg(current_task())?;
            let v = if is_watched(css) { 0 } else { UNWATCHED };
            let _ = ALLOC_LAST.insert(tgid, v, 0);
            v
        }
    };
    Ok((last != UNWATCHED).then_some(last))
}

/// The current process's anonymous memory is `size` bytes: record it if it
/// grew by a step since the last record.
#[inline(always)]
fn ramp(tgid: u32, last: u64, size: u64) -> ReadResult<()> {
    let step = setting!(alloc_step_bytes);
    if size < last.saturating_add(step) {
        if size.saturating_add(step) <= last {
            // Shrunk by a step: follow it down so regrowth is reported.
            let _ = ALLOC_LAST.insert(tgid, size, 0);
        }
        return Ok(());
    }
    let _ = ALLOC_LAST.insert(tgid, size, 0);
    let css = task_memcg(current_task())?;
    let ev = AllocEvent {
        hdr: header(EventKind::Alloc),
        task: current_info(css),
        anon_bytes: size,
    };
    output(&ev, NO_WAKE);
    Ok(())
}
