//! What the records mean, beyond what each says: why a process died
//! (`verdict.rs`), how a container ended in the runtime's words
//! (`exit.rs`), what filled the cgroup at a kill (`cause.rs`), the reclaim
//! pressure before it (`pressure.rs`), and each container attempt as a
//! whole (`cycles.rs`).
//! The pipeline hands every record through [`Analysis::observe`] before
//! the sinks see it.
use std::collections::HashMap;

use oom_tracer_common::PressureStat;

use crate::{
    backoff::BackoffPolicy,
    schema::{Body, Cycle, Pressure, Record, Timestamp},
};

pub(crate) mod cause;
mod cycles;
pub(crate) mod exit;
pub(crate) mod pressure;
mod verdict;

pub(crate) use cycles::Cycles;
use pressure::{Finding, PressureOptions, PressureTracker};
use verdict::Verdicts;

/// The analyses over one tracer's records.
pub(crate) struct Analysis {
    verdicts: Verdicts,
    cycles: Cycles,
    /// OOM kills per victim memcg id, while the memcg exists.
    kills_by_cgroup: HashMap<u64, u64>,
    oom_kills: u64,
    pressure: PressureTracker,
}

impl Analysis {
    /// `policy`: the kubelet back-off that `cycle` records compare
    /// restarts with; `pressure`: when to write `pressure` and `near_miss`.
    pub(crate) fn new(policy: BackoffPolicy, pressure: PressureOptions) -> Self {
        Self {
            verdicts: Verdicts::default(),
            cycles: Cycles::new(policy),
            kills_by_cgroup: HashMap::new(),
            oom_kills: 0,
            pressure: PressureTracker::new(pressure),
        }
    }

    /// A sample of the kernel's reclaim sums for `memcg`: `pressure` and
    /// `near_miss` findings to write.
    pub(crate) fn pressure_sample(
        &mut self,
        memcg: u64,
        now: Timestamp,
        stat: PressureStat,
        last_at: Option<Timestamp>,
    ) -> Vec<Finding> {
        self.pressure.sample(memcg, now, stat, last_at)
    }

    /// The pressure over the 10 s before a kill in `memcg` (`stat`: the
    /// kernel's sums read at the kill).
    pub(crate) fn pressure_at_kill(
        &mut self,
        memcg: u64,
        now: Timestamp,
        stat: Option<PressureStat>,
        last_at: Option<Timestamp>,
    ) -> Option<Pressure> {
        self.pressure.killed(memcg, now, stat, last_at)
    }

    /// Feeds one record. `memcg` is the kernel's id of the cgroup the
    /// record is about (the victim's for an OOM kill, the process's for an
    /// exit; 0 for userspace records). Fills in the verdict of an exit, and
    /// returns the `cycle` records this record completes, to be written
    /// after it.
    pub(crate) fn observe(&mut self, r: &mut Record, memcg: u64) -> Vec<Cycle> {
        match &mut r.body {
            Body::Signal(s) if s.signal == 9 => {
                self.verdicts
                    .sigkill(s.target.tgid, s.from_kernel, s.sender.tgid, &s.sender.comm);
            }
            Body::OomKill(o) => {
                self.oom_kills += 1;
                *self.kills_by_cgroup.entry(memcg).or_default() += 1;
                self.verdicts
                    .oom_victim(o.victim.tgid, memcg, o.memcg.is_some());
            }
            Body::Exit(e) => {
                let (verdict, killed_by) =
                    self.verdicts
                        .on_exit(e.proc.tgid, memcg, e.signal, e.exit_code);
                e.verdict = verdict;
                e.killed_by = killed_by;
            }
            _ => {}
        }
        self.cycles.observe(r)
    }

    /// The memory cgroup `memcg` is gone (reported or not): forget it.
    pub(crate) fn cgroup_removed(&mut self, memcg: u64) {
        self.kills_by_cgroup.remove(&memcg);
        self.verdicts.cgroup_removed(memcg);
        self.pressure.forget(memcg);
    }

    /// Whether the OOM killer killed a process in memory cgroup `memcg`.
    pub(crate) fn oom_killed_in(&self, memcg: u64) -> bool {
        self.kills_by_cgroup.get(&memcg).is_some_and(|&n| n > 0)
    }

    /// OOM kills seen so far.
    pub(crate) fn oom_kills(&self) -> u64 {
        self.oom_kills
    }

    /// At shutdown: a `cycle` record for every attempt not reported yet.
    pub(crate) fn finish(&mut self) -> Vec<Cycle> {
        self.cycles.finish()
    }
}
