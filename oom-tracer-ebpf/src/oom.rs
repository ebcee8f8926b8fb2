//! The OOM kill itself: `oom/mark_victim`.
//!
//! Two programs, one attached: `mark_victim` (tp_btf, gets the victim's
//! `task_struct`) where the kernel's tracepoint passes a task pointer, and
//! `oom_mark_victim` (the classic tracepoint, fields read with the layout of
//! its `format` file) elsewhere.
use aya_ebpf::{
    EbpfContext as _,
    macros::{btf_tracepoint, tracepoint},
    programs::{BtfTracePointContext, TracePointContext},
};
use aya_log_ebpf::warn;
use oom_tracer_common::{
    COMM_LEN, EventHeader, EventKind, MAX_CGROUP_DEPTH, OFFSET_ABSENT, OOM_LIMIT_STATS,
    OOM_MEMCG_AT_LIMIT, OOM_MEMCG_FOUND, OOM_MEMCG_OOM_COUNT, OOM_NO_LOCK_FIELD, OOM_RSS,
    OOM_SCORE_ADJ, OOM_SOURCE_TP_BTF, OOM_SOURCE_TRACEPOINT, OOM_STACKS, OOM_UID, OOM_VICTIM_MEMCG,
    OOM_VICTIM_STATS, OomEvent, RUNTIME_TASK_LIST, TaskInfo,
};

use crate::{
    emit::{NO_WAKE, WAKE, header, reserve},
    kernel::{
        ReadResult, btf_load, css_id, css_id_btf, css_parent, current_info, current_task,
        current_task_btf, is_oom_watched, koff, memcg_oom_watched, pages_to_bytes, read,
        read_data_loc, read_or_zero, task_info_btf, task_memcg, task_memcg_btf, tpl,
    },
    maps::{LAST_OOM, OOM_SEEN, RUNTIME},
    memstat::read_memcg_stats,
    stacks,
};

/// tp_btf/mark_victim(struct task_struct *task, uid_t uid)
#[btf_tracepoint(function = "mark_victim")]
pub(crate) fn mark_victim(ctx: BtfTracePointContext) -> u32 {
    match try_mark_victim(&ctx) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn try_mark_victim(ctx: &BtfTracePointContext) -> ReadResult<()> {
    let victim: u64 = ctx.arg(0);
    let victim_css = task_memcg_btf(victim);
    if !memcg_oom_watched(victim_css) {
        return Ok(());
    }
    let Some(mut entry) = reserve::<OomEvent>() else {
        warn!(ctx, "ring buffer full: an OOM kill was not recorded");
        return Ok(());
    };
    // Only what the record needs, once: the victim is often its own
    // trigger, and the trigger is often in the victim's memcg.
    let victim_info = task_info_btf(victim, victim_css);
    let trigger = current_task_btf();
    let trigger_info = if trigger == victim {
        victim_info
    } else {
        let css = task_memcg_btf(trigger);
        TaskInfo {
            memcg_id: if css == victim_css {
                victim_info.memcg_id
            } else {
                css_id_btf(css)
            },
            ..task_info_btf(trigger, 0)
        }
    };
    let mut head = OomHead {
        hdr: header(EventKind::Oom),
        victim: victim_info,
        trigger: trigger_info,
        uid: ctx.arg(1),
        flags: OOM_VICTIM_MEMCG | OOM_UID,
        source: OOM_SOURCE_TP_BTF,
        ..OomHead::EMPTY
    };
    if let Ok(signal) = btf_load::<u64>(victim, koff!(task_signal))
        && let Ok(adj) = btf_load::<i16>(signal, koff!(signal_oom_score_adj))
    {
        head.oom_score_adj = i32::from(adj);
        head.flags |= OOM_SCORE_ADJ;
    }
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the reserved record, zeroed; its fields are written
    // before it is submitted (the statistics in `fill_stats`).
    unsafe {
        write_head(ev, head);
        take_stacks(ctx.as_ptr(), &mut *ev);
        read_victim_mm(victim, &mut *ev);
        // The victim's css is a BTF pointer: its memcg fields lie beyond
        // `struct cgroup_subsys_state` for the verifier, so they are read
        // with the helper (`read_or_zero`) from here on.
        let oom_css = find_oom_memcg(victim_css, &mut *ev);
        // A container-level OOM: the victim's own memcg, whose id is known.
        let known_id = if oom_css == victim_css {
            victim_info.memcg_id
        } else {
            0
        };
        read_oom_memcg(oom_css, known_id, &mut *ev);
        fill_stats(ev, oom_css, victim_css);
        entry.submit(wake_for(oom_css));
    }
    Ok(())
}

/// The trigger's user stack and the kernel stack of its failed charge
/// (`current` is the trigger), where call sites are on.
#[inline(always)]
fn take_stacks(ctx: *mut core::ffi::c_void, ev: &mut OomEvent) {
    if !stacks::enabled() {
        return;
    }
    ev.user_stack_id = stacks::stack_id(ctx, true);
    ev.kernel_stack_id = stacks::stack_id(ctx, false);
    ev.flags |= OOM_STACKS;
}

/// The wakeup for a kill record: none where `mark_victim_tasks` follows
/// with the task list (its record wakes the reader, so both arrive
/// together), else at once.
#[inline(always)]
fn wake_for(oom_css: u64) -> u64 {
    if oom_css == 0 {
        return WAKE;
    }
    if let Some(slot) = LAST_OOM.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; the task list program takes it next.
        unsafe { *slot = oom_css };
    }
    let flags = RUNTIME.get(0).copied().unwrap_or(0);
    if flags & RUNTIME_TASK_LIST != 0 {
        NO_WAKE
    } else {
        WAKE
    }
}

