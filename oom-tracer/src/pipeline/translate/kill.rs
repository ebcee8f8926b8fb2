//! The `oom_kill` record's one home: assembled whole, here, from the
//! kernel's record of the kill, the task list that follows it, the pod
//! source and the analysis. A new field of the record touches the ABI
//! (`oom_tracer_common`), [`Translator::oom_kill`], the schema and
//! docs/schema.md, and nothing else.
use oom_tracer_common::{
    OOM_LIMIT_STATS, OOM_MEMCG_FOUND, OOM_RSS, OOM_SCORE_ADJ, OOM_SOURCE_TP_BTF, OOM_UID,
    OOM_VICTIM_STATS, OomEvent, OomTasksEvent,
};

use super::{Translator, memory, proc_of};
use crate::{
    analyse::cause::cause,
    cgroup::{CgroupVersion, pod::read_limit_hits},
    pods::Container,
    schema::{
        Body, Callsites, LimitLevel, Memcg, OomKill, OomKind, OomSource, Pressure, Trigger, Victim,
    },
};

/// What the pipeline knows about a kill beside the kernel's record.
#[derive(Default)]
pub(crate) struct KillInputs<'a> {
    /// The task list the kernel read at the kill, if it came.
    pub tasks: Option<&'a OomTasksEvent>,
    /// The container of a memory cgroup (the pod source), if known.
    pub who: Option<&'a mut dyn FnMut(u64) -> Option<Container>>,
    /// Reclaim in the victim's cgroup before the kill (the analysis).
    pub pressure: Option<Pressure>,
    /// The kill's call sites, named when its record was read.
    pub callsites: Option<Callsites>,
}

/// The memcg of an OOM kill's victim; the trigger's where the victim's is
/// unknown (the classic tracepoint gives no task).
pub(crate) fn victim_memcg(e: &OomEvent) -> u64 {
    if e.victim.memcg_id != 0 {
        e.victim.memcg_id
    } else {
        e.trigger.memcg_id
    }
}

impl Translator {
    /// The `oom_kill` record of kernel record `e`.
    pub(crate) fn oom_kill(&mut self, e: &OomEvent, mut inputs: KillInputs<'_>) -> Body {
        let mut who = |id: u64| inputs.who.as_mut().and_then(|w| w(id));
        let has = |f: u32| e.flags & f != 0;
        let rss = |v: u64| has(OOM_RSS).then_some(v);
        let victim = Victim {
            pid: e.victim.pid,
            tgid: e.victim.tgid,
            comm: proc_of(&e.victim).comm,
            anon_rss_bytes: rss(e.anon_rss_bytes),
            file_rss_bytes: rss(e.file_rss_bytes),
            shmem_rss_bytes: rss(e.shmem_rss_bytes),
            total_vm_bytes: rss(e.total_vm_bytes),
            oom_score_adj: has(OOM_SCORE_ADJ).then_some(e.oom_score_adj),
            uid: has(OOM_UID).then_some(e.uid),
        };
        let trigger = Trigger {
            pid: e.trigger.pid,
            tgid: e.trigger.tgid,
            comm: proc_of(&e.trigger).comm,
            cgroup: self.index.resolve(e.trigger.memcg_id),
        };
        let victim_memcg = victim_memcg(e);
        let container = who(victim_memcg);
        let version = self.index.hierarchy().map(|h| h.version);
        let stats = |flag: u32, s| {
            let layout = self.layout.as_ref().filter(|_| has(flag))?;
            memory::breakdown(s, layout, self.page_size, version)
        };
        let breakdown = stats(OOM_LIMIT_STATS, &e.limit_stats);
        let victim_breakdown = stats(OOM_VICTIM_STATS, &e.victim_stats);
        // The limit was hit, so its `max` count is at least 1 where the
        // kernel read it.
        let hits = breakdown.as_ref().map(|b| b.events.max).filter(|&n| n > 0);
        let memcg =
            has(OOM_MEMCG_FOUND).then(|| self.oom_memcg(e, victim_memcg, container.as_ref(), hits));
        let victim_rss = victim
            .anon_rss_bytes
            .zip(victim.file_rss_bytes)
            .zip(victim.shmem_rss_bytes)
            .map(|((a, f), s)| a + f + s);
        let cause = breakdown
            .as_ref()
            .zip(memcg.as_ref())
            .map(|(b, m)| cause(b, m.limit_bytes, victim_rss));
        let tasks = inputs
            .tasks
            .filter(|t| t.victim_pid == e.victim.pid)
            .map(|t| {
                memory::tasks(t, self.page_size)
                    .into_iter()
                    .map(|(memcg, mut task)| {
                        task.cgroup = self.index.resolve(memcg);
                        task.container = who(memcg).map(|c| c.container);
                        task
                    })
                    .collect()
            });
        Body::OomKill(OomKill {
            kind: if memcg.is_some() {
                OomKind::Memcg
            } else {
                OomKind::Global
            },
            victim,
            trigger,
            memcg,
            victim_cgroup: self.index.resolve(victim_memcg),
            source: if e.source == OOM_SOURCE_TP_BTF {
                OomSource::TpBtf
            } else {
                OomSource::Tracepoint
            },
            pod: container.as_ref().map(|c| c.pod.clone()),
            container: container.map(|c| c.container),
            breakdown,
            victim_breakdown,
            cause,
            tasks,
            pressure: inputs.pressure,
            callsites: inputs.callsites,
        })
    }

