//! The kernel's raw memcg statistics and task lists → what records carry.
use oom_tracer_common::{MemcgStats, OomTasksEvent, STATS_EVENTS, STATS_STATE, decode::c_bytes};

use crate::{
    bpf::memstat::{StatItem, StatLayout, to_bytes},
    schema::{Breakdown, CgroupVersion, KernelParts, MemoryEvents, OomTask, lossless_text},
};

/// The breakdown of `s` by `layout`; `None` where the state was not read.
pub(crate) fn breakdown(
    s: &MemcgStats,
    layout: &StatLayout,
    page_size: u64,
    version: Option<CgroupVersion>,
) -> Option<Breakdown> {
    if s.flags & STATS_STATE == 0 {
        return None;
    }
    let len = (s.state_len as usize).min(s.state.len());
    let get = |item: StatItem| -> Option<u64> {
        let i = layout.get(item).filter(|&i| i < len)?;
        Some(to_bytes(s.state[i], item.unit(), page_size))
    };
    let v = |item: StatItem| get(item).unwrap_or(0);
    let event = |n: usize| -> u64 {
        if s.flags & STATS_EVENTS == 0 {
            return 0;
        }
        layout.events[n]
            .and_then(|i| s.events.get(i).copied())
            .unwrap_or(0)
    };
    Some(Breakdown {
        anon_bytes: v(StatItem::Anon),
        file_bytes: v(StatItem::File).saturating_sub(v(StatItem::Shmem)),
        shmem_bytes: v(StatItem::Shmem),
        kernel_bytes: v(StatItem::Kernel),
        // Socket memory counts against the memory limit on v2 only.
        sock_bytes: (version == Some(CgroupVersion::V2))
            .then(|| get(StatItem::Sock))
            .flatten(),
        swap_bytes: get(StatItem::Swap),
        kernel: KernelParts {
            slab_reclaimable_bytes: v(StatItem::SlabReclaimable),
            slab_unreclaimable_bytes: v(StatItem::SlabUnreclaimable),
            kernel_stack_bytes: v(StatItem::KernelStack),
            pagetables_bytes: v(StatItem::PageTables),
            percpu_bytes: v(StatItem::Percpu),
        },
        events: MemoryEvents {
            max: event(0),
            oom: event(1),
            oom_kill: event(2),
        },
        pending_updates: s.pending_updates,
    })
}

/// The tasks of a kill, as read in the kernel; `victim` is the victim's pid.
pub(crate) fn tasks(e: &OomTasksEvent, page_size: u64) -> Vec<(u64, OomTask)> {
    let n = (e.count as usize).min(e.tasks.len());
    e.tasks[..n]
        .iter()
        .map(|t| {
            let task = OomTask {
                pid: t.pid,
                tgid: t.tgid,
                comm: lossless_text(c_bytes(&t.comm)),
                anon_rss_bytes: t.anon_pages.saturating_mul(page_size),
                file_rss_bytes: t.file_pages.saturating_mul(page_size),
                shmem_rss_bytes: t.shmem_pages.saturating_mul(page_size),
                oom_score_adj: t.oom_score_adj,
                victim: t.pid == e.victim_pid || t.tgid == e.victim_pid,
                cgroup: None,
                container: None,
            };
            (t.memcg_id, task)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn layout() -> StatLayout {
        StatLayout {
            index: vec![
                (StatItem::Anon, 0),
                (StatItem::File, 1),
                (StatItem::Shmem, 2),
                (StatItem::Kernel, 3),
                (StatItem::KernelStack, 4),
                (StatItem::Sock, 5),
            ],
            events: [Some(2), Some(3), Some(4)],
            how: "test".into(),
        }
    }

    #[test]
    fn raw_stats_to_a_breakdown() {
        let mut s = MemcgStats::EMPTY;
        s.state[..6].copy_from_slice(&[100, 30, 20, 5, 32, 7]);
        s.state_len = 6;
        s.events[2..5].copy_from_slice(&[42, 1, 1]);
        s.flags = STATS_STATE | STATS_EVENTS;
        let b = breakdown(&s, &layout(), 4096, Some(CgroupVersion::V1)).unwrap();
        assert_eq!(b.anon_bytes, 100 * 4096);
        assert_eq!(b.file_bytes, 10 * 4096, "page cache without shmem");
        assert_eq!(b.shmem_bytes, 20 * 4096);
        assert_eq!(b.kernel_bytes, 5 * 4096);
        assert_eq!(b.kernel.kernel_stack_bytes, 32 * 1024);
        assert_eq!(b.sock_bytes, None, "v1 charges sockets elsewhere");
        assert_eq!(b.swap_bytes, None, "not in this layout");
        assert_eq!((b.events.max, b.events.oom, b.events.oom_kill), (42, 1, 1));
        let b = breakdown(&s, &layout(), 4096, Some(CgroupVersion::V2)).unwrap();
        assert_eq!(b.sock_bytes, Some(7 * 4096));
        s.flags = 0;
        assert!(breakdown(&s, &layout(), 4096, None).is_none());
    }
}
