//! The ramp by kind: a watched memcg's page cache or tmpfs/shmem grew by
//! another step (`memcg/mod_memcg_lruvec_state`, 6.14+). Writing into a
//! tmpfs maps nothing into a process, so `rss_stat` never sees it: only
//! the memcg's own statistics do. The tracepoint runs on every page state
//! change in every memcg (hundreds of thousands a second in a build), so
//! the item is checked first (an argument: no helper call), then whether
//! the memcg is watched (the per-CPU verdict cache every hook shares), and
//! only then the per-memcg running sums, keyed by the css serial number
//! (never reused, where a freed memcg's address is).
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use oom_tracer_common::{
    EventKind, GROWTH_FILE, GROWTH_SHMEM, GrowthState, MemcgGrowthEvent, OFFSET_ABSENT,
};

use crate::{
    emit::{NO_WAKE, header, output},
    kernel::{
        ReadResult, btf_load, css_id, current_info, current_task, koff, memcg_watched,
        pages_to_bytes, read_or_zero, setting, task_memcg,
    },
    maps::GROWTH,
};

/// tp_btf/mod_memcg_lruvec_state(struct mem_cgroup *memcg, int item, int val)
#[btf_tracepoint(function = "mod_memcg_lruvec_state")]
pub(crate) fn mod_memcg_lruvec_state(ctx: BtfTracePointContext) -> u32 {
    match try_mod_memcg_lruvec_state(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_mod_memcg_lruvec_state(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let item: i32 = ctx.arg(1);
    let kind = if item as u32 == koff!(item_shmem) {
        GROWTH_SHMEM
    } else if item as u32 == koff!(item_file_pages) {
        GROWTH_FILE
    } else {
        return Ok(());
    };
    let memcg: u64 = ctx.arg(0);
    // `css` is the first member of `struct mem_cgroup`: the memcg pointer
    // is its css.
    if !memcg_watched(memcg) {
        return Ok(());
    }
    let serial = btf_load::<u64>(memcg, koff!(css_serial_nr))?;
    grew(memcg, serial, kind, ctx.arg::<i32>(2))
}

/// `val` pages more (or fewer) of `kind` in the watched `memcg` (css serial
/// number `serial`).
#[inline(never)]
fn grew(memcg: u64, serial: u64, kind: u32, val: i32) -> ReadResult<()> {
    let state = match GROWTH.get_ptr_mut(serial) {
        Some(s) => s,
        None => {
            let _ = GROWTH.insert(serial, GrowthState::default(), 0);
            GROWTH.get_ptr_mut(serial).ok_or(-1)?
        }
    };
    // SAFETY: value pointer from a successful lookup; racing CPUs may lose
    // an update of a ramp that is reported by steps anyway.
    let (net, reported) = unsafe {
        if kind == GROWTH_SHMEM {
            (*state).shmem_pages += i64::from(val);
            (
                (*state).shmem_pages,
                core::ptr::addr_of_mut!((*state).shmem_reported),
            )
        } else {
            // The kernel counts shmem as file pages too: the page cache
            // proper is the difference.
            (*state).file_pages += i64::from(val);
            (
                (*state).file_pages - (*state).shmem_pages,
                core::ptr::addr_of_mut!((*state).file_reported),
            )
        }
    };
    let net_bytes = pages_to_bytes(if net < 0 { 0 } else { net as u64 });
    // SAFETY: a field of the map value above.
    let last = unsafe { *reported };
    let last_bytes = pages_to_bytes(if last < 0 { 0 } else { last as u64 });
    let step = setting!(alloc_step_bytes);
    if net_bytes < last_bytes.saturating_add(step) {
        if net_bytes.saturating_add(step) <= last_bytes {
            // SAFETY: as above. Shrunk by a step: follow it down.
            unsafe { *reported = net };
        }
        return Ok(());
    }
    // SAFETY: as above.
    unsafe { *reported = net };
    let current = task_memcg(current_task()).unwrap_or(0);
    let ev = MemcgGrowthEvent {
        hdr: header(EventKind::MemcgGrowth),
        task: current_info(current),
        memcg_id: css_id(memcg),
        kind,
        _pad: 0,
        bytes: net_bytes,
        anon_rss_bytes: current_anon_bytes(),
    };
    output(&ev, NO_WAKE);
    Ok(())
}

/// The current process's anonymous memory, bytes (0 where unreadable).
#[inline(always)]
fn current_anon_bytes() -> u64 {
    let mm: u64 = read_or_zero(current_task(), koff!(task_mm));
    let (base, stride) = (koff!(mm_rss_base), koff!(mm_rss_stride));
    if mm == 0 || base == OFFSET_ABSENT || stride == OFFSET_ABSENT {
        return 0;
    }
    let pages = read_or_zero::<i64>(mm, base + koff!(mm_anonpages) * stride);
    pages_to_bytes(if pages < 0 { 0 } else { pages as u64 })
}
