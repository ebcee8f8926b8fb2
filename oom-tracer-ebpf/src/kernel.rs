//! Reading kernel structs through the offsets userspace found in BTF.
//!
//! aya-ebpf has no CO-RE relocations, so every offset comes from the
//! read-only global `KOFFS`, filled at load time from the running kernel's
//! BTF. The verifier sees them as constants once the `.rodata` map is frozen.
use aya_ebpf::helpers::{
    bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
};
use oom_tracer_common::{
    COMM_LEN, KernelOffsets, MAX_CGROUP_DEPTH, OFFSET_ABSENT, Settings, TaskInfo, TracepointLayout,
};

use crate::maps::WATCHED;

#[unsafe(no_mangle)]
pub(crate) static KOFFS: KernelOffsets = KernelOffsets::ABSENT;
#[unsafe(no_mangle)]
pub(crate) static TPL: TracepointLayout = TracepointLayout::ABSENT;
#[unsafe(no_mangle)]
pub(crate) static SETTINGS: Settings = Settings::DEFAULT;

/// A kernel offset, read so that the compiler cannot fold the default in.
macro_rules! koff {
    ($f:ident) => {
        // SAFETY: reading a global of plain integers.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::kernel::KOFFS.$f)) }
    };
}
/// A tracepoint field offset.
macro_rules! tpl {
    ($f:ident) => {
        // SAFETY: reading a global of plain integers.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::kernel::TPL.$f)) }
    };
}
/// A setting.
macro_rules! setting {
    ($f:ident) => {
        // SAFETY: reading a global of plain integers.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::kernel::SETTINGS.$f)) }
    };
}
pub(crate) use koff;
pub(crate) use setting;
pub(crate) use tpl;

/// Error of a kernel read: absent offset or failed probe read.
pub type ReadResult<T> = Result<T, i64>;

/// Reads a `T` at `base + off`.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> ReadResult<T> {
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
pub fn btf_load<T: Copy>(base: u64, off: u32) -> ReadResult<T> {
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
pub fn current_task_btf() -> u64 {
    // SAFETY: helper without arguments; its result is never null.
    unsafe { aya_ebpf::helpers::generated::bpf_get_current_task_btf() as u64 }
}

/// Reads a `T` at `base + off`, or zeroes where the read fails (an absent
/// offset, a null base, a faulting address). No branch on the helper's
/// result: walks over ancestors use it so that old verifiers (6.1) do not
/// split every step into an ok and an error path.
#[inline(always)]
pub fn read_or_zero<T: Copy>(base: u64, off: u32) -> T {
    let mut v = core::mem::MaybeUninit::<T>::zeroed();
    if off != OFFSET_ABSENT {
        // SAFETY: the helper writes at most size_of::<T>() bytes into `v`
        // and zero-fills it when the read fails; `v` starts zeroed too.
        unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                v.as_mut_ptr().cast(),
                core::mem::size_of::<T>() as u32,
                (base + off as u64) as *const core::ffi::c_void,
            );
        }
    }
    // SAFETY: zeroed, then possibly overwritten by the helper; T is plain data.
    unsafe { v.assume_init() }
}

/// The current task's `task_struct` pointer.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_get_current_task() }
}

/// `task->cgroups->subsys[memory_cgrp_id]`: the task's memcg css
/// (`struct mem_cgroup` starts with its css).
#[inline(always)]
pub fn task_memcg(task: u64) -> ReadResult<u64> {
    let cset: u64 = read(task, koff!(task_cgroups))?;
    let css: u64 = read(cset, koff!(css_set_memory))?;
    if css == 0 { Err(-2) } else { Ok(css) }
}

/// `css->cgroup->kn->id`: the cgroup id userspace sees as the directory
/// inode; 0 where any step of the chain cannot be read (no branches).
#[inline(always)]
pub fn css_id(css: u64) -> u64 {
    let cgrp: u64 = read_or_zero(css, koff!(css_cgroup));
    let kn: u64 = read_or_zero(cgrp, koff!(cgroup_kn));
    read_or_zero(kn, koff!(kn_id))
}

#[inline(always)]
pub fn css_parent(css: u64) -> u64 {
    read_or_zero(css, koff!(css_parent))
}

/// Whether the memcg `css`, or one of its ancestors, is watched.
#[inline(always)]
pub fn is_watched(css: u64) -> bool {
    if setting!(watch_all) != 0 {
        return true;
    }
    let mut css = css;
    for _ in 0..MAX_CGROUP_DEPTH {
        if css == 0 {
            return false;
        }
        if WATCHED.get_ptr(css_id(css)).is_some() {
            return true;
        }
        css = css_parent(css);
    }
    false
}

/// Whether an OOM kill or SIGKILL in the memcg `css` is recorded.
#[inline(always)]
pub fn is_oom_watched(css: u64) -> bool {
    setting!(oom_all) != 0 || is_watched(css)
}

/// pid, tgid, comm and memcg of a task read through its pointer.
#[inline(always)]
pub fn task_info(task: u64, css: u64) -> TaskInfo {
    let mut t = TaskInfo {
        pid: read_or_zero::<u32>(task, koff!(task_pid)),
        tgid: read_or_zero::<u32>(task, koff!(task_tgid)),
        memcg_id: css_id(css),
        comm: [0; COMM_LEN],
    };
    if let Ok(comm) = read::<[u8; COMM_LEN]>(task, koff!(task_comm)) {
        t.comm = comm;
    }
    t
}

/// pid, tgid, comm and memcg of the current task, through the cheap helpers.
#[inline(always)]
pub fn current_info(css: u64) -> TaskInfo {
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
pub fn pages_to_bytes(pages: u64) -> u64 {
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
pub fn read_data_loc(base: u64, off: u32, dst: &mut [u8]) -> ReadResult<()> {
    let loc = read::<u32>(base, off)?;
    let at = base + (loc & 0xffff) as u64;
    // SAFETY: the helper bounds the read by dst's length.
    unsafe { bpf_probe_read_kernel_str_bytes(at as *const u8, dst) }.map_err(|e| e as i64)?;
    Ok(())
}
