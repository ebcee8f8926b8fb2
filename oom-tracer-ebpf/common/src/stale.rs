//! Bytes a record must carry as zeroes: its padding, and the parts its
//! flags say were not read. The eBPF programs zero a reserved record as a
//! whole before they fill it (`emit::reserve`); a part left out of that
//! would carry the bytes an earlier record left in the ring buffer, and
//! this check is how userspace (and the tests) would see it.
use crate::{
    MemcgStats, OOM_LIMIT_STATS, OOM_MEMCG_FOUND, OOM_RSS, OOM_SCORE_ADJ, OOM_UID,
    OOM_VICTIM_STATS, OomEvent, OomTask, OomTasksEvent, decode::RawEvent,
};

/// The first part of `ev` that should be zero and is not (its name), if any.
pub fn stale_bytes(ev: &RawEvent) -> Option<&'static str> {
    match ev {
        RawEvent::Oom(e) => oom(e),
        RawEvent::OomTasks(e) => tasks(e),
        RawEvent::MemcgProbe(e) => (e._pad != 0).then_some("_pad"),
        RawEvent::Exit(e) => (e._pad != 0).then_some("_pad"),
        RawEvent::MemcgGrowth(e) => (e._pad != 0).then_some("_pad"),
        RawEvent::Signal(e) => (e._pad != 0).then_some("_pad"),
        RawEvent::Exec(_)
        | RawEvent::Alloc(_)
        | RawEvent::CgroupMkdir(_)
        | RawEvent::CgroupRmdir(_)
        | RawEvent::CgroupAttach(_) => None,
    }
}

fn oom(e: &OomEvent) -> Option<&'static str> {
    let unset = |flag: u32| e.flags & flag == 0;
    let checks: [(bool, &'static str); 6] = [
        (
            unset(OOM_MEMCG_FOUND)
                && (e.oom_memcg_id, e.usage_bytes, e.limit_bytes, e.failcnt) != (0, 0, 0, 0),
            "oom_memcg_id, usage_bytes, limit_bytes or failcnt",
        ),
        (
            unset(OOM_RSS)
                && (
                    e.total_vm_bytes,
                    e.anon_rss_bytes,
                    e.file_rss_bytes,
                    e.shmem_rss_bytes,
                ) != (0, 0, 0, 0),
            "total_vm_bytes or the RSS fields",
        ),
        (unset(OOM_UID) && e.uid != 0, "uid"),
        (
            unset(OOM_SCORE_ADJ) && e.oom_score_adj != 0,
            "oom_score_adj",
        ),
        (
            unset(OOM_LIMIT_STATS) && e.limit_stats != MemcgStats::EMPTY,
            "limit_stats",
        ),
        (
            unset(OOM_VICTIM_STATS) && e.victim_stats != MemcgStats::EMPTY,
            "victim_stats",
        ),
    ];
    checks
        .into_iter()
        .find_map(|(bad, what)| bad.then_some(what))
}

fn tasks(e: &OomTasksEvent) -> Option<&'static str> {
    if e._pad != 0 {
        return Some("_pad");
    }
    let n = (e.count as usize).min(e.tasks.len());
    if e.tasks[..n].iter().any(|t| t._pad != 0) {
        return Some("tasks[]._pad");
    }
    if e.tasks[n..].iter().any(|t| *t != OomTask::default()) {
        return Some("tasks past count");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventHeader, EventKind, OOM_TASKS_MAX, STATS_STATE};

    fn kill() -> OomEvent {
        OomEvent {
            hdr: EventHeader {
                kind: EventKind::Oom as u32,
                cpu: 1,
                boot_ns: 5,
            },
            victim: Default::default(),
            trigger: Default::default(),
            oom_memcg_id: 0,
            usage_bytes: 0,
            limit_bytes: 0,
            failcnt: 0,
            total_vm_bytes: 0,
            anon_rss_bytes: 0,
            file_rss_bytes: 0,
            shmem_rss_bytes: 0,
            uid: 0,
            oom_score_adj: 0,
            flags: 0,
            source: 1,
            limit_stats: MemcgStats::EMPTY,
            victim_stats: MemcgStats::EMPTY,
            user_stack_id: 0,
            kernel_stack_id: 0,
        }
    }

    #[test]
    fn a_zeroed_kill_is_clean_and_each_stale_part_is_named() {
        let clean = kill();
        assert_eq!(stale_bytes(&RawEvent::Oom(Box::new(clean))), None);
        let mut e = kill();
        e.victim_stats.state[40] = 7;
        assert_eq!(
            stale_bytes(&RawEvent::Oom(Box::new(e))),
            Some("victim_stats")
        );
        // The same bytes are fine where the flag says they were read.
        e.flags |= OOM_VICTIM_STATS;
        e.victim_stats.flags = STATS_STATE;
        assert_eq!(stale_bytes(&RawEvent::Oom(Box::new(e))), None);
        let mut e = kill();
        e.failcnt = 3;
        assert!(stale_bytes(&RawEvent::Oom(Box::new(e))).is_some());
        e.flags |= OOM_MEMCG_FOUND;
        assert_eq!(stale_bytes(&RawEvent::Oom(Box::new(e))), None);
        let mut e = kill();
        e.uid = 1000;
        assert_eq!(stale_bytes(&RawEvent::Oom(Box::new(e))), Some("uid"));
    }

    #[test]
    fn task_slots_past_the_count_must_be_zero() {
        let mut t = OomTasksEvent {
            count: 1,
            ..Default::default()
        };
        t.tasks[0].pid = 42;
        assert_eq!(stale_bytes(&RawEvent::OomTasks(Box::new(t))), None);
        t.tasks[OOM_TASKS_MAX - 1].comm[0] = b'x';
        assert_eq!(
            stale_bytes(&RawEvent::OomTasks(Box::new(t))),
            Some("tasks past count")
        );
        t.count = OOM_TASKS_MAX as u32;
        assert_eq!(stale_bytes(&RawEvent::OomTasks(Box::new(t))), None);
        t.tasks[3]._pad = 1;
        assert!(stale_bytes(&RawEvent::OomTasks(Box::new(t))).is_some());
    }
}
