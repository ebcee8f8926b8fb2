//! One kernel record through translate, enrich, analyse and the sinks,
//! and what it starts or ends: a container, a cgroup.
//!
//! Nothing here waits on I/O. A record may be held back, with every record
//! behind it (the output stays in kernel order), for two bounded reasons:
//!
//! - an `oom_kill` waits for its task list, which follows it in the ring
//!   buffer microseconds later: to the end of the drain that read it, and
//!   where that drain came between the two (the reader is woken at the
//!   kill's SIGKILL, before the kill), at most [`TASKS_WAIT_NS`] from the
//!   kill;
//! - the records of a container whose names are not known yet wait for
//!   them at most [`NAMES_WAIT`] from the container's first record
//!   (Tetragon's eventcache), and then go with the ids the cgroup path
//!   gives and null names.
//! - an `oom_kill` read while the breakdown's startup check runs waits for
//!   its verdict at most [`CHECK_WAIT_NS`] from the kill, so that it
//!   carries the breakdown when the check passes (`statcheck/`).
use oom_tracer_common::{OomTasksEvent, decode::RawEvent};

use super::{
    Kernel, Pipeline, PipelineError, callsites, enrich,
    lifecycle::Ending,
    translate::{kill::KillInputs, memcg_of},
};
use crate::{
    host::clock::BootClock,
    pods::{Learned, PodAccessor},
    schema::{Body, Callsites, Exit, Record, Timestamp},
};

/// How long the records of a new container wait for its names, from the
/// kernel time of its first record: an `oom_kill` is on stdout within
/// about this much of the kill, whatever the runtime does.
pub(super) const NAMES_WAIT_NS: u64 = 50_000_000;

/// How long an `oom_kill` read without its task list waits for it, from
/// the kernel time of the kill: the list is written by the next program on
/// the same tracepoint, and its record wakes the reader.
pub(super) const TASKS_WAIT_NS: u64 = 2_000_000;

/// How long an `oom_kill` read during the startup check waits for its
/// verdict, from the kernel time of the kill.
pub(super) const CHECK_WAIT_NS: u64 = 80_000_000;

/// How often a kill waiting for the check looks for its verdict (the
/// verdict comes from the check's thread, which wakes nothing).
const CHECK_POLL_NS: u64 = 2_000_000;

/// A kernel record read, not yet written.
pub(super) struct Staged {
    ev: RawEvent,
    /// Translated already (`None` for a kill, assembled when written).
    record: Option<Record>,
    memcg: u64,
    /// Its cgroup is a container this record (its first exec) starts.
    starts: Option<u32>,
    tasks: Option<Box<OomTasksEvent>>,
    /// A kill's call sites, named when it was read.
    callsites: Option<Callsites>,
}

/// The record held back, and those that came behind it.
pub(super) struct Held {
    staged: Staged,
    /// Waiting for the names of its container until this boot time (ns).
    names_until: Option<u64>,
    /// A kill waiting for its task list: the victim's pid, and until when
    /// (boot ns) once a drain ended without it.
    tasks_for: Option<(u32, u64)>,
    /// A kill waiting for the startup check's verdict until this boot time (ns).
    check_until: Option<u64>,
    behind: Vec<RawEvent>,
}

impl Held {
    /// When the pipeline must look at it again at the latest (boot ns).
    pub(super) fn deadline_ns(&self) -> Option<u64> {
        let check = self
            .check_until
            .map(|t| t.min(BootClock::boot_now_ns().saturating_add(CHECK_POLL_NS)));
        let tasks = self.tasks_for.map(|(_, until)| until);
        [self.names_until, check, tasks].into_iter().flatten().min()
    }
}

impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// One kernel record through translate, enrich, analyse and the sinks
    /// (or held back, see the module's text).
    pub(super) fn handle(&mut self, ev: &RawEvent) -> Result<(), PipelineError> {
        match ev {
            RawEvent::OomTasks(t) => return self.task_list(t, ev),
            // The startup check's answer, or a late one.
            RawEvent::MemcgProbe(p) => {
                self.probe_answer(p);
                return Ok(());
            }
            _ => {}
        }
        if let Some(h) = self.held.as_mut() {
            h.behind.push(ev.clone());
            return Ok(());
        }
        let memcg = memcg_of(ev);
        let callsites = self.grow_or_kill(ev, memcg);
        let is_task = !matches!(
            ev,
            RawEvent::CgroupMkdir(_) | RawEvent::CgroupRmdir(_) | RawEvent::CgroupAttach(_)
        );
        if is_task && memcg != 0 && self.pods.is_ignored(memcg) {
            return Ok(());
        }
        let record = if matches!(ev, RawEvent::Oom(_)) {
            None
        } else {
            let record = self.translator.translate(ev);
            match ev {
                RawEvent::CgroupMkdir(c) => self.cgroup_made(c.id)?,
                RawEvent::CgroupRmdir(c) => self.cgroup_removed(c.id),
                _ => {}
            }
            let Some(r) = record else { return Ok(()) };
            Some(r)
        };
        let mut starts = None;
        if let Some(Body::Exec(e)) = record.as_ref().map(|r| &r.body)
            && !self.lifecycle.is_tracked(memcg)
        {
            let path = e.cgroup.as_deref().unwrap_or("");
            match self.pods.learn(memcg, path, &e.proc.comm) {
                Learned::Ignored => return Ok(()),
                Learned::Container => {
                    starts = Some(e.proc.tgid);
                    let until = ev.header().boot_ns.saturating_add(NAMES_WAIT_NS);
                    self.naming.insert(memcg, until);
                }
                Learned::Other => {}
            }
        }
        let staged = Staged {
            ev: ev.clone(),
            record,
            memcg,
            starts,
            tasks: None,
            callsites,
        };
        let names_until = self.names_until(memcg);
        let tasks_for = match ev {
            RawEvent::Oom(e) if self.kernel.has_task_list() => {
                Some((e.victim.pid, e.hdr.boot_ns.saturating_add(TASKS_WAIT_NS)))
            }
            _ => None,
        };
        let check_until = match ev {
            RawEvent::Oom(e) if self.checking() => {
                Some(e.hdr.boot_ns.saturating_add(CHECK_WAIT_NS))
            }
            _ => None,
        };
        if names_until.is_some() || tasks_for.is_some() || check_until.is_some() {
            self.held = Some(Held {
                staged,
                names_until,
                tasks_for,
                check_until,
                behind: Vec::new(),
            });
            return Ok(());
        }
        self.finish(staged)
    }

    /// Until when records of `memcg` wait for its names: set while the
    /// container is new, its names missing and a source may give them.
    fn names_until(&mut self, memcg: u64) -> Option<u64> {
        let &until = self.naming.get(&memcg)?;
        if !self.stopping && BootClock::boot_now_ns() < until && self.pods.names_pending(memcg) {
            return Some(until);
        }
        self.naming.remove(&memcg);
        None
    }

    /// The tasks of a kill: onto the kill held for them, or behind the
    /// record held (the kill is among those behind it).
    fn task_list(&mut self, t: &OomTasksEvent, ev: &RawEvent) -> Result<(), PipelineError> {
        let Some(h) = self.held.as_mut() else {
            tracing::debug!("a task list without its kill (victim {})", t.victim_pid);
            return Ok(());
        };
        if h.tasks_for.is_some_and(|(pid, _)| pid == t.victim_pid) {
            h.staged.tasks = Some(Box::new(*t));
            h.tasks_for = None;
            return self.settle(false);
        }
        h.behind.push(ev.clone());
        Ok(())
    }

    /// Writes the record held back once it waits for nothing more (with
    /// `drained`, the ring buffer is empty: a kill's task list not read yet
    /// is waited for until its deadline); the records behind it are handled
    /// next (see `process`).
    pub(super) fn settle(&mut self, drained: bool) -> Result<(), PipelineError> {
        let stopping = self.stopping;
        let Some(h) = self.held.as_mut() else {
            return Ok(());
        };
        if drained
            && h.tasks_for
                .is_some_and(|(_, until)| stopping || BootClock::boot_now_ns() >= until)
        {
            h.tasks_for = None;
        }
        let memcg = h.staged.memcg;
        if h.names_until.is_some() {
            let until = self.names_until(memcg);
            if let Some(h) = self.held.as_mut() {
                h.names_until = until;
            }
        }
        let checking = self.checking();
        if let Some(h) = self.held.as_mut()
            && h.check_until
                .is_some_and(|t| !checking || BootClock::boot_now_ns() >= t)
        {
            h.check_until = None;
        }
        let Some(h) = self.held.take_if(|h| {
            h.names_until.is_none() && h.tasks_for.is_none() && h.check_until.is_none()
        }) else {
            return Ok(());
        };
        self.backlog.extend(h.behind);
        self.finish(h.staged)
    }

    /// Enriches or assembles a staged record, writes it, and what it
    /// starts or ends.
    fn finish(&mut self, s: Staged) -> Result<(), PipelineError> {
        let memcg = s.memcg;
        let mut r = match (s.record, &s.ev) {
            (Some(mut r), _) => {
                enrich::enrich(&mut r, self.pods.container(memcg));
                r
            }
            (None, RawEvent::Oom(e)) => self.kill_record(e, s.tasks.as_deref(), memcg, s.callsites),
            (None, _) => return Ok(()),
        };
        self.write(&mut r, memcg)?;
        if let Some(pid) = s.starts {
            self.container_started(memcg, pid, r.time, false)?;
        }
        if let Body::Exit(e) = &r.body {
            self.process_exited(memcg, e, r.time)?;
        }
        Ok(())
    }

    /// The `oom_kill` record: the kernel's, the task list, the victim's
    /// container and the reclaim before it, assembled in one place.
    fn kill_record(
        &mut self,
        e: &oom_tracer_common::OomEvent,
        tasks: Option<&OomTasksEvent>,
        memcg: u64,
        callsites: Option<Callsites>,
    ) -> Record {
        let time = self.translator.time(e.hdr.boot_ns);
        let stat = self.kernel.pressure_of(memcg);
        let last = stat
            .map(|s| s.last_ns)
            .filter(|&n| n > 0)
            .map(|n| self.translator.time(n));
        let pressure = self.analysis.pressure_at_kill(memcg, time, stat, last);
        let pods = &mut self.pods;
        let mut who = |id: u64| pods.container(id).cloned();
        let inputs = KillInputs {
            tasks,
            who: Some(&mut who),
            pressure,
            callsites,
        };
        Record::new(time, self.translator.oom_kill(e, inputs))
    }

    /// What call sites need of a record, at once: a process that grows is
    /// remembered (its mappings name its frames once it is gone), one that
    /// exits forgotten, and a kill's call sites are read and named.
    fn grow_or_kill(&mut self, ev: &RawEvent, memcg: u64) -> Option<Callsites> {
        if !self.kernel.has_callsites() {
            return None;
        }
        match ev {
            RawEvent::Alloc(a) => {
                self.symbols.learn(a.task.tgid);
                self.kernel.site_grew(memcg, a.task.tgid, a.stack_id);
            }
            RawEvent::Exit(x) if x.task.pid == x.task.tgid => {
                self.symbols.forget(x.task.tgid);
                self.kernel.process_ended(x.task.tgid);
            }
            RawEvent::Oom(e) => {
                let memcgs = callsites::memcgs_of(e, memcg);
                let raw = self.kernel.callsites(e, &memcgs, callsites::TOP_SITES)?;
                return Some(callsites::name(raw, e.trigger.tgid, &mut self.symbols));
            }
            _ => {}
        }
        None
    }

    /// A new cgroup: if pods live under it (the kubelet just made its
    /// root), watch it now, not at the next rescan, so the first
    /// containers are seen.
    fn cgroup_made(&mut self, id: u64) -> Result<(), PipelineError> {
        if let Some(path) = self.translator.index.resolve(id)
            && self.pods.is_pod_root(&path)
        {
            self.watch_root(id, &path)?;
        }
        Ok(())
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
        self.kernel.forget_callsites(id);
        self.pods.forget(id);
        self.lifecycle.removed(id);
        self.naming.remove(&id);
        self.roots.retain(|&r| r != id);
    }
}
