//! The allocation ramp: `kmem/rss_stat`, filtered in the kernel.
//!
//! This is the hottest hook (about 80 calls per fork+exec anywhere on the
//! box), so the cheap checks run first and most calls end without a helper
//! call or a hash lookup:
//! 1. the counter is MM_ANONPAGES (an argument);
//! 2. the current task's memcg is watched: its css `serial_nr` (three
//!    plain loads from `current`) against this CPU's verdict cache, with
//!    the ancestor walk only on a miss;
//! 3. the counter belongs to the current task's mm (the tracepoint's `curr`);
//! 4. the process's size at its last record, from this CPU's cache of
//!    `ALLOC_LAST`, with the hash lookup only on a miss;
//! 5. growth by a step since then.
//!
//! A process's ramp starts at 0 at its exec. A process first seen in a
//! watched memcg without an exec there (a runtime's forked helper moved in,
//! a fork child, one running before the tracer started) starts at the size
//! it has then: only its growth is reported.
//!
//! Two programs, one attached: `rss_stat` (tp_btf, 6.2+: the mm and the
//! member are arguments) and `kmem_rss_stat` (the classic tracepoint,
//! fields read by offset) where tp_btf is not available.
use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use oom_tracer_common::{AllocEvent, EventKind, GEN_PROC};

use crate::{
    emit::{NO_WAKE, WAKE, header, output},
    kernel::{
        ReadResult, btf_load, bump, current_info, current_task, current_task_btf, is_watched, koff,
        memcg_watched, pages_to_bytes, read, read_or_zero, setting, shared, task_memcg,
        task_memcg_btf, tpl,
    },
    maps::{ALLOC_LAST, CACHE_SLOTS, PROC_CACHE, ProcLast},
    stacks,
};

