//! Reading kernel structs through the offsets userspace found in BTF.
//!
//! aya-ebpf has no CO-RE relocations, so every offset comes from the
//! read-only global `KOFFS`, filled at load time from the running kernel's
//! BTF. The verifier sees them as constants once the `.rodata` map is frozen.
use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
};
use oom_tracer_common::{
    COMM_LEN, GEN_WATCH, KernelOffsets, MAX_CGROUP_DEPTH, OFFSET_ABSENT, Settings, TaskInfo,
    TracepointLayout, WATCH_BLOOM, watch_bloom_bit,
};

use crate::maps::{CACHE_SLOTS, MEMCG_CACHE, SHARED, WATCHED};

#[unsafe(no_mangle)]
pub(crate) static KOFFS: KernelOffsets = KernelOffsets::ABSENT;
#[unsafe(no_mangle)]
pub(crate) static TPL: TracepointLayout = TracepointLayout::ABSENT;
#[unsafe(no_mangle)]
pub(crate) static SETTINGS: Settings = Settings::DEFAULT;

/// A kernel offset, read so that the compiler cannot fold the default in.
macro_rules! koff {
    ($f:ident) => {
        $crate::kernel::global(core::ptr::addr_of!($crate::kernel::KOFFS.$f))
    };
}
/// A tracepoint field offset.
macro_rules! tpl {
    ($f:ident) => {
        $crate::kernel::global(core::ptr::addr_of!($crate::kernel::TPL.$f))
    };
}
/// A setting.
macro_rules! setting {
    ($f:ident) => {
        $crate::kernel::global(core::ptr::addr_of!($crate::kernel::SETTINGS.$f))
    };
}
/// A field of one of the read-only globals above, read so that the
/// compiler cannot fold the default in (userspace fills them at load).
#[inline(always)]
pub(crate) fn global<T: Copy>(field: *const T) -> T {
    // SAFETY: `field` points into one of the statics above, which are
    // plain integers, always initialised and never written by the programs.
    unsafe { core::ptr::read_volatile(field) }
}

pub(crate) use koff;
pub(crate) use setting;
pub(crate) use tpl;

/// Error of a kernel read: absent offset or failed probe read.
pub(crate) type ReadResult<T> = Result<T, i64>;

/// Reads a `T` at `base + off`.
#[inline(always)]
pub(crate) fn read<T>(base: u64, off: u32) -> ReadResult<T> {
    if off == OFFSET_ABSENT || base == 0 {
        return Err(-2);
    }
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.map_err(|e| e as i64)
}

/// Loads a `T` at `base + off` from a BTF-typed pointer (a tp_btf argument,
/// or `bpf_get_current_task_btf()`): a plain load, with no helper call. The
/// verifier checks `off` against the kernel's BTF (it is a constant from the
/// frozen `.rodata`) and the JIT guards the load against faults.
#[inline(always)]
pub(crate) fn btf_load<T: Copy>(base: u64, off: u32) -> ReadResult<T> {
    if off == OFFSET_ABSENT || base == 0 {
        return Err(-2);
    }
    // SAFETY: `base` is a BTF pointer; the kernel turns the load into a
    // guarded one (BPF_PROBE_MEM) and refuses the program if `off` does not
    // land on a field of type `T`'s size.
    Ok(unsafe { core::ptr::read_volatile((base as *const u8).add(off as usize) as *const T) })
}

/// The current task as a BTF pointer (loads through it need no helper).
#[inline(always)]
pub(crate) fn current_task_btf() -> u64 {
    // SAFETY: helper without arguments; its result is never null.
    unsafe { aya_ebpf::helpers::generated::bpf_get_current_task_btf() as u64 }
}

/// Reads a `T` at `base + off`, or zeroes where the read fails (an absent
/// offset, a null base, a faulting address). No branch on the helper's
/// result: walks over ancestors use it so that old verifiers (6.1) do not
/// split every step into an ok and an error path.
#[inline(always)]
pub(crate) fn read_or_zero<T: Copy>(base: u64, off: u32) -> T {
    let mut v = core::mem::MaybeUninit::<T>::zeroed();
    if off != OFFSET_ABSENT {
        // SAFETY: the helper writes at most size_of::<T>() bytes into `v`
        // and zero-fills it when the read fails; `v` starts zeroed too.
        unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                v.as_mut_ptr().cast(),
                size_of::<T>() as u32,
                (base + off as u64) as *const core::ffi::c_void,
            );
        }
    }
    // SAFETY: zeroed, then possibly overwritten by the helper; T is plain data.
    unsafe { v.assume_init() }
}

