//! Stacks: the trigger's at an OOM kill, and the user stack of each growth
//! step of a watched process, summed per (memcg, stack) in `CALLSITES`.
//!
//! Only when `SETTINGS.callsites` is set (a constant to the verifier: with
//! it off, the helper calls are dead code and never checked). The kernel
//! walks frame pointers: binaries built without them give one or two frames,
//! which userspace reports as shallow.
use core::ffi::c_void;

use aya_ebpf::{bindings::BPF_F_USER_STACK, helpers::generated::bpf_get_stackid};
use oom_tracer_common::{CallsiteKey, Counter};

use crate::{
    emit::count,
    kernel::setting,
    maps::{CALLSITES, STACKS},
};

/// Whether call sites are on (userspace's choice, frozen at load).
#[inline(always)]
pub(crate) fn enabled() -> bool {
    setting!(callsites) != 0
}

/// The id in `STACKS` of the current stack (`user`: the task's user stack,
/// else the kernel stack), or the helper's negative errno.
#[inline(always)]
pub(crate) fn stack_id(ctx: *mut c_void, user: bool) -> i32 {
    let flags = if user { u64::from(BPF_F_USER_STACK) } else { 0 };
    // SAFETY: `ctx` is the program's context; `STACKS` is a stack map.
    let id = unsafe { bpf_get_stackid(ctx, core::ptr::addr_of!(STACKS).cast_mut().cast(), flags) };
    id as i32
}

/// Adds `bytes` to the sum of user stack `id` (from [`stack_id`]; a
/// negative one is counted lost) of process `tgid` in `memcg_id`.
#[inline(always)]
pub(crate) fn add_site(id: i32, memcg_id: u64, tgid: u32, bytes: u64) {
    if id < 0 {
        count(Counter::StackLost);
        return;
    }
    let key = CallsiteKey {
        memcg_id,
        stack_id: id as u32,
        tgid,
    };
    match CALLSITES.get_ptr_mut(key) {
        // SAFETY: a value pointer from a successful lookup; an atomic add,
        // as threads of one process on two CPUs may grow the same site.
        Some(sum) => unsafe { crate::kernel::atomic_add(sum, bytes) },
        None => {
            let _ = CALLSITES.insert(key, bytes, 0);
        }
    }
}
