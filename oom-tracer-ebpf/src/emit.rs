//! Writing records into the ring buffer, and counting what could not be written.
use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    maps::ring_buf::RingBufEntry,
};
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

/// Reserves a `T` in the ring buffer and writes zeroes over all of it; a
/// full buffer is counted (the caller says what was lost). As `reserve` on
/// the `ebpflint` branch: a field a program forgets ships zeroes, never the
/// bytes an earlier record left in the ring.
#[inline(always)]
pub fn reserve<T: 'static>() -> Option<RingBufEntry<T>> {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        count(Counter::RingbufFull);
        return None;
    };
    zero(entry.as_mut_ptr());
    Some(entry)
}

/// Writes zeroes over the `T` at `p`, eight bytes at a time. The stores
/// are volatile so that LLVM keeps them as stores: as a `memset` of more
/// than 1 KiB it would call aya-ebpf's byte-at-a-time loop instead.
#[inline(always)]
fn zero<T>(p: *mut T) {
    const {
        assert!(size_of::<T>().is_multiple_of(8) && align_of::<T>() == 8);
    }
    let words = p.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: `p` is a reserved record of `size_of::<T>()` bytes, 8-byte
        // aligned (the ring buffer aligns every record to 8): word `i` lies
        // inside it.
        unsafe { words.add(i).write_volatile(0) };
        i += 1;
    }
}
