//! Cycle analysis: one `cycle` record per container attempt, after its
//! kill → restart and at shutdown. It answers what the single kill record
//! cannot: how fast memory grew and how long it took to reach the limit,
//! which limit was hit, who triggered the OOM and who died (every victim of
//! one OOM grouped as one incident), how the container ended, and how the
//! observed restart delay compares to the kubelet's back-off schedule.
use std::{collections::HashMap, time::Duration};

use crate::{
    backoff::{Backoff, BackoffPolicy},
    schema::{
        Alloc, AllocKind, Body, Cause, ContainerExit, ContainerRef, ContainerStart, ContainerState,
        Cycle, CycleExit, CycleRestart, ExitReason, Incident, Memcg, OomKill, Part, PodRef, Ramp,
        Record, Restart, Site, Timestamp,
    },
};

/// Kills of one memcg this close together are one incident (memory.oom.group
/// kills every process of the cgroup, one mark_victim each).
const INCIDENT_WINDOW: Duration = Duration::from_millis(500);

/// What is known so far about one attempt of a container.
#[derive(Debug, Clone, Default)]
struct Attempt {
    pod: Option<PodRef>,
    container: Option<ContainerRef>,
    started: Option<Timestamp>,
    ramp_first: Option<(Timestamp, u64)>,
    ramp_last: Option<(Timestamp, u64)>,
    peak: u64,
    samples: u32,
    limit: Option<Memcg>,
    /// The first incident: when, which memcg, what.
    incident: Option<(Timestamp, u64, Incident)>,
    incidents: u32,
    exit: Option<CycleExit>,
    /// The cause of the first incident.
    cause: Option<Cause>,
    /// The call sites at the first incident.
    top_sites: Vec<Site>,
}

impl Attempt {
    fn is_empty(&self) -> bool {
        self.samples == 0 && self.incident.is_none() && self.exit.is_none()
    }
}

/// Identity of a container across restarts: pod uid and container name.
fn key(pod: Option<&PodRef>, container: Option<&ContainerRef>) -> Option<String> {
    let pod = pod?;
    Some(format!(
        "{}/{}",
        pod.uid,
        container
            .and_then(|c| c.name.as_deref())
            .unwrap_or_default()
    ))
}

pub(crate) struct Cycles {
    policy: BackoffPolicy,
    current: HashMap<String, Attempt>,
    /// An attempt that ended and whose restart has not been seen yet.
    ended: HashMap<String, Attempt>,
    schedules: HashMap<String, Backoff>,
    /// The cause of each container's last reported attempt.
    last_cause: HashMap<String, Part>,
}

