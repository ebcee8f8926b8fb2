//! The one record pipeline. Records flow one way, the same in every mode:
//!
//! 1. **tracer** (`bpf::tracer`, behind [`Kernel`]): raw bytes from the ring buffer;
//! 2. **decode** (`oom_tracer_common::decode`): length-checked kernel records;
//! 3. **translate** (`translate/`): times, cgroup paths, processes;
//! 4. **enrich** (`enrich.rs`, with the mode's [`PodAccessor`]): pod and
//!    container; a container's first exec starts it (`lifecycle.rs`);
//! 5. **analyse** (`crate::analyse`): verdicts, container exits, cycles;
//! 6. **sinks** (`crate::sinks`): stdout, metrics, Kubernetes Events.
//!
//! `run` and `agent` differ only in the accessor they hand in (where
//! containers and their metadata come from) and in what they do between
//! pumps: `run` spawns and restarts its workload, `agent` rescans the node.
use std::{collections::VecDeque, future::Future, sync::Arc, time::Duration};

use oom_tracer_common::decode::{DecodeError, RawEvent, decode};
use tokio::time::MissedTickBehavior;

mod enrich;
pub(crate) mod kernel;
mod lifecycle;
pub(crate) mod statcheck;
pub(crate) mod translate;

pub(crate) use kernel::Kernel;
use lifecycle::{Ending, Lifecycle};
use translate::{Translator, memcg_of};

