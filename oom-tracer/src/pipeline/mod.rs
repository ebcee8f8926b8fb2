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
//! `handle.rs` takes one record through stages 3 to 6; this file holds the
//! loop around it (start, pump, trace, stop). Nothing on this loop waits
//! on I/O: the pod sources answer beside it (`PodAccessor::poll`), and a
//! new container's first records wait at most 50 ms for its names
//! (`handle.rs`), the `oom_kill` record being assembled whole in
//! `translate/kill.rs`.
//!
//! `run` and `agent` differ only in the accessor they hand in (where
//! containers and their metadata come from) and in what they do between
//! pumps: `run` spawns and restarts its workload, `agent` rescans the node.
use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::Arc,
    time::Duration,
};

use oom_tracer_common::decode::{RawEvent, decode};
use tokio::time::MissedTickBehavior;

mod callsites;
mod enrich;
mod handle;
pub(crate) mod kernel;
mod lifecycle;
mod losses;
mod pressure;
pub(crate) mod statcheck;
pub(crate) mod translate;
mod watch;
mod workload;

use handle::Held;
pub(crate) use kernel::Kernel;
use lifecycle::Lifecycle;
use translate::Translator;

use crate::{
    analyse::Analysis,
    bpf::tracer::WatchError,
    health::Health,
    host::{self, clock::BootClock, signals::Signals},
    pods::PodAccessor,
    schema::{Body, BreakdownCheck, CgroupVersion, Lost, Mode, Record, Start, Stop, StopReason},
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
    /// Records held back (a kill waiting for its task list), handled next.
    backlog: Vec<RawEvent>,
    /// The startup check's verdict on the memory breakdown.
    breakdown: Option<BreakdownCheck>,
    /// The record held back (a kill for its task list, a new container's
    /// records for its names) and those behind it.
    held: Option<Held>,
    /// New containers whose records wait for names: until when (boot ns).
    naming: HashMap<u64, u64>,
    /// The startup check, while it runs beside the tracing.
    check: statcheck::CheckState,
    /// Stopping: nothing waits for names any more.
    stopping: bool,
    /// Names the frames of call sites.
    symbols: crate::symbols::Symbols,
    /// The containers running at the startup were looked for: a pod root
    /// watched from now on is searched for running ones itself.
    discovered: bool,
}

impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// Tests: name call sites as if their processes were gone.
    pub(crate) fn callsites_as_gone(&mut self, on: bool) {
        self.symbols.as_gone = on;
    }

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
            held: None,
            naming: HashMap::new(),
            check: statcheck::CheckState::default(),
            stopping: false,
            symbols: crate::symbols::Symbols::new(),
            discovered: false,
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
        if self.kernel.has_callsites() {
            // Kernel symbols read before the first kill needs them.
            self.symbols.warm(Duration::from_secs(2));
        }
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
        self.process(backlog.into())
    }

    /// Handles `queue` in order. The records behind one held back come
    /// back here when it is written; at the end, a record still waiting
    /// (for names, for a kill's task list) stays held, and its deadline
    /// wakes `trace_until`.
    fn process(&mut self, mut queue: VecDeque<RawEvent>) -> Result<(), PipelineError> {
        loop {
            while let Some(ev) = queue.pop_front() {
                self.handle(&ev)?;
                for held in self.backlog.drain(..).rev() {
                    queue.push_front(held);
                }
            }
            self.settle(true)?;
            if self.backlog.is_empty() {
                return Ok(());
            }
            queue.extend(self.backlog.drain(..));
        }
    }

    /// Takes in what the pod sources answered: names of containers, and
    /// the `restart` records that waited for them (at their start's time).
    fn names(&mut self) -> Result<(), PipelineError> {
        let mut waiting = Vec::new();
        for id in self.pods.poll() {
            if let Some(c) = self.pods.container(id) {
                self.sinks.named(&c.pod, &c.container)?;
                if self.lifecycle.waits_for_names(id) {
                    waiting.push((id, c.clone()));
                }
            }
        }
        for (at, body) in self.lifecycle.named(waiting) {
            self.write(&mut Record::new(at, body), 0)?;
        }
        Ok(())
    }

    /// The next time the record held back must be looked at again.
    fn held_deadline(&self) -> Option<tokio::time::Instant> {
        let until = self.held.as_ref()?.deadline_ns()?;
        let left = until.saturating_sub(BootClock::boot_now_ns());
        Some(tokio::time::Instant::now() + Duration::from_nanos(left))
    }

    /// Drains the ring buffer through every stage, then reports new losses.
    pub(crate) async fn pump(&mut self) -> Result<(), PipelineError> {
        self.poll_check()?;
        self.symbols.new_drain(callsites::NAMING_BUDGET);
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
        let res = self.names().and_then(|()| self.process(events.into()));
        let res = res.and_then(|()| self.report_losses());
        self.sinks.end_batch()?;
        res?;
        if let Some(h) = &self.health {
            h.tick();
        }
        Ok(())
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
            let held = self.held_deadline();
            let held = async {
                match held {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                s = signals.recv() => return Ok(Until::Signal(s)),
                out = &mut until => return Ok(Until::Done(out)),
                () = self.kernel.readable() => self.pump().await?,
                () = self.pods.changed() => self.pump().await?,
                () = held => self.pump().await?,
                _ = tick.tick() => self.pump().await?,
                _ = pressure.tick() => self.poll_pressure().await?,
            }
        }
    }

    /// The last records: a `cycle` for every attempt not reported yet, then
    /// `stop` with the totals and why.
    pub(crate) async fn stop(
        &mut self,
        reason: StopReason,
        restarts: u32,
    ) -> Result<(), PipelineError> {
        // Nothing waits any more: not for the check, not for names. A
        // verdict already come is applied first.
        self.poll_check()?;
        self.end_check();
        self.stopping = true;
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

#[cfg(test)]
mod tests;