impl Cycles {
    pub(crate) fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            current: HashMap::new(),
            ended: HashMap::new(),
            schedules: HashMap::new(),
            last_cause: HashMap::new(),
        }
    }

    /// Feeds one record; returns the `cycle` records it completes.
    pub(crate) fn observe(&mut self, r: &Record) -> Vec<Cycle> {
        match &r.body {
            Body::ContainerStart(s) => self.container_start(r.time, s),
            Body::Alloc(a) => self.alloc(r.time, a),
            Body::OomKill(o) => self.oom_kill(r.time, o),
            Body::ContainerExit(e) => self.container_exit(r.time, e),
            Body::Restart(s) => return self.restart(r.time, s).into_iter().collect(),
            _ => {}
        }
        Vec::new()
    }

    fn container_start(&mut self, at: Timestamp, s: &ContainerStart) {
        let Some(k) = key(Some(&s.pod), Some(&s.container)) else {
            return;
        };
        if let Some(prev) = self.current.remove(&k)
            && prev.exit.is_some()
        {
            self.ended.insert(k.clone(), prev);
        }
        self.current.insert(
            k,
            Attempt {
                pod: Some(s.pod.clone()),
                container: Some(s.container.clone()),
                started: Some(at),
                ..Default::default()
            },
        );
    }

    fn alloc(&mut self, at: Timestamp, a: &Alloc) {
        // The ramp is the processes' anonymous memory; file and shmem
        // growth show in the `alloc` records themselves.
        if a.kind != AllocKind::Anon {
            return;
        }
        if let Some(att) = self.attempt(a.pod.as_ref(), a.container.as_ref()) {
            att.ramp_first.get_or_insert((at, a.anon_rss_bytes));
            att.ramp_last = Some((at, a.anon_rss_bytes));
            att.peak = att.peak.max(a.anon_rss_bytes);
            att.samples += 1;
        }
    }

    fn oom_kill(&mut self, at: Timestamp, o: &OomKill) {
        let Some(att) = self.attempt(o.pod.as_ref(), o.container.as_ref()) else {
            return;
        };
        let memcg = o.memcg.as_ref().map_or(0, |m| m.id);
        match &mut att.incident {
            // Another victim of the same OOM.
            Some((t0, id0, inc)) if *id0 == memcg && at.since(*t0) <= INCIDENT_WINDOW => {
                inc.victims.push(o.victim.clone());
                inc.group_kill = true;
            }
            _ => {
                att.incidents += 1;
                if att.incident.is_none() {
                    let inc = Incident {
                        kind: o.kind,
                        at,
                        trigger: o.trigger.clone(),
                        victims: vec![o.victim.clone()],
                        group_kill: false,
                    };
                    att.incident = Some((at, memcg, inc));
                    att.limit = o.memcg.clone();
                    att.cause = o.cause.clone();
                    att.top_sites = o
                        .callsites
                        .as_ref()
                        .map(|c| c.top.clone())
                        .unwrap_or_default();
                }
            }
        }
    }

    fn container_exit(&mut self, at: Timestamp, e: &ContainerExit) {
        if let Some(att) = self.attempt(Some(&e.pod), Some(&e.container)) {
            att.exit = Some(CycleExit {
                at,
                exit_code: e.exit_code,
                signal: e.signal,
                reason: e.reason,
                verdict: e.verdict,
                ran_ms: e.ran_ms,
            });
        }
    }

    /// The attempt before a restart is complete: its cycle, with the
    /// observed back-off against the kubelet's schedule.
    fn restart(&mut self, at: Timestamp, s: &Restart) -> Option<Cycle> {
        let k = key(Some(&s.pod), Some(&s.container))?;
        // Agent: the new container started first (`ended` holds the old
        // one); run: the old one is still current.
        let prev = match self.ended.remove(&k) {
            Some(p) => p,
            None => self.current.remove(&k).filter(|a| a.exit.is_some())?,
        };
        let ran = Duration::from_millis(prev.exit.as_ref().map_or(0, |e| e.ran_ms));
        let schedule = self
            .schedules
            .entry(k)
            .or_insert_with(|| Backoff::new(self.policy));
        let expected = schedule.next_delay(ran);
        let next = schedule.peek_next();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let restart = CycleRestart {
            restart_count: s.restart_count,
            observed_backoff_ms: s.backoff_ms,
            expected_backoff_ms: ms(expected),
            deviation_ms: s.backoff_ms as i64 - ms(expected) as i64,
            next_expected_backoff_ms: ms(next),
            next_restart_predicted_at: at + ran + next,
        };
        Some(self.cycle(prev, Some(restart), ContainerState::Running))
    }

    fn attempt(
        &mut self,
        pod: Option<&PodRef>,
        container: Option<&ContainerRef>,
    ) -> Option<&mut Attempt> {
        let k = key(pod, container)?;
        Some(self.current.entry(k).or_insert_with(|| Attempt {
            pod: pod.cloned(),
            container: container.cloned(),
            ..Default::default()
        }))
    }

    /// At shutdown: a cycle for every attempt not reported yet.
    pub(crate) fn finish(&mut self) -> Vec<Cycle> {
        let mut attempts: Vec<Attempt> = self.ended.drain().map(|(_, a)| a).collect();
        attempts.extend(self.current.drain().map(|(_, a)| a));
        attempts.sort_by_key(|a| a.started);
        attempts
            .into_iter()
            .filter(|a| !a.is_empty())
            .map(|a| {
                let state = match &a.exit {
                    None => ContainerState::Running,
                    // It exited and was waiting for (or denied) a restart.
                    Some(_) => ContainerState::Terminated,
                };
                self.cycle(a, None, state)
            })
            .collect()
    }
}