/// The part of an `OomEvent` before its statistics, built on the stack
/// (the whole record does not fit the 512-byte BPF stack).
struct OomHead {
    hdr: EventHeader,
    victim: TaskInfo,
    trigger: TaskInfo,
    uid: u32,
    oom_score_adj: i32,
    flags: u32,
    source: u32,
}

impl OomHead {
    const EMPTY: Self = Self {
        hdr: EventHeader {
            kind: 0,
            cpu: 0,
            boot_ns: 0,
        },
        victim: TaskInfo {
            pid: 0,
            tgid: 0,
            memcg_id: 0,
            comm: [0; COMM_LEN],
        },
        trigger: TaskInfo {
            pid: 0,
            tgid: 0,
            memcg_id: 0,
            comm: [0; COMM_LEN],
        },
        uid: 0,
        oom_score_adj: 0,
        flags: 0,
        source: 0,
    };
}

/// Writes the head's fields into the record; the others stay as
/// `emit::reserve` left them (zero) until the readers below fill them.
///
/// # Safety
/// `ev` points to a reserved `OomEvent`.
#[inline(always)]
unsafe fn write_head(ev: *mut OomEvent, h: OomHead) {
    // SAFETY: the caller's contract; plain field writes.
    unsafe {
        (*ev).hdr = h.hdr;
        (*ev).victim = h.victim;
        (*ev).trigger = h.trigger;
        (*ev).uid = h.uid;
        (*ev).oom_score_adj = h.oom_score_adj;
        (*ev).flags = h.flags;
        (*ev).source = h.source;
    }
}

/// The statistics of the memcg that hit its limit (`oom_css`, 0 for a
/// global OOM), and of the victim's own memcg when it is another one; a
/// block not read stays zero, its flag unset.
///
/// # Safety
/// `ev` points to a reserved, zeroed `OomEvent`.
#[inline(always)]
unsafe fn fill_stats(ev: *mut OomEvent, oom_css: u64, victim_css: u64) {
    // SAFETY: the caller's contract; the fields are inside the record.
    unsafe {
        let limit = core::ptr::addr_of_mut!((*ev).limit_stats);
        let own = core::ptr::addr_of_mut!((*ev).victim_stats);
        if oom_css != 0 {
            read_memcg_stats(oom_css, limit);
            (*ev).flags |= OOM_LIMIT_STATS;
        }
        if victim_css != 0 && victim_css != oom_css {
            read_memcg_stats(victim_css, own);
            (*ev).flags |= OOM_VICTIM_STATS;
        }
    }
}

/// total_vm and the RSS counters of the victim's mm, in bytes.
#[inline(always)]
fn read_victim_mm(victim: u64, ev: &mut OomEvent) {
    let Ok(mm) = btf_load::<u64>(victim, koff!(task_mm)) else {
        return;
    };
    if mm == 0 {
        return;
    }
    let base = koff!(mm_rss_base);
    let stride = koff!(mm_rss_stride);
    if base == OFFSET_ABSENT || stride == OFFSET_ABSENT {
        return;
    }
    let counter = |i: u32| -> u64 {
        // percpu_counter.count (or atomic_long_t): an approximate s64, like
        // the tracepoint's own get_mm_counter(). The atomic_long_t array
        // (6.1) is read with the helper, as in `rss_stat`.
        let v = if stride == 8 {
            read_or_zero::<i64>(mm, base + i * stride)
        } else {
            btf_load::<i64>(mm, base + i * stride).unwrap_or(0)
        };
        if v < 0 { 0 } else { pages_to_bytes(v as u64) }
    };
    ev.anon_rss_bytes = counter(koff!(mm_anonpages));
    ev.file_rss_bytes = counter(koff!(mm_filepages));
    ev.shmem_rss_bytes = counter(koff!(mm_shmempages));
    ev.total_vm_bytes = pages_to_bytes(btf_load::<u64>(mm, koff!(mm_total_vm)).unwrap_or(0));
    ev.flags |= OOM_RSS;
}

