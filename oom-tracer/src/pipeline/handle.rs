//! One kernel record through translate, enrich, analyse and the sinks,
//! and what it starts or ends: a container, a kill waiting for its task
//! list, a cgroup.
use oom_tracer_common::decode::RawEvent;

use super::{
    Kernel, Pipeline, PipelineError, enrich,
    lifecycle::Ending,
    translate::{self, memcg_of},
};
use crate::{
    pods::{Learned, PodAccessor},
    schema::{Body, Exit, Record, Timestamp},
};

/// An `oom_kill` waiting for the task list that follows it in the ring.
pub(super) struct PendingKill {
    record: Record,
    memcg: u64,
    victim_pid: u32,
    /// Records that came between, written after it, in their order.
    held: Vec<RawEvent>,
}

impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// One kernel record through translate, enrich, analyse and the sinks.
    pub(super) async fn handle(&mut self, ev: &RawEvent) -> Result<(), PipelineError> {
        match ev {
            RawEvent::OomTasks(t) => return self.task_list(t),
            // A late answer to the startup check.
            RawEvent::MemcgProbe(_) => return Ok(()),
            _ => {}
        }
        if let Some(p) = self.pending.as_mut() {
            p.held.push(ev.clone());
            return Ok(());
        }
        let memcg = memcg_of(ev);
        let is_task = !matches!(
            ev,
            RawEvent::CgroupMkdir(_) | RawEvent::CgroupRmdir(_) | RawEvent::CgroupAttach(_)
        );
        if is_task && memcg != 0 && self.pods.is_ignored(memcg) {
            return Ok(());
        }
        let record = self.translator.translate(ev);
        match ev {
            RawEvent::CgroupMkdir(c) => self.cgroup_made(c.id),
            RawEvent::CgroupRmdir(c) => self.cgroup_removed(c.id),
            _ => {}
        }
        let Some(mut r) = record else {
            return Ok(());
        };
        let mut new_container = None;
        if let Body::Exec(e) = &r.body
            && !self.lifecycle.is_tracked(memcg)
        {
            let path = e.cgroup.as_deref().unwrap_or("");
            match self.pods.learn(memcg, path, &e.proc.comm).await {
                Learned::Ignored => return Ok(()),
                Learned::Container => new_container = Some(e.proc.tgid),
                Learned::Other => {}
            }
        }
        enrich::enrich(&mut r, memcg, self.pods.container(memcg));
        if let (RawEvent::Oom(e), Body::OomKill(o)) = (ev, &mut r.body) {
            let stat = self.kernel.pressure_of(memcg);
            let last = stat
                .map(|s| s.last_ns)
                .filter(|&n| n > 0)
                .map(|n| self.translator.time(n));
            o.pressure = self.analysis.pressure_at_kill(memcg, r.time, stat, last);
            if self.kernel.has_task_list() {
                self.pending = Some(PendingKill {
                    record: r,
                    memcg,
                    victim_pid: e.victim.pid,
                    held: Vec::new(),
                });
                return Ok(());
            }
        }
        self.write(&mut r, memcg)?;
        if let Some(pid) = new_container {
            self.container_started(memcg, pid, r.time, false)?;
        }
        if let Body::Exit(e) = &r.body {
            self.process_exited(memcg, e, r.time)?;
        }
        Ok(())
    }

    /// The tasks of a kill: onto the kill waiting for them, which is written
    /// then, with what came in between.
    fn task_list(&mut self, t: &oom_tracer_common::OomTasksEvent) -> Result<(), PipelineError> {
        let Some(p) = self.pending.as_mut() else {
            tracing::debug!("a task list without its kill (victim {})", t.victim_pid);
            return Ok(());
        };
        if p.victim_pid != t.victim_pid {
            return Ok(());
        }
        let tasks = translate::memory::tasks(t, self.translator.page_size())
            .into_iter()
            .map(|(memcg, mut task)| {
                task.cgroup = self.translator.index.resolve(memcg);
                task.container = self.pods.container(memcg).map(|c| c.container.clone());
                task
            })
            .collect();
        if let Body::OomKill(o) = &mut p.record.body {
            o.tasks = Some(tasks);
        }
        self.flush_pending()
    }

    /// Writes the kill waiting for its task list, then what came after it.
    pub(super) fn flush_pending(&mut self) -> Result<(), PipelineError> {
        let Some(mut p) = self.pending.take() else {
            return Ok(());
        };
        self.write(&mut p.record, p.memcg)?;
        // What came after it, handled next (see `process`).
        self.backlog.extend(p.held);
        Ok(())
    }

    /// A new cgroup: if pods live under it (the kubelet just made its
    /// root), watch it now, not at the next rescan, so the first
    /// containers are seen.
    fn cgroup_made(&mut self, id: u64) {
        if let Some(path) = self.translator.index.resolve(id)
            && self.pods.is_pod_root(&path)
        {
            self.watch_root(id, &path);
        }
    }

    pub(super) fn container_started(
        &mut self,
        memcg: u64,
        pid: u32,
        at: Timestamp,
        discovered: bool,
    ) -> Result<(), PipelineError> {
        let Some(c) = self.pods.container(memcg) else {
            return Ok(());
        };
        for body in self.lifecycle.started(memcg, c, pid, at, discovered) {
            self.write(&mut Record::new(at, body), 0)?;
        }
        Ok(())
    }

    /// A process ended in `memcg`: the container's end if it was its main
    /// process (most exits in a container are not).
    fn process_exited(&mut self, memcg: u64, e: &Exit, at: Timestamp) -> Result<(), PipelineError> {
        if self.lifecycle.running_pid(memcg) != Some(e.proc.tgid) {
            return Ok(());
        }
        let end = Ending {
            pid: e.proc.tgid,
            at,
            signal: e.signal,
            status: e.exit_code,
            verdict: e.verdict,
            oom_killed: self.analysis.oom_killed_in(memcg),
        };
        self.container_ended(memcg, &end)
    }

    pub(super) fn container_ended(
        &mut self,
        memcg: u64,
        end: &Ending,
    ) -> Result<(), PipelineError> {
        let Some(c) = self.pods.container(memcg) else {
            return Ok(());
        };
        if let Some(x) = self.lifecycle.exited(memcg, c, end) {
            self.write(&mut Record::new(end.at, x), 0)?;
        }
        Ok(())
    }

    fn cgroup_removed(&mut self, id: u64) {
        self.analysis.cgroup_removed(id);
        self.kernel.forget_pressure(id);
        self.pods.forget(id);
        self.lifecycle.removed(id);
        self.roots.retain(|&r| r != id);
    }
}