/// The ramp of an attempt: its first and last samples, and the time from
/// the container's start (else the first sample) to the kill.
fn ramp(a: &Attempt) -> Option<Ramp> {
    let (t0, first) = a.ramp_first?;
    let (t1, last) = a.ramp_last.unwrap_or((t0, first));
    let dt = t1.since(t0).as_secs_f64();
    let growth = (dt > 0.0).then(|| (last as f64 - first as f64) / (1024.0 * 1024.0) / dt);
    let from = a.started.unwrap_or(t0);
    Some(Ramp {
        started_at: t0,
        first_rss_bytes: first,
        peak_rss_bytes: a.peak,
        growth_mib_per_s: growth.map(|g| (g * 10.0).round() / 10.0),
        time_to_limit_ms: a.incident.as_ref().map(|(k, _, _)| k.ms_since(from)),
        samples: a.samples,
    })
}

/// An attempt that reached its limit this soon after its start died of
/// what the previous attempt left behind, if the cause is the same and the
/// victim did not build it itself ([`own_doing`]).
const AT_ONCE_MS: u64 = 1000;

/// The victim itself holds the memory of the cause (its own RSS is at least
/// half of it): this attempt built it, however fast, so nothing outlived the
/// restart. A fast anonymous ramp is the common case. Without the victim's
/// RSS, only anonymous memory counts as its own: it goes with its tasks,
/// where tmpfs, page cache and kernel memory stay charged to the cgroup.
fn own_doing(c: &Cause) -> bool {
    match c.victim_rss_bytes {
        Some(rss) => rss.saturating_mul(2) >= c.bytes,
        None => c.part == Part::Anon,
    }
}

impl Cycles {
    /// The cycle record of attempt `a`; remembers its cause for the next.
    fn cycle(&mut self, a: Attempt, restart: Option<CycleRestart>, state: ContainerState) -> Cycle {
        let k = key(a.pod.as_ref(), a.container.as_ref());
        let cause = a.cause.as_ref().map(|c| c.part);
        let previous = k.as_ref().and_then(|k| self.last_cause.get(k)).copied();
        let at_once = ramp(&a)
            .and_then(|r| r.time_to_limit_ms)
            .or_else(|| {
                a.incident
                    .as_ref()
                    .map(|(t, _, _)| a.started.map_or(0, |s| t.ms_since(s)))
            })
            .is_some_and(|ms| ms < AT_ONCE_MS);
        if let (Some(k), Some(c)) = (k, cause) {
            self.last_cause.insert(k, c);
        }
        let mut c = cycle(a, restart, state);
        c.cause_carried_over = at_once
            && cause.is_some()
            && cause == previous
            && c.cause.as_ref().is_some_and(|cause| !own_doing(cause));
        c
    }
}

fn cycle(a: Attempt, restart: Option<CycleRestart>, state: ContainerState) -> Cycle {
    let reason = a.exit.as_ref().map(|e| e.reason);
    let state = if restart.is_none()
        && state == ContainerState::Terminated
        && reason != Some(ExitReason::Completed)
    {
        // Kubernetes shows a crashing container waiting for its restart so.
        ContainerState::CrashLoopBackOff
    } else {
        state
    };
    Cycle {
        ramp: ramp(&a),
        pod: a.pod,
        container: a.container,
        state,
        last_state_reason: reason,
        limit: a.limit,
        incident: a.incident.map(|(_, _, i)| i),
        oom_incidents: a.incidents,
        exit: a.exit,
        restart,
        cause: a.cause,
        cause_carried_over: false,
        top_sites: a.top_sites,
    }
}

#[cfg(test)]
mod tests;
