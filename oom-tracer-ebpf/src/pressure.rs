//! Reclaim at a watched memcg's limit: `vmscan/mm_vmscan_memcg_reclaim_begin`
//! and `_end` run around every reclaim a charge over the limit triggers
//! (`try_to_free_mem_cgroup_pages`). Summed per memcg of the reclaiming
//! task in `PRESSURE`, which userspace reads (`analyse/pressure.rs`).
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use oom_tracer_common::{OFFSET_ABSENT, PressureStat, ReclaimStart};

use crate::{
    kernel::{
        ReadResult, css_id_btf, current_task_btf, koff, memcg_watched, read_or_zero, task_memcg_btf,
    },
    maps::{PRESSURE, RECLAIMING},
};

/// tp_btf/mm_vmscan_memcg_reclaim_begin(int order, gfp_t gfp_flags)
#[btf_tracepoint(function = "mm_vmscan_memcg_reclaim_begin")]
pub(crate) fn mm_vmscan_memcg_reclaim_begin(_ctx: BtfTracePointContext) -> u32 {
    match try_begin() {
        Ok(()) | Err(_) => 0,
    }
}

fn try_begin() -> ReadResult<()> {
    // Plain loads and this CPU's verdict cache: no helper call for the
    // reclaims of unwatched memcgs.
    let css = task_memcg_btf(current_task_btf());
    if !memcg_watched(css) {
        return Ok(());
    }
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    let start = ReclaimStart {
        // SAFETY: helper without arguments.
        begin_ns: unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() },
        memcg_id: css_id_btf(css),
    };
    let _ = RECLAIMING.insert(tid, start, 0);
    Ok(())
}

/// tp_btf/mm_vmscan_memcg_reclaim_end(unsigned long nr_reclaimed)
#[btf_tracepoint(function = "mm_vmscan_memcg_reclaim_end")]
pub(crate) fn mm_vmscan_memcg_reclaim_end(ctx: BtfTracePointContext) -> u32 {
    match try_end(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_end(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let tid = aya_ebpf::helpers::bpf_get_current_pid_tgid() as u32;
    // Unwatched tasks never began: one lookup and out.
    let Some(start) = RECLAIMING.get_ptr(tid) else {
        return Ok(());
    };
    // SAFETY: value pointer from a successful lookup.
    let start = unsafe { *start };
    let _ = RECLAIMING.remove(tid);
    // SAFETY: helper without arguments.
    let now = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() };
    let reclaimed: u64 = ctx.arg(0);
    let hits = limit_hits();
    let id = start.memcg_id;
    match PRESSURE.get_ptr_mut(id) {
        // SAFETY: value pointer from a successful lookup; a racing update
        // from another CPU can lose an increment, which a rate tolerates.
        Some(p) => unsafe {
            (*p).reclaims += 1;
            (*p).stall_ns += now.saturating_sub(start.begin_ns);
            (*p).reclaimed_pages += reclaimed;
            (*p).fruitless += u64::from(reclaimed == 0);
            (*p).limit_hits = hits;
            (*p).last_ns = now;
        },
        None => {
            let p = PressureStat {
                reclaims: 1,
                stall_ns: now.saturating_sub(start.begin_ns),
                reclaimed_pages: reclaimed,
                fruitless: u64::from(reclaimed == 0),
                limit_hits: hits,
                last_ns: now,
            };
            let _ = PRESSURE.insert(id, p, 0);
        }
    }
    Ok(())
}

/// `memory_events[MEMCG_MAX]` of the current task's memcg: times its
/// limit was hit.
#[inline(always)]
fn limit_hits() -> u64 {
    let (events, max) = (koff!(memcg_events), koff!(memcg_event_max));
    if events == OFFSET_ABSENT || max == OFFSET_ABSENT {
        return 0;
    }
    // A helper read: `memory_events` lies beyond the css the BTF pointer is
    // typed as (see `oom.rs`).
    read_or_zero::<u64>(task_memcg_btf(current_task_btf()), events + max * 8)
}
