//! A memory cgroup's statistics, copied raw into a record: what filled it
//! at the kill (`mark_victim`), and the startup check of their layout
//! (`signal_generate`, on a task's request). Userspace knows which entry
//! of `state[]` is which item on this kernel (`bpf/memstat.rs`).
use oom_tracer_common::{
    MEMCG_EVENTS_MAX, MemcgStats, OFFSET_ABSENT, STATE_MAX, STATS_EVENTS, STATS_STATE,
};

use crate::kernel::{css_id, koff, read_or_zero};

/// Copies `count` bytes at `src` into `dst`; zeroes where the read fails.
#[inline(always)]
fn copy(dst: *mut u8, count: u32, src: u64) -> bool {
    // SAFETY: `dst` points into a reserved ring-buffer record with room for
    // `count` bytes; the helper checks `src` and zero-fills on failure.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            dst.cast(),
            count,
            src as *const core::ffi::c_void,
        )
    };
    rc == 0
}

/// Fills `dst` with the statistics of the memcg `css` (a `mem_cgroup *`:
/// it starts with its css).
///
/// # Safety
/// `dst` points to a `MemcgStats` inside a reserved ring-buffer record,
/// zeroed (`emit::reserve`): what is not read here stays zero.
#[inline(always)]
pub(crate) unsafe fn read_memcg_stats(css: u64, dst: *mut MemcgStats) {
    // SAFETY: the caller's contract; a plain field write.
    unsafe { (*dst).memcg_id = css_id(css) };
    let vm_off = koff!(memcg_vmstats);
    let state_off = koff!(vmstats_state);
    if css != 0 && vm_off != OFFSET_ABSENT && state_off != OFFSET_ABSENT {
        // `vmstats` is a pointer on recent kernels, embedded before.
        let vmstats = if koff!(memcg_vmstats_is_ptr) != 0 {
            read_or_zero::<u64>(css, vm_off)
        } else {
            css + vm_off as u64
        };
        if vmstats != 0 {
            // SAFETY: `state` is `STATE_MAX` i64s inside `*dst`.
            let state = unsafe { core::ptr::addr_of_mut!((*dst).state) };
            // Always STATE_MAX entries (a constant size for the verifier):
            // past the kernel's array lie its other counters, not garbage
            // memory; userspace reads only `state_len` entries.
            let ok = copy(
                state.cast(),
                (STATE_MAX * 8) as u32,
                vmstats + state_off as u64,
            );
            let len = koff!(vmstats_state_len);
            // SAFETY: plain field writes into `*dst`.
            unsafe {
                (*dst).state_len = if len > STATE_MAX as u32 {
                    STATE_MAX as u32
                } else {
                    len
                };
                (*dst).pending_updates =
                    u64::from(read_or_zero::<u32>(vmstats, koff!(vmstats_updates)));
                if ok {
                    (*dst).flags |= STATS_STATE;
                }
            }
        }
    }
    let ev_off = koff!(memcg_events);
    if css != 0 && ev_off != OFFSET_ABSENT {
        // SAFETY: `events` is `MEMCG_EVENTS_MAX` u64s inside `*dst`.
        let events = unsafe { core::ptr::addr_of_mut!((*dst).events) };
        if copy(
            events.cast(),
            (MEMCG_EVENTS_MAX * 8) as u32,
            css + ev_off as u64,
        ) {
            // SAFETY: plain field write into `*dst`.
            unsafe { (*dst).flags |= STATS_EVENTS };
        }
    }
}
