//! Who was there at the kill: the tasks of the memcg that hit its limit
//! and of its child cgroups (a pod's containers), with their RSS and
//! oom_score_adj. A second program on `mark_victim`, so that a verifier
//! that refuses its walk costs the task list only; it runs right after
//! `mark_victim` (which leaves the memcg it found in `LAST_OOM`) and its
//! record follows the kill's.
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use oom_tracer_common::{
    COMM_LEN, EventKind, OFFSET_ABSENT, OOM_TASKS_MAX, OomTask, OomTasksEvent,
};

use crate::{
    emit::{WAKE, header, reserve},
    kernel::{ReadResult, css_id, koff, read_or_zero, task_memcg},
    maps::{LAST_OOM, SCRATCH},
};

/// tp_btf/mark_victim(struct task_struct *task, uid_t uid), after `mark_victim`.
#[btf_tracepoint(function = "mark_victim")]
pub(crate) fn mark_victim_tasks(ctx: BtfTracePointContext) -> u32 {
    match try_mark_victim_tasks(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_mark_victim_tasks(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let Some(slot) = LAST_OOM.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's slot; `mark_victim` wrote it in this tracepoint call.
    let css = unsafe { core::ptr::replace(slot, 0) };
    if css == 0 {
        return Ok(());
    }
    let victim: u64 = ctx.arg(0);
    let Some(mut entry) = reserve::<OomTasksEvent>() else {
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the reserved record, zeroed; the scalar fields are
    // written here, the first `count` tasks in `walk` (the others stay zero).
    unsafe {
        (*ev).hdr = header(EventKind::OomTasks);
        (*ev).victim_pid = read_or_zero::<u32>(victim, koff!(task_pid));
        (*ev).memcg_id = css_id(css);
        (*ev).count = walk(css, ev);
    }
    entry.submit(WAKE);
    Ok(())
}

/// Steps of the walk: each visits one task, or moves to the next css_set
/// or child cgroup.
const MAX_STEPS: u32 = 64;

/// Where the walk is (on the stack of `walk`, handed to each step).
#[repr(C)]
struct Cursor {
    /// Head of the child css list, and the child being walked.
    children: u64,
    child_pos: u64,
    /// Head of the walked cgroup's css_set links, and the link at hand.
    links: u64,
    link_pos: u64,
    /// Head of the css_set's tasks, and the task at hand.
    tasks: u64,
    task_pos: u64,
    /// Tasks written.
    n: u32,
    truncated: u32,
}

/// The tasks of `css`'s cgroup, then of its children (a pod's
/// containers); returns how many went into `ev`. The walk is a
/// `bpf_loop`: the verifier checks one step, not every path through all.
///
/// # Safety
/// `ev` points to a reserved `OomTasksEvent`.
#[inline(always)]
unsafe fn walk(css: u64, ev: *mut OomTasksEvent) -> u32 {
    let o = Offsets::read();
    if !o.complete() {
        return 0;
    }
    let links = cset_links(css, &o);
    let mut c = Cursor {
        children: css + o.children,
        child_pos: css + o.children,
        links,
        link_pos: read_or_zero(links, 0),
        // "No task at hand" is `task_pos == tasks`, started from a value the
        // verifier does not know: verifiers before 6.7 check a `bpf_loop`
        // callback as if it ran once, and with constants here they would
        // find the task branch of `step` unreachable and remove it (6.1
        // then walked every css_set and listed no task).
        tasks: links,
        task_pos: links,
        // The same for the count: a constant 0 would let those verifiers
        // drop the check against OOM_TASKS_MAX.
        n: opaque_zero(),
        truncated: 0,
    };
    // SAFETY: `step` has the callback's signature; `c` lives across the loop.
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            MAX_STEPS,
            step as *mut core::ffi::c_void,
            core::ptr::addr_of_mut!(c).cast(),
            0,
        );
    }
    let Some(scratch) = SCRATCH.get_ptr(0) else {
        return 0;
    };
    let n = if c.n as usize > OOM_TASKS_MAX {
        OOM_TASKS_MAX as u32
    } else {
        c.n
    };
    // Only the `n` tasks of this kill: the scratch's other slots hold
    // tasks of earlier kills on this CPU.
    let len = n * size_of::<OomTask>() as u32;
    // SAFETY: both are `OomTasksEvent`s: the per-CPU scratch the steps
    // filled, and the reserved record; `len` is at most their `tasks`.
    unsafe {
        let from = core::ptr::addr_of!((*scratch).tasks);
        let to = core::ptr::addr_of_mut!((*ev).tasks);
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(to.cast(), len, from.cast());
        (*ev).truncated = c.truncated;
    }
    n
}

/// 0, from a read the verifier cannot see through (of address 0, which
/// fails and leaves zeroes).
#[inline(always)]
fn opaque_zero() -> u32 {
    read_or_zero::<u32>(0, 0)
}

/// One step of the walk: a task, or the next css_set, or the next child
/// cgroup. Returns 1 to stop.
extern "C" fn step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `ctx` is the `Cursor` on `walk`'s stack.
    let c = unsafe { &mut *ctx.cast::<Cursor>() };
    let o = Offsets::read();
    if c.task_pos != 0 && c.task_pos != c.tasks {
        let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
            return 1;
        };
        if c.n as usize >= OOM_TASKS_MAX {
            c.truncated = 1;
            return 1;
        }
        // SAFETY: `n` < OOM_TASKS_MAX: a slot of the scratch record.
        unsafe { one_task(c.task_pos - o.cg_list, scratch, c.n) };
        c.n += 1;
        c.task_pos = read_or_zero(c.task_pos, 0);
    } else if c.link_pos != 0 && c.link_pos != c.links {
        // The next css_set of this cgroup, and its first task.
        let cset: u64 = read_or_zero(c.link_pos - o.link, o.cset as u32);
        c.tasks = cset + o.tasks;
        c.task_pos = if cset == 0 {
            0
        } else {
            read_or_zero(c.tasks, 0)
        };
        c.link_pos = read_or_zero(c.link_pos, 0);
    } else {
        // The next child cgroup.
        c.child_pos = read_or_zero(c.child_pos, 0);
        if c.child_pos == 0 || c.child_pos == c.children {
            return 1;
        }
        c.links = cset_links(c.child_pos - o.sibling, &o);
        c.link_pos = read_or_zero(c.links, 0);
        c.task_pos = 0;
    }
    0
}