use crate::{
    analyse::{Analysis, pressure::Finding},
    bpf::tracer::WatchError,
    cgroup::pod::procs,
    health::Health,
    host::{self, signals::Signals},
    pods::{Container, Learned, PodAccessor},
    schema::{
        Body, BreakdownCheck, CgroupVersion, Exit, ExitReason, Lost, Mode, NearMiss, Record,
        Restart, Start, Stop, StopReason, Timestamp,
    },
    sinks::{SinkError, Sinks},
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum PipelineError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Watch(#[from] WatchError),
}

/// How [`Pipeline::trace_until`] ended.
pub(crate) enum Until<T> {
    /// The future completed.
    Done(T),
    /// A stop signal came first (its name).
    Signal(&'static str),
}

/// How often the ring buffer is drained without a wakeup (bulk records
/// are written without one).
const DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// How often the kernel's reclaim sums are read.
const PRESSURE_POLL: Duration = Duration::from_secs(1);

/// An `oom_kill` waiting for the task list that follows it in the ring.
struct PendingKill {
    record: Record,
    memcg: u64,
    victim_pid: u32,
    /// Records that came between, written after it, in their order.
    held: Vec<RawEvent>,
}

pub(crate) struct Pipeline<K, P> {
    kernel: K,
    translator: Translator,
    pods: P,
    lifecycle: Lifecycle,
    analysis: Analysis,
    sinks: Sinks,
    health: Option<Arc<Health>>,
    decode_errors: u64,
    /// Loss totals already reported in `lost` records.
    reported: Lost,
    /// Watched cgroups under which pods live.
    roots: Vec<u64>,
    /// Records read during the startup check, handled after `start`.
    backlog: Vec<RawEvent>,
    /// The startup check's verdict on the memory breakdown.
    breakdown: Option<BreakdownCheck>,
    pending: Option<PendingKill>,
}

impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    pub(crate) fn new(
        kernel: K,
        translator: Translator,
        pods: P,
        sinks: Sinks,
        analysis: Analysis,
    ) -> Self {
        Self {
            kernel,
            translator,
            pods,
            lifecycle: Lifecycle::default(),
            analysis,
            sinks,
            health: None,
            decode_errors: 0,
            reported: Lost {
                ringbuf_full: 0,
                read_errors: 0,
                decode_errors: 0,
            },
            roots: Vec::new(),
            backlog: Vec::new(),
            breakdown: None,
            pending: None,
        }
    }

    /// Ticks `health` (liveness) on every pump.
    pub(crate) fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    pub(crate) fn pods(&mut self) -> &mut P {
        &mut self.pods
    }

    /// The `start` record.
    pub(crate) async fn start(
        &mut self,
        mode: Mode,
        cgroup_version: Option<CgroupVersion>,
    ) -> Result<(), PipelineError> {
        let start = Start {
            version: env!("CARGO_PKG_VERSION").into(),
            mode,
            kernel: host::kernel_release(),
            cgroup_version,
            hooks: self.kernel.hooks(),
            startup_ms: self.kernel.startup_ms(),
            breakdown: self.breakdown.clone(),
        };
        let now = self.translator.now();
        self.write(&mut Record::new(now, start), 0)?;
        let backlog = std::mem::take(&mut self.backlog);
        self.process(backlog.into()).await
    }

    /// Handles `queue` in order. Records a kill held back (waiting for its
    /// task list) come back here when it is written; at the end, a kill
    /// whose task list did not come goes without.
    async fn process(&mut self, mut queue: VecDeque<RawEvent>) -> Result<(), PipelineError> {
        loop {
            while let Some(ev) = queue.pop_front() {
                self.handle(&ev).await?;
                for held in self.backlog.drain(..).rev() {
                    queue.push_front(held);
                }
            }
            self.flush_pending()?;
            if self.backlog.is_empty() {
                return Ok(());
            }
            queue.extend(self.backlog.drain(..));
        }
    }

    /// Drains the ring buffer through every stage, then reports new losses.
    pub(crate) async fn pump(&mut self) -> Result<(), PipelineError> {
        let mut events = Vec::new();
        let mut bad = Vec::new();
        self.kernel.drain(&mut |bytes| match decode(bytes) {
            Ok(ev) => events.push(ev),
            Err(e) => bad.push(e),
        });
        for e in bad {
            self.decode_error(&e);
        }
        // One batch: the drain's lines leave in one write.
        self.sinks.batch();
        let res = self.process(events.into()).await;
        let res = res.and_then(|()| self.report_losses());
        self.sinks.end_batch()?;
        res?;
        if let Some(h) = &self.health {
            h.tick();
        }
        Ok(())
    }

    fn decode_error(&mut self, e: &DecodeError) {
        self.decode_errors += 1;
        let n = self.decode_errors;
        // The first few, then every thousandth: a bad stream must not flood stderr.
        if n <= 5 || n.is_multiple_of(1000) {
            tracing::warn!("dropped a malformed ring-buffer record ({e}); {n} so far");
        }
    }

    /// One kernel record through translate, enrich, analyse and the sinks.
    async fn handle(&mut self, ev: &RawEvent) -> Result<(), PipelineError> {
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
            let path = e.cgroup.clone().unwrap_or_default();
            match self.pods.learn(memcg, &path, &e.proc.comm).await {
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
    fn flush_pending(&mut self) -> Result<(), PipelineError> {
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

    /// Analysis, then the sinks, then the `cycle` records `r` completed.
    fn write(&mut self, r: &mut Record, memcg: u64) -> Result<(), PipelineError> {
        let cycles = self.analysis.observe(r, memcg);
        self.sinks.write(r)?;
        for c in cycles {
            self.sinks.write(&Record::new(r.time, c))?;
        }
        Ok(())
    }

    /// A userspace record (run's back-off, say), after the kernel's records
    /// so far, so the output stays in time order.
    pub(crate) async fn emit(&mut self, body: impl Into<Body>) -> Result<(), PipelineError> {
        self.pump().await?;
        let now = self.translator.now();
        self.write(&mut Record::new(now, body), 0)
    }

    fn container_started(
        &mut self,
        memcg: u64,
        pid: u32,
        at: Timestamp,
        discovered: bool,
    ) -> Result<(), PipelineError> {
        let Some(c) = self.pods.container(memcg).cloned() else {
            return Ok(());
        };
        for body in self.lifecycle.started(memcg, &c, pid, at, discovered) {
            self.write(&mut Record::new(at, body), 0)?;
        }
        Ok(())
    }

    fn process_exited(&mut self, memcg: u64, e: &Exit, at: Timestamp) -> Result<(), PipelineError> {
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

    fn container_ended(&mut self, memcg: u64, end: &Ending) -> Result<(), PipelineError> {
        let Some(c) = self.pods.container(memcg).cloned() else {
            return Ok(());
        };
        if let Some(x) = self.lifecycle.exited(memcg, &c, end) {
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

    /// A `lost` record when the kernel dropped or mangled records since the last one.
    fn report_losses(&mut self) -> Result<(), PipelineError> {
        let k = self.kernel.counters();
        let total = Lost {
            ringbuf_full: k.ringbuf_full,
            read_errors: k.read_errors,
            decode_errors: self.decode_errors,
        };
        if total == self.reported {
            return Ok(());
        }
        let was = std::mem::replace(&mut self.reported, total.clone());
        if total.ringbuf_full > was.ringbuf_full {
            tracing::warn!(
                "ring buffer full: {} records lost so far (--ring-buffer-size)",
                total.ringbuf_full
            );
        }
        let lost = Lost {
            ringbuf_full: total.ringbuf_full.saturating_sub(was.ringbuf_full),
            read_errors: total.read_errors.saturating_sub(was.read_errors),
            decode_errors: total.decode_errors.saturating_sub(was.decode_errors),
        };
        let now = self.translator.now();
        self.write(&mut Record::new(now, lost), 0)
    }

    /// Traces until `until` completes or a stop signal arrives: the ring
    /// buffer is drained when the kernel wakes the reader (OOM kills) and
    /// every 100 ms (bulk records).
    pub(crate) async fn trace_until<F: Future>(
        &mut self,
        signals: &mut Signals,
        until: F,
    ) -> Result<Until<F::Output>, PipelineError> {
        tokio::pin!(until);
        let mut tick = tokio::time::interval(DRAIN_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pressure = tokio::time::interval(PRESSURE_POLL);
        pressure.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                s = signals.recv() => return Ok(Until::Signal(s)),
                out = &mut until => return Ok(Until::Done(out)),
                () = self.kernel.readable() => self.pump().await?,
                _ = tick.tick() => self.pump().await?,
                _ = pressure.tick() => self.poll_pressure().await?,
            }
        }
    }

    /// Reads the kernel's reclaim sums: `pressure` records while a cgroup
    /// reclaims at its limit, `near_miss` when it stalled and survived.
    async fn poll_pressure(&mut self) -> Result<(), PipelineError> {
        let sums = self.kernel.pressure();
        if sums.is_empty() {
            return Ok(());
        }
        self.pump().await?;
        let now = self.translator.now();
        for (memcg, stat) in sums {
            let last = (stat.last_ns > 0).then(|| self.translator.time(stat.last_ns));
            for finding in self.analysis.pressure_sample(memcg, now, stat, last) {
                let cgroup = self.translator.index.resolve(memcg);
                let c = self.pods.container(memcg);
                let (pod, container) = (c.map(|c| c.pod.clone()), c.map(|c| c.container.clone()));
                let body: Body = match finding {
                    Finding::Pressure { pressure, .. } => crate::schema::PressureRecord {
                        cgroup,
                        pod,
                        container,
                        pressure,
                    }
                    .into(),
                    Finding::NearMiss {
                        since, pressure, ..
                    } => NearMiss {
                        cgroup,
                        pod,
                        container,
                        since,
                        pressure,
                    }
                    .into(),
                };
                self.write(&mut Record::new(now, body), memcg)?;
            }
        }
        Ok(())
    }

    /// The last records: a `cycle` for every attempt not reported yet, then
    /// `stop` with the totals and why.
    pub(crate) async fn stop(
        &mut self,
        reason: StopReason,
        restarts: u32,
    ) -> Result<(), PipelineError> {
        self.pump().await?;
        let now = self.translator.now();
        for c in self.analysis.finish() {
            self.sinks.write(&Record::new(now, c))?;
        }
        let stop = Stop {
            reason,
            restarts,
            oom_kills: self.analysis.oom_kills(),
            records: self.sinks.written() + 1,
            lost_events: self.kernel.counters().ringbuf_full,
            decode_errors: self.decode_errors,
            unresolved_cgroups: self.translator.index.unresolved,
            hook_stats: self.kernel.hook_stats(),
        };
        self.sinks.write(&Record::new(now, stop))?;
        Ok(())
    }
}

/// Watching cgroups.
impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// Traces cgroup `id` at `path` and below, and reports the mkdir and
    /// rmdir of cgroups there.
    pub(crate) fn watch(&mut self, id: u64, path: &str) -> Result<(), PipelineError> {
        self.kernel.watch(id)?;
        self.translator.index.insert(id, path);
        self.translator.watch_path(path);
        Ok(())
    }

    pub(crate) fn unwatch(&mut self, id: u64) {
        self.kernel.unwatch(id);
    }

    fn watch_root(&mut self, id: u64, path: &str) {
        if self.roots.contains(&id) {
            return;
        }
        match self.kernel.watch(id) {
            Ok(()) => {
                tracing::info!("watching pods under {path}");
                self.roots.push(id);
                self.translator.watch_path(path);
            }
            Err(e) => tracing::warn!("{}", crate::errors::chain(&e)),
        }
    }

    /// Whether a cgroup under which pods live is watched.
    pub(crate) fn has_pod_roots(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Looks for new pod roots (the kubelet may start after the agent) and
    /// re-reads the metadata sources.
    pub(crate) async fn rescan(&mut self) {
        self.translator.index.scan();
        let roots: Vec<(u64, String)> = self
            .translator
            .index
            .entries()
            .filter(|(_, p)| self.pods.is_pod_root(p))
            .map(|(id, p)| (id, p.to_owned()))
            .collect();
        for (id, path) in roots {
            self.watch_root(id, &path);
        }
        self.pods.refresh().await;
    }

    /// Containers already running: found in the cgroup tree, reported with
    /// `discovered: true`, their lowest pid taken as the main process.
    /// Returns how many.
    pub(crate) async fn discover(&mut self) -> Result<usize, PipelineError> {
        self.pods.refresh().await;
        let Some(h) = self.translator.index.hierarchy().cloned() else {
            return Ok(0);
        };
        let cgroups: Vec<(u64, String)> = self
            .translator
            .index
            .entries()
            .map(|(id, p)| (id, p.to_owned()))
            .collect();
        let mut found = 0;
        for (id, path) in cgroups {
            let Some(&pid) = procs(&h.dir(&path)).iter().min() else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if self.lifecycle.is_tracked(id)
                || self.pods.learn(id, &path, comm.trim()).await != Learned::Container
            {
                continue;
            }
            let now = self.translator.now();
            self.container_started(id, pid as u32, now, true)?;
            found += 1;
        }
        Ok(found)
    }
}

/// What `run` tells the pipeline about the containers it runs itself.
impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// `run` spawned `pid` into container `c`'s cgroup `id`. Its exec
    /// record normally started the container already; this covers a
    /// skipped exec hook.
    pub(crate) async fn spawned(&mut self, id: u64, pid: u32) -> Result<(), PipelineError> {
        self.pump().await?;
        if !self.lifecycle.is_tracked(id) {
            let now = self.translator.now();
            self.container_started(id, pid, now, false)?;
        }
        Ok(())
    }

    /// `run` reaped the main process of the container in cgroup `id`. Its
    /// exit record normally ended the container already; this covers a
    /// skipped exit hook. Returns the container's exit reason.
    pub(crate) async fn reaped(
        &mut self,
        id: u64,
        signal: Option<u32>,
        status: Option<u32>,
    ) -> Result<Option<ExitReason>, PipelineError> {
        self.pump().await?;
        if let Some(pid) = self.lifecycle.running_pid(id) {
            let end = Ending {
                pid,
                at: self.translator.now(),
                signal,
                status,
                verdict: None,
                oom_killed: self.analysis.oom_killed_in(id),
            };
            self.container_ended(id, &end)?;
        }
        Ok(self.lifecycle.exit_reason(id))
    }

    /// `run` restarts container `next` (after its back-off): the `restart`
    /// record. The new container's start is then not a restart again.
    pub(crate) async fn restarted(
        &mut self,
        restart: Restart,
        next: &Container,
    ) -> Result<(), PipelineError> {
        self.lifecycle.restart_reported(next);
        self.emit(restart).await
    }
}

#[cfg(test)]
mod tests;