/// Pages a charge may still have wanted when it failed: a THP (order 9).
/// The kernel's charge walk fails where `usage + nr_pages > max`.
const AT_LIMIT_SLACK_PAGES: u64 = 512;

/// Finds the memcg that hit its limit and returns its css (0: none found,
/// a global OOM or no way to tell). Two ways, by what the kernel has:
///
/// - `oom_lock` (CONFIG_MEMCG_V1; cgroup v1, and v2 on such kernels):
///   `mem_cgroup_oom()` takes it (`mem_cgroup_oom_trylock`, through
///   `memcg1_oom_prepare` from 6.11) on the OOMing memcg's whole subtree
///   while `mem_cgroup_out_of_memory()` runs, so the topmost ancestor of
///   `start` with `oom_lock` set is the one whose limit was hit: exact.
/// - no `oom_lock` (6.11+ built without CONFIG_MEMCG_V1, e.g. Debian's
///   6.12): `mem_cgroup_oom()` calls `memcg_memory_event(memcg, MEMCG_OOM)`
///   on the memcg that hit its limit before the OOM killer runs, which
///   raises that memcg's own `memory_events_local[MEMCG_OOM]`; see
///   `find_by_oom_count`. Where that finds none, the lowest ancestor within
///   `AT_LIMIT_SLACK_PAGES` of its `max` (the kernel's charge walk fails at
///   the lowest ancestor that cannot take the charge): a guess, wrong when a
///   child is as close to its own limit as its parent (a pod and its
///   container with the same limit), hence last.
#[inline(always)]
fn find_oom_memcg(start: u64, ev: &mut OomEvent) -> u64 {
    let counter = koff!(memcg_memory);
    if counter == OFFSET_ABSENT {
        return 0;
    }
    let lock_off = koff!(memcg_oom_lock);
    let mut found = 0u64;
    // `lock_off` is a constant to the verifier: it checks one branch only
    // (two walks in one program exceed the 1M-instruction budget of 6.1's,
    // which has `oom_lock`).
    if lock_off != OFFSET_ABSENT {
        let mut css = start;
        for _ in 0..MAX_CGROUP_DEPTH {
            if css == 0 {
                break;
            }
            if read_or_zero::<u8>(css, lock_off) != 0 {
                found = css;
            } else if found != 0 {
                break;
            }
            css = css_parent(css);
        }
        return found;
    }
    ev.flags |= OOM_NO_LOCK_FIELD;
    found = find_by_oom_count(start);
    if found != 0 {
        ev.flags |= OOM_MEMCG_OOM_COUNT;
        return found;
    }
    let mut css = start;
    for _ in 0..MAX_CGROUP_DEPTH {
        if css == 0 {
            break;
        }
        if at_limit(css) {
            ev.flags |= OOM_MEMCG_AT_LIMIT;
            return css;
        }
        css = css_parent(css);
    }
    0
}

/// Whether the memcg `css` is within `AT_LIMIT_SLACK_PAGES` of its `max`.
#[inline(always)]
fn at_limit(css: u64) -> bool {
    let max = memcg_counter(css, koff!(page_counter_max));
    max != 0 && memcg_counter(css, koff!(page_counter_usage)) + AT_LIMIT_SLACK_PAGES >= max
}

/// The lowest ancestor of `start` (itself included) whose own OOM count,
/// `memory_events_local[MEMCG_OOM]`, rose since the last kill looked at it
/// (`OOM_SEEN`, by css `serial_nr`): the memcg `mem_cgroup_oom()` counted
/// this OOM on. The count is raised only on the memcg that hit its limit
/// (the hierarchical `memory_events[]` of its ancestors rise too, the local
/// ones do not), so a child's count does not move for its parent's OOM. A
/// memcg not seen before counts only when it is also at its limit: its
/// count may be older than the agent. 0: none (a global OOM, a kernel
/// without `memory_events_local`).
#[inline(always)]
fn find_by_oom_count(start: u64) -> u64 {
    let (events, idx) = (koff!(memcg_events_local), koff!(memcg_event_oom));
    let serial_off = koff!(css_serial_nr);
    if events == OFFSET_ABSENT
        || serial_off == OFFSET_ABSENT
        || idx == OFFSET_ABSENT
        || idx >= koff!(memcg_events_len)
    {
        return 0;
    }
    // atomic_long_t entries.
    let off = events + idx * 8;
    let mut css = start;
    for _ in 0..MAX_CGROUP_DEPTH {
        if css == 0 {
            break;
        }
        let count = read_or_zero::<u64>(css, off);
        let serial = read_or_zero::<u64>(css, serial_off);
        let seen = OOM_SEEN.get_ptr(serial).map(|p| {
            // SAFETY: a value of the map, read once.
            unsafe { *p }
        });
        if seen != Some(count) {
            let _ = OOM_SEEN.insert(serial, count, 0);
        }
        let rose = match seen {
            Some(last) => count > last,
            None => count != 0 && at_limit(css),
        };
        if rose {
            return css;
        }
        css = css_parent(css);
    }
    0
}