/// The current task's `task_struct` pointer.
#[inline(always)]
pub(crate) fn current_task() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_current_task() }
}

/// `task->cgroups->subsys[memory_cgrp_id]`: the task's memcg css
/// (`struct mem_cgroup` starts with its css).
#[inline(always)]
pub(crate) fn task_memcg(task: u64) -> ReadResult<u64> {
    let cset: u64 = read(task, koff!(task_cgroups))?;
    let css: u64 = read(cset, koff!(css_set_memory))?;
    if css == 0 { Err(-2) } else { Ok(css) }
}

/// `css->cgroup->kn->id`: the cgroup id userspace sees as the directory
/// inode; 0 where any step of the chain cannot be read (no branches).
#[inline(always)]
pub(crate) fn css_id(css: u64) -> u64 {
    let cgrp: u64 = read_or_zero(css, koff!(css_cgroup));
    let kn: u64 = read_or_zero(cgrp, koff!(cgroup_kn));
    read_or_zero(kn, koff!(kn_id))
}

#[inline(always)]
pub(crate) fn css_parent(css: u64) -> u64 {
    read_or_zero(css, koff!(css_parent))
}

/// Whether the cgroup `id` is in `WATCHED`. The bloom word rejects most
/// ids without a hash lookup.
#[inline(always)]
pub(crate) fn is_watched_id(id: u64) -> bool {
    shared(WATCH_BLOOM) & watch_bloom_bit(id) != 0 && WATCHED.get_ptr(id).is_some()
}

/// Whether the memcg `css` (read with helpers), or one of its ancestors, is watched.
#[inline(always)]
pub(crate) fn is_watched(css: u64) -> bool {
    if setting!(watch_all) != 0 {
        return true;
    }
    let serial = read_or_zero::<u64>(css, koff!(css_serial_nr));
    cached_verdict(serial, || {
        let mut css = css;
        for _ in 0..MAX_CGROUP_DEPTH {
            if css == 0 {
                return false;
            }
            if is_watched_id(css_id(css)) {
                return true;
            }
            css = css_parent(css);
        }
        false
    })
}

/// Whether an OOM kill or SIGKILL in the memcg `css` is recorded.
#[inline(always)]
pub(crate) fn is_oom_watched(css: u64) -> bool {
    setting!(oom_all) != 0 || is_watched(css)
}

/// `SHARED[idx]`: a generation counter or the bloom word.
#[inline(always)]
pub(crate) fn shared(idx: u32) -> u64 {
    match SHARED.get_ptr(idx) {
        // SAFETY: value pointer from a successful lookup.
        Some(p) => unsafe { core::ptr::read_volatile(p) },
        None => 0,
    }
}

/// Bumps the generation `SHARED[idx]` (an atomic add) after a change that
/// cached copies must not outlive. The change is made first: whoever reads
/// the new generation sees it.
#[inline(always)]
pub(crate) fn bump(idx: u32) {
    if let Some(p) = SHARED.get_ptr_mut(idx) {
        // SAFETY: `p` points to a map value.
        unsafe { atomic_add(p, 1) };
    }
}

/// `*p += v` as one BPF_ATOMIC add (no result).
///
/// # Safety
/// `p` points to a map value.
#[inline(always)]
pub(crate) unsafe fn atomic_add(p: *mut u64, v: u64) {
    #[cfg(target_arch = "bpf")]
    // SAFETY: the caller's contract; BPF_ATOMIC add, no result.
    unsafe {
        core::arch::asm!("lock *(u64 *)({p} + 0) += {v}", p = in(reg) p, v = in(reg) v);
    }
    #[cfg(not(target_arch = "bpf"))]
    // SAFETY: as above (only the BPF build runs).
    unsafe {
        *p += v;
    }
}

/// Whether the memcg with css `serial_nr` `serial` is watched, from this
/// CPU's cache (`MEMCG_CACHE`), else from `walk`, which then fills it. A
/// serial is never reused, so an entry is stale only when `WATCHED`
/// changed since (`SHARED[GEN_WATCH]`). The key is written last, so a
/// program that preempts a fill reads a miss, not half an entry.
#[inline(always)]
fn cached_verdict(serial: u64, walk: impl FnOnce() -> bool) -> bool {
    if serial == 0 {
        return walk();
    }
    let tag = shared(GEN_WATCH) << 1;
    let Some(e) = MEMCG_CACHE.get_ptr_mut((serial & u64::from(CACHE_SLOTS - 1)) as u32) else {
        return walk();
    };
    // SAFETY: this CPU's slot of a per-CPU array.
    unsafe {
        if core::ptr::read_volatile(&(*e).serial) == serial {
            let t = core::ptr::read_volatile(&(*e).tag);
            if t | 1 == tag | 1 {
                return t & 1 != 0;
            }
        }
        let watched = walk();
        core::ptr::write_volatile(&mut (*e).serial, 0);
        core::ptr::write_volatile(&mut (*e).tag, tag | u64::from(watched));
        core::ptr::write_volatile(&mut (*e).serial, serial);
        watched
    }
}

