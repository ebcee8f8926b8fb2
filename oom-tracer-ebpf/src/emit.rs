//! Writing records into the ring buffer, and counting what could not be written.
use aya_ebpf::bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use oom_tracer_common::{Counter, EventHeader, EventKind};

use crate::maps::{COUNTERS, EVENTS};

/// Wake the reader now: OOM kills must reach userspace at once.
pub const WAKE: u64 = BPF_RB_FORCE_WAKEUP as u64;
/// Bulk records: userspace drains them on its own schedule.
pub const NO_WAKE: u64 = BPF_RB_NO_WAKEUP as u64;

#[inline(always)]
pub fn header(kind: EventKind) -> EventHeader {
    // SAFETY: helpers without arguments.
    let boot_ns = unsafe { aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns() };
    let cpu = unsafe { aya_ebpf::helpers::generated::bpf_get_smp_processor_id() };
    EventHeader {
        kind: kind as u32,
        cpu,
        boot_ns,
    }
}

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// Copies `ev` into the ring buffer; a full buffer is counted, not fatal.
#[inline(always)]
pub fn output<T>(ev: &T, flags: u64) -> bool {
    if EVENTS.output::<T>(ev, flags).is_err() {
        count(Counter::RingbufFull);
        return false;
    }
    true
}