/// A field of the `memory` page_counter of the memcg `css`, in pages.
#[inline(always)]
fn memcg_counter(css: u64, field: u32) -> u64 {
    let counter = koff!(memcg_memory);
    if counter == OFFSET_ABSENT || field == OFFSET_ABSENT {
        return 0;
    }
    read_or_zero::<u64>(css, counter + field)
}

/// What the record says about the memcg that hit its limit, read at the
/// kill (`id`: its cgroup id where the caller knows it, else 0). Further
/// reads of that memcg (its statistics, its events) go here.
#[inline(always)]
fn read_oom_memcg(css: u64, id: u64, ev: &mut OomEvent) {
    if css == 0 {
        return;
    }
    ev.oom_memcg_id = if id != 0 { id } else { css_id(css) };
    ev.usage_bytes = pages_to_bytes(memcg_counter(css, koff!(page_counter_usage)));
    ev.limit_bytes = pages_to_bytes(memcg_counter(css, koff!(page_counter_max)));
    ev.failcnt = memcg_counter(css, koff!(page_counter_failcnt));
    ev.flags |= OOM_MEMCG_FOUND;
}

/// tracepoint/oom/mark_victim: fields per the kernel's format file. Older
/// kernels have only `pid`; the victim's task is not at hand, so the limit
/// search starts from the trigger's memcg (the trigger charged the memcg
/// that is out of memory).
#[tracepoint(category = "oom", name = "mark_victim")]
pub(crate) fn oom_mark_victim(ctx: TracePointContext) -> u32 {
    match try_oom_mark_victim(&ctx) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn try_oom_mark_victim(ctx: &TracePointContext) -> ReadResult<()> {
    let trigger_css = task_memcg(current_task()).unwrap_or(0);
    if !is_oom_watched(trigger_css) {
        return Ok(());
    }
    let base = ctx.as_ptr() as u64;
    let pid = read::<i32>(base, tpl!(mv_pid))? as u32;
    let Some(mut entry) = reserve::<OomEvent>() else {
        warn!(
            ctx,
            "ring buffer full: OOM kill of pid {} not recorded", pid
        );
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    let mut head = OomHead {
        hdr: header(EventKind::Oom),
        trigger: current_info(trigger_css),
        source: OOM_SOURCE_TRACEPOINT,
        ..OomHead::EMPTY
    };
    head.victim.pid = pid;
    head.victim.tgid = pid;
    let _ = read_data_loc(base, tpl!(mv_comm), &mut head.victim.comm);
    if let Ok(uid) = read::<u32>(base, tpl!(mv_uid)) {
        head.uid = uid;
        head.flags |= OOM_UID;
    }
    if let Ok(adj) = read::<i16>(base, tpl!(mv_oom_score_adj)) {
        head.oom_score_adj = i32::from(adj);
        head.flags |= OOM_SCORE_ADJ;
    }
    // SAFETY: `ev` is the reserved record, zeroed; its fields are written
    // before it is submitted.
    unsafe {
        write_head(ev, head);
        take_stacks(ctx.as_ptr(), &mut *ev);
        let kb = |off: u32| {
            read::<u64>(base, off).map(|v| {
                if v > u64::MAX >> 10 {
                    u64::MAX
                } else {
                    v << 10
                }
            })
        };
        if let (Ok(a), Ok(f), Ok(s)) = (
            kb(tpl!(mv_anon_rss)),
            kb(tpl!(mv_file_rss)),
            kb(tpl!(mv_shmem_rss)),
        ) {
            (*ev).anon_rss_bytes = a;
            (*ev).file_rss_bytes = f;
            (*ev).shmem_rss_bytes = s;
            (*ev).total_vm_bytes = kb(tpl!(mv_total_vm)).unwrap_or(0);
            (*ev).flags |= OOM_RSS;
        }
        let oom_css = find_oom_memcg(trigger_css, &mut *ev);
        read_oom_memcg(oom_css, 0, &mut *ev);
        // The victim's task is not at hand: its own memcg is not read.
        fill_stats(ev, oom_css, 0);
    }
    entry.submit(WAKE);
    Ok(())
}