/// tp_btf/rss_stat(struct mm_struct *mm, int member)
#[btf_tracepoint(function = "rss_stat")]
pub(crate) fn rss_stat(ctx: BtfTracePointContext) -> u32 {
    match try_rss_stat(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_rss_stat(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let member: i32 = ctx.arg(1);
    if member as u32 != koff!(mm_anonpages) {
        return Ok(());
    }
    // Unwatched processes end here: plain loads and this CPU's cache.
    let task = current_task_btf();
    let css = task_memcg_btf(task);
    if !memcg_watched(css) {
        return Ok(());
    }
    let _ = watched_rss_stat(ctx.as_ptr(), ctx.arg(0), task, css);
    Ok(())
}

/// `rss_stat` in a watched memcg: a subprogram, so that the common path
/// above stays short (it runs for every process on the node).
#[inline(never)]
fn watched_rss_stat(ctx: *mut c_void, mm: u64, task: u64, css: u64) -> u64 {
    match try_watched_rss_stat(ctx, mm, task, css) {
        Ok(()) | Err(_) => 0,
    }
}

#[inline(always)]
fn try_watched_rss_stat(ctx: *mut c_void, mm: u64, task: u64, css: u64) -> ReadResult<()> {
    // The tracepoint's `curr`: the counter of the current task's mm.
    if btf_load::<u64>(task, koff!(task_mm))? != mm {
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
    let tgid = btf_load::<i32>(task, koff!(task_tgid))? as u32;
    ramp(ctx, tgid, task_image_stamp_btf(task), size, css);
    Ok(())
}

/// Tells one process image from another: the leader's start time (a reused
/// pid gets another) and the exec count (each exec gets another).
#[inline(always)]
pub(crate) fn image_stamp(leader_start_ns: u64, exec_id: u32) -> u64 {
    leader_start_ns ^ (u64::from(exec_id) << 48)
}

/// [`image_stamp`] of `task` (a BTF pointer). `rss_stat` and `exec` must
/// compute it alike, or the `PROC_CACHE` entries they share miss.
#[inline(always)]
pub(crate) fn task_image_stamp_btf(task: u64) -> u64 {
    let leader = btf_load::<u64>(task, koff!(task_group_leader)).unwrap_or(0);
    image_stamp(
        btf_load::<u64>(leader, koff!(task_start_time)).unwrap_or(0),
        btf_load::<u32>(task, koff!(task_self_exec_id)).unwrap_or(0),
    )
}

/// tracepoint/kmem/rss_stat: fields per the kernel's format file.
#[tracepoint(category = "kmem", name = "rss_stat")]
pub(crate) fn kmem_rss_stat(ctx: TracePointContext) -> u32 {
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
    let task = current_task();
    let css = task_memcg(task)?;
    if !is_watched(css) {
        return Ok(());
    }
    let size = read::<i64>(base, tpl!(rss_size))?;
    let tgid = (aya_ebpf::helpers::bpf_get_current_pid_tgid() >> 32) as u32;
    let leader = read_or_zero::<u64>(task, koff!(task_group_leader));
    let stamp = image_stamp(
        read_or_zero::<u64>(leader, koff!(task_start_time)),
        read_or_zero::<u32>(task, koff!(task_self_exec_id)),
    );
    let size = if size < 0 { 0 } else { size as u64 };
    ramp(ctx.as_ptr(), tgid, stamp, size, css);
    Ok(())
}

/// A watched process's anonymous memory is `size` bytes: record it if it
/// grew by a step since the last record; follow it down if it shrank by one.
///
/// `ALLOC_LAST` is read through this CPU's cache (`PROC_CACHE`), whose
/// entries hold the process image's `stamp` (an exec or a reused pid makes
/// them miss) and the generation `GEN_PROC`, which a record bumps (another
/// thread of the process, on another CPU, may have cached the old size).
/// `css` is the process's memcg. A growth step's bytes go to its user
/// stack's sum where call sites are on (`ctx`: the program's context).
#[inline(always)]
fn ramp(ctx: *mut c_void, tgid: u32, stamp: u64, size: u64, css: u64) {
    let Some(c) = PROC_CACHE.get_ptr_mut(tgid & (CACHE_SLOTS - 1)) else {
        return;
    };
    let key = (shared(GEN_PROC) << 32) | u64::from(tgid);
    // SAFETY: this CPU's slot of a per-CPU array. The key is written last,
    // so a program that preempts a fill reads a miss, not half an entry.
    let last = unsafe {
        if core::ptr::read_volatile(&(*c).key) == key
            && core::ptr::read_volatile(&(*c).stamp) == stamp
        {
            core::ptr::read_volatile(&(*c).last)
        } else {
            let last = match ALLOC_LAST.get_ptr(tgid) {
                // SAFETY: value pointer from a successful lookup.
                Some(p) => *p,
                None => {
                    // First sighting without an exec here: start at its size.
                    let _ = ALLOC_LAST.insert(tgid, size, 0);
                    size
                }
            };
            fill(c, key, stamp, last);
            last
        }
    };
    let step = setting!(alloc_step_bytes);
    let grew = size >= last.saturating_add(step);
    if !grew && size.saturating_add(step) > last {
        return;
    }
    // A record, or shrunk by a step (followed down so regrowth is
    // reported): the new size for every CPU, then this CPU's copy.
    let _ = ALLOC_LAST.insert(tgid, size, 0);
    bump(GEN_PROC);
    fill(c, (shared(GEN_PROC) << 32) | u64::from(tgid), stamp, size);
    if !grew {
        return;
    }
    // With call sites on, the step's bytes go to its user stack's sum; the
    // record names the stack, so userspace knows the sums it will read.
    let stack_id = if stacks::enabled() {
        stacks::stack_id(ctx, true)
    } else {
        0
    };
    let ev = AllocEvent {
        hdr: header(EventKind::Alloc),
        task: current_info(css),
        anon_bytes: size,
        stack_id,
        _pad: 0,
    };
    if stacks::enabled() {
        stacks::add_site(stack_id, ev.task.memcg_id, tgid, size - last);
    }
    // With call sites on, a process's first step since its exec wakes the
    // reader (once per process): userspace reads its mappings while it
    // lives, not when its kill has it exiting (a process that dies within
    // one drain interval would otherwise be read only then, behind the
    // OOM reaper, and its kill wait for it).
    let first = stacks::enabled() && last < step;
    output(&ev, if first { WAKE } else { NO_WAKE });
}

/// Writes a `PROC_CACHE` entry, key last (see `ramp`).
#[inline(always)]
pub(crate) fn fill(c: *mut ProcLast, key: u64, stamp: u64, last: u64) {
    // SAFETY: `c` is this CPU's slot of a per-CPU array.
    unsafe {
        core::ptr::write_volatile(&mut (*c).key, 0);
        core::ptr::write_volatile(&mut (*c).stamp, stamp);
        core::ptr::write_volatile(&mut (*c).last, last);
        core::ptr::write_volatile(&mut (*c).key, key);
    }
}

/// After an exec: the process's ramp starts at 0, in `ALLOC_LAST` and in
/// this CPU's cache (which the image's first calls, before the exec
/// tracepoint, may have filled with the old size).
#[inline(always)]
pub(crate) fn restart_ramp(tgid: u32, stamp: u64) {
    let _ = ALLOC_LAST.insert(tgid, 0u64, 0);
    if let Some(c) = PROC_CACHE.get_ptr_mut(tgid & (CACHE_SLOTS - 1)) {
        fill(c, (shared(GEN_PROC) << 32) | u64::from(tgid), stamp, 0);
    }
}