    /// The memcg that hit its limit, as the kernel read it at the kill, and
    /// its level as seen from the victim's container (`hits`: its
    /// `memory.events` `max` count, where the kernel read it at the kill).
    fn oom_memcg(
        &mut self,
        e: &OomEvent,
        victim_memcg: u64,
        c: Option<&Container>,
        hits: Option<u64>,
    ) -> Memcg {
        let path = self.index.resolve(e.oom_memcg_id);
        let failcnt = match self.index.hierarchy() {
            // v2 keeps no failcnt: memory.events `max` counts the same
            // thing; read from the file only where the kernel did not.
            Some(h) if h.version == CgroupVersion::V2 => {
                hits.or_else(|| path.as_deref().and_then(|p| read_limit_hits(h, &h.dir(p))))
            }
            _ => Some(e.failcnt),
        };
        let level = c.map(|c| {
            if e.oom_memcg_id == victim_memcg {
                LimitLevel::Container
            } else if e.oom_memcg_id == c.pod_cgroup_id {
                LimitLevel::Pod
            } else {
                LimitLevel::Ancestor
            }
        });
        Memcg {
            id: e.oom_memcg_id,
            path,
            level,
            usage_bytes: e.usage_bytes,
            limit_bytes: e.limit_bytes,
            failcnt,
        }
    }
}

#[cfg(test)]
mod tests {
    use oom_tracer_common::decode::RawEvent;

    use super::*;
    use crate::{
        cgroup::{MemoryHierarchy, index::CgroupIndex},
        host::clock::BootClock,
        pipeline::translate::{memory::tests::layout, tests::oom_event},
        pods::fake::example_container,
    };

    /// On cgroup v2 the limit's hits come from the kernel's read at the
    /// kill; `memory.events` is read only where the kernel gave none.
    #[test]
    fn v2_limit_hits_from_the_kernel_not_the_file() {
        let root = std::env::temp_dir().join(format!("oom-tracer-hits-{}", std::process::id()));
        let dir = root.join("kubepods/pod-a");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 7\noom 1\n").unwrap();
        let h = MemoryHierarchy::fixture(CgroupVersion::V2, &root);
        let mut t = Translator::new(BootClock::from_offset(0), CgroupIndex::new(Some(h)));
        t.index.insert(100, "/kubepods/pod-a");
        t.set_layout(Some(layout()));
        let mut e = oom_event(42, 100, 100);
        e.limit_stats.state_len = 6;
        e.limit_stats.events[2..5].copy_from_slice(&[42, 1, 1]);
        e.limit_stats.flags = oom_tracer_common::STATS_STATE | oom_tracer_common::STATS_EVENTS;
        let mut failcnt = |e: &OomEvent| {
            let body = t.oom_kill(e, KillInputs::default());
            serde_json::to_value(&body).unwrap()["memcg"]["failcnt"].clone()
        };
        e.flags |= OOM_LIMIT_STATS;
        assert_eq!(failcnt(&e), 42, "the kernel's count at the kill");
        e.flags &= !OOM_LIMIT_STATS;
        assert_eq!(failcnt(&e), 7, "no breakdown: the file");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_level_of_the_limit_that_was_hit() {
        let mut t = Translator::new(BootClock::from_offset(0), CgroupIndex::new(None));
        let mut kill = |oom_memcg: u64, known: bool| {
            let mut who = |_| known.then(|| example_container(0, 100));
            let inputs = KillInputs {
                who: Some(&mut who),
                ..Default::default()
            };
            let body = t.oom_kill(&oom_event(42, 101, oom_memcg), inputs);
            serde_json::to_value(&body).unwrap()
        };
        assert_eq!(kill(101, true)["memcg"]["level"], "container");
        assert_eq!(kill(100, true)["memcg"]["level"], "pod");
        assert_eq!(kill(7, true)["memcg"]["level"], "ancestor");
        let v = kill(101, true);
        assert_eq!(v["container"]["name"], "stress");
        assert_eq!(v["pod"]["namespace"], "default");
        let v = kill(101, false);
        assert!(v["container"].is_null() && v["memcg"]["level"].is_null());
        let plain = t
            .translate(&RawEvent::Oom(Box::new(oom_event(42, 101, 101))))
            .unwrap();
        assert!(serde_json::to_value(&plain).unwrap()["pod"].is_null());
    }
}