/// The offsets of the walk, as u64 for pointer arithmetic.
struct Offsets {
    children: u64,
    sibling: u64,
    links: u64,
    link: u64,
    cset: u64,
    tasks: u64,
    cg_list: u64,
}

impl Offsets {
    #[inline(always)]
    fn read() -> Self {
        Self {
            children: u64::from(koff!(css_children)),
            sibling: u64::from(koff!(css_sibling)),
            links: u64::from(koff!(cgroup_cset_links)),
            link: u64::from(koff!(link_cset_link)),
            cset: u64::from(koff!(link_cset)),
            tasks: u64::from(koff!(cset_tasks)),
            cg_list: u64::from(koff!(task_cg_list)),
        }
    }

    #[inline(always)]
    fn complete(&self) -> bool {
        let absent = u64::from(OFFSET_ABSENT);
        ![
            self.children,
            self.sibling,
            self.links,
            self.link,
            self.cset,
            self.tasks,
            self.cg_list,
        ]
        .contains(&absent)
    }
}

/// `&css->cgroup->cset_links`: the head of the cgroup's css_set links.
#[inline(always)]
fn cset_links(css: u64, o: &Offsets) -> u64 {
    let cgrp: u64 = read_or_zero(css, koff!(css_cgroup));
    if cgrp == 0 { 0 } else { cgrp + o.links }
}

/// Task `task` into slot `i` of `ev`.
///
/// # Safety
/// `ev` points to a reserved `OomTasksEvent` and `i < OOM_TASKS_MAX`.
#[inline(always)]
unsafe fn one_task(task: u64, ev: *mut OomTasksEvent, i: u32) {
    let i = (i as usize) & (OOM_TASKS_MAX - 1);
    // SAFETY: the caller's contract; `i` is masked into range for the verifier.
    let t = unsafe { core::ptr::addr_of_mut!((*ev).tasks[i]) };
    let mm: u64 = read_or_zero(task, koff!(task_mm));
    let (base, stride) = (koff!(mm_rss_base), koff!(mm_rss_stride));
    let counter = |member: u32| -> u64 {
        if mm == 0 || base == OFFSET_ABSENT || stride == OFFSET_ABSENT {
            return 0;
        }
        let v = read_or_zero::<i64>(mm, base + member * stride);
        if v < 0 { 0 } else { v as u64 }
    };
    let signal: u64 = read_or_zero(task, koff!(task_signal));
    // SAFETY: plain field writes into slot `i`.
    unsafe {
        (*t).pid = read_or_zero::<u32>(task, koff!(task_pid));
        (*t).tgid = read_or_zero::<u32>(task, koff!(task_tgid));
        (*t).memcg_id = task_memcg(task).map_or(0, css_id);
        (*t).anon_pages = counter(koff!(mm_anonpages));
        (*t).file_pages = counter(koff!(mm_filepages));
        (*t).shmem_pages = counter(koff!(mm_shmempages));
        (*t).comm = read_or_zero::<[u8; COMM_LEN]>(task, koff!(task_comm));
        (*t).oom_score_adj = i32::from(read_or_zero::<i16>(signal, koff!(signal_oom_score_adj)));
        (*t)._pad = 0;
    }
}