/// `task->cgroups->subsys[memory_cgrp_id]` through BTF pointers (plain
/// loads): the memcg css, or 0. `task` must be a BTF pointer.
#[inline(always)]
pub(crate) fn task_memcg_btf(task: u64) -> u64 {
    match btf_load::<u64>(task, koff!(task_cgroups)) {
        Ok(cset) => btf_load::<u64>(cset, koff!(css_set_memory)).unwrap_or(0),
        Err(_) => 0,
    }
}

/// `css->cgroup->kn->id` through BTF pointers; 0 where unknown.
#[inline(always)]
pub(crate) fn css_id_btf(css: u64) -> u64 {
    let cgrp = btf_load::<u64>(css, koff!(css_cgroup)).unwrap_or(0);
    let kn = btf_load::<u64>(cgrp, koff!(cgroup_kn)).unwrap_or(0);
    btf_load::<u64>(kn, koff!(kn_id)).unwrap_or(0)
}

/// Whether the memcg `css` (a BTF pointer), or one of its ancestors, is
/// watched: this CPU's cached verdict, the ancestor walk on a miss.
#[inline(always)]
pub(crate) fn memcg_watched(css: u64) -> bool {
    if css == 0 {
        return false;
    }
    if setting!(watch_all) != 0 {
        return true;
    }
    let serial = btf_load::<u64>(css, koff!(css_serial_nr)).unwrap_or(0);
    cached_verdict(serial, || walk_watched_btf(css) != 0)
}

/// The ancestor walk of `memcg_watched`, a subprogram: it runs on a cache
/// miss only, and keeps the callers' common path short.
#[inline(never)]
fn walk_watched_btf(css: u64) -> u64 {
    let mut css = css;
    for _ in 0..MAX_CGROUP_DEPTH {
        if css == 0 {
            return 0;
        }
        if is_watched_id(css_id_btf(css)) {
            return 1;
        }
        css = btf_load::<u64>(css, koff!(css_parent)).unwrap_or(0);
    }
    0
}

/// Whether an OOM kill or SIGKILL in the memcg `css` (a BTF pointer) is recorded.
#[inline(always)]
pub(crate) fn memcg_oom_watched(css: u64) -> bool {
    css != 0 && (setting!(oom_all) != 0 || memcg_watched(css))
}

/// pid, tgid, comm and memcg of a task, through BTF pointers.
#[inline(always)]
pub(crate) fn task_info_btf(task: u64, css: u64) -> TaskInfo {
    TaskInfo {
        pid: btf_load::<i32>(task, koff!(task_pid)).unwrap_or(0) as u32,
        tgid: btf_load::<i32>(task, koff!(task_tgid)).unwrap_or(0) as u32,
        memcg_id: css_id_btf(css),
        // A helper read: the verifier types a wide load from a char array badly.
        comm: read_or_zero::<[u8; COMM_LEN]>(task, koff!(task_comm)),
    }
}

/// pid, tgid, comm and memcg of the current task, through the cheap helpers.
#[inline(always)]
pub(crate) fn current_info(css: u64) -> TaskInfo {
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    TaskInfo {
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        memcg_id: css_id(css),
        comm: aya_ebpf::helpers::bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    }
}

/// `pages << page_shift`, saturating. (BPF has no 128-bit multiply, so no
/// `saturating_mul`.)
#[inline(always)]
pub(crate) fn pages_to_bytes(pages: u64) -> u64 {
    let shift = setting!(page_shift) & 63;
    if shift != 0 && pages >> (64 - shift) != 0 {
        u64::MAX
    } else {
        pages << shift
    }
}

/// Reads a `__data_loc char[]` field: the low 16 bits of the u32 at `off`
/// are the string's offset in the record.
#[inline(always)]
pub(crate) fn read_data_loc(base: u64, off: u32, dst: &mut [u8]) -> ReadResult<()> {
    let loc = read::<u32>(base, off)?;
    let at = base + (loc & 0xffff) as u64;
    // SAFETY: the helper bounds the read by dst's length.
    unsafe { bpf_probe_read_kernel_str_bytes(at as *const u8, dst) }.map_err(|e| e as i64)?;
    Ok(())
}
