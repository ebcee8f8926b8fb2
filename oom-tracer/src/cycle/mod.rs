//! Cycle analysis: one `cycle` record per container attempt, after its
//! kill → restart and at shutdown. It answers what the single kill record
//! cannot: how fast memory grew and how long it took to reach the limit,
//! which limit was hit, who triggered the OOM and who died (every victim of
//! one OOM grouped as one incident), how the container ended, and how the
//! observed restart delay compares to the kubelet's back-off schedule.
use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::{
    backoff::{Backoff, BackoffPolicy},
    clock::rfc3339,
    record::{Body, ContainerRef, Memcg, PodRef, Record, Trigger, Victim},
    verdict::Verdict,
};

/// Kills of one memcg this close together are one incident (memory.oom.group
/// kills every process of the cgroup, one mark_victim each).
const INCIDENT_WINDOW: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ramp {
    pub started_at: String,
    pub first_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// Growth of anonymous memory from the first to the last sample.
    pub growth_mib_per_s: Option<f64>,
    /// From the container's start (else the first sample) to the OOM kill.
    pub time_to_limit_ms: Option<u64>,
    pub samples: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Incident {
    /// `memcg` or `global`.
    pub kind: String,
    pub at: String,
    pub trigger: Trigger,
    pub victims: Vec<Victim>,
    /// More than one victim: the whole group was killed (memory.oom.group).
    pub group_kill: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CycleExit {
    pub at: String,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub verdict: Option<Verdict>,
    pub ran_ms: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CycleRestart {
    pub restart_count: u32,
    pub observed_backoff_ms: u64,
    /// What the kubelet's schedule (--backoff-initial/-max/-reset) predicts.
    pub expected_backoff_ms: u64,
    pub deviation_ms: i64,
    /// The wait before the restart after this one, if it crashes again.
    pub next_expected_backoff_ms: u64,
    /// When that restart would happen if the next run is as long as this one.
    pub next_restart_predicted_at: String,
}

#[derive(Debug, Clone, Default)]
struct Attempt {
    pod: Option<PodRef>,
    container: Option<ContainerRef>,
    started: Option<SystemTime>,
    ramp_first: Option<(SystemTime, u64)>,
    ramp_last: Option<(SystemTime, u64)>,
    peak: u64,
    samples: u32,
    limit: Option<Memcg>,
    incident: Option<(SystemTime, u64, Incident)>,
    incidents: u32,
    exit: Option<(SystemTime, CycleExit)>,
}

fn parse_time(t: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(t).ok()
}

fn ms_between(a: SystemTime, b: SystemTime) -> u64 {
    b.duration_since(a).map_or(0, |d| d.as_millis() as u64)
}

/// Identity of a container across restarts.
fn key(pod: Option<&PodRef>, container: Option<&ContainerRef>) -> Option<String> {
    let pod = pod?;
    Some(format!(
        "{}/{}",
        pod.uid,
        container.and_then(|c| c.name.clone()).unwrap_or_default()
    ))
}

pub struct Cycles {
    policy: BackoffPolicy,
    current: HashMap<String, Attempt>,
    /// An attempt that ended and whose restart has not been seen yet.
    ended: HashMap<String, Attempt>,
    schedules: HashMap<String, Backoff>,
}

impl Cycles {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            current: HashMap::new(),
            ended: HashMap::new(),
            schedules: HashMap::new(),
        }
    }

    /// Feeds one output record; returns `cycle` records to emit after it.
    pub fn observe(&mut self, r: &Record) -> Vec<Body> {
        let at = parse_time(&r.time);
        match &r.body {
            Body::ContainerStart { pod, container, .. } => {
                let Some(k) = key(Some(pod), Some(container)) else {
                    return vec![];
                };
                if let Some(prev) = self.current.remove(&k)
                    && prev.exit.is_some()
                {
                    self.ended.insert(k.clone(), prev);
                }
                self.current.insert(
                    k,
                    Attempt {
                        pod: Some(pod.clone()),
                        container: Some(container.clone()),
                        started: at,
                        ..Default::default()
                    },
                );
            }
            Body::Alloc {
                anon_rss_bytes,
                pod,
                container,
                ..
            } => {
                if let (Some(a), Some(t)) = (self.attempt(pod.as_ref(), container.as_ref()), at) {
                    a.ramp_first.get_or_insert((t, *anon_rss_bytes));
                    a.ramp_last = Some((t, *anon_rss_bytes));
                    a.peak = a.peak.max(*anon_rss_bytes);
                    a.samples += 1;
                }
            }
            Body::OomKill {
                kind,
                victim,
                trigger,
                memcg,
                pod,
                container,
                ..
            } => {
                if let (Some(a), Some(t)) = (self.attempt(pod.as_ref(), container.as_ref()), at) {
                    let id = memcg.as_ref().map_or(0, |m| m.id);
                    match &mut a.incident {
                        Some((t0, id0, inc))
                            if *id0 == id
                                && t.duration_since(*t0).unwrap_or_default() <= INCIDENT_WINDOW =>
                        {
                            inc.victims.push(victim.clone());
                            inc.group_kill = true;
                        }
                        _ => {
                            a.incidents += 1;
                            if a.incident.is_none() {
                                a.incident = Some((
                                    t,
                                    id,
                                    Incident {
                                        kind: kind.clone(),
                                        at: r.time.clone(),
                                        trigger: trigger.clone(),
                                        victims: vec![victim.clone()],
                                        group_kill: false,
                                    },
                                ));
                                a.limit = memcg.clone();
                            }
                        }
                    }
                }
            }
            Body::ContainerExit {
                pod,
                container,
                exit_code,
                signal,
                reason,
                verdict,
                ran_ms,
            } => {
                if let (Some(a), Some(t)) = (self.attempt(Some(pod), Some(container)), at) {
                    a.exit = Some((
                        t,
                        CycleExit {
                            at: r.time.clone(),
                            exit_code: *exit_code,
                            signal: *signal,
                            reason: reason.clone(),
                            verdict: *verdict,
                            ran_ms: *ran_ms,
                        },
                    ));
                }
            }
            Body::Restart {
                pod,
                container,
                restart_count,
                backoff_ms,
                ..
            } => {
                let Some(k) = key(Some(pod), Some(container)) else {
                    return vec![];
                };
                // Agent: the new container started first (ended holds the
                // old one); run: the old one is still current.
                let prev = match self.ended.remove(&k) {
                    Some(p) => Some(p),
                    None => self.current.remove(&k).filter(|a| a.exit.is_some()),
                };
                let Some(prev) = prev else { return vec![] };
                let ran = Duration::from_millis(prev.exit.as_ref().map_or(0, |(_, e)| e.ran_ms));
                let schedule = self
                    .schedules
                    .entry(k)
                    .or_insert_with(|| Backoff::new(self.policy));
                let expected = schedule.next_delay(ran);
                let next = schedule.peek_next();
                let predicted = at.map(|t| t + ran + next).map(rfc3339).unwrap_or_default();
                let restart = CycleRestart {
                    restart_count: *restart_count,
                    observed_backoff_ms: *backoff_ms,
                    expected_backoff_ms: expected.as_millis() as u64,
                    deviation_ms: *backoff_ms as i64 - expected.as_millis() as i64,
                    next_expected_backoff_ms: next.as_millis() as u64,
                    next_restart_predicted_at: predicted,
                };
                return vec![cycle_body(prev, Some(restart), "Running")];
            }
            _ => {}
        }
        vec![]
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
    pub fn finish(&mut self) -> Vec<Body> {
        let mut out = Vec::new();
        let mut ended: Vec<Attempt> = self.ended.drain().map(|(_, a)| a).collect();
        ended.extend(self.current.drain().map(|(_, a)| a));
        for a in ended {
            if a.samples == 0 && a.incident.is_none() && a.exit.is_none() {
                continue;
            }
            let state = match &a.exit {
                None => "Running",
                // It exited and was waiting for (or denied) a restart.
                Some(_) => "Terminated",
            };
            out.push(cycle_body(a, None, state));
        }
        out
    }
}

fn cycle_body(a: Attempt, restart: Option<CycleRestart>, state: &str) -> Body {
    let kill_at = a.incident.as_ref().map(|(t, _, _)| *t);
    let ramp = a.ramp_first.map(|(t0, first)| {
        let (t1, last) = a.ramp_last.unwrap_or((t0, first));
        let dt = t1.duration_since(t0).unwrap_or_default().as_secs_f64();
        let growth = (dt > 0.0).then(|| (last as f64 - first as f64) / (1024.0 * 1024.0) / dt);
        let from = a.started.unwrap_or(t0);
        Ramp {
            started_at: rfc3339(t0),
            first_rss_bytes: first,
            peak_rss_bytes: a.peak,
            growth_mib_per_s: growth.map(|g| (g * 10.0).round() / 10.0),
            time_to_limit_ms: kill_at.map(|k| ms_between(from, k)),
            samples: a.samples,
        }
    });
    let reason = a.exit.as_ref().map(|(_, e)| e.reason.clone());
    let state =
        if restart.is_none() && state == "Terminated" && reason.as_deref() != Some("Completed") {
            // Kubernetes shows a crashing container waiting for its restart so.
            "CrashLoopBackOff"
        } else {
            state
        };
    Body::Cycle {
        pod: a.pod,
        container: a.container,
        state: state.to_owned(),
        last_state_reason: reason,
        ramp,
        limit: a.limit,
        incident: a.incident.map(|(_, _, i)| i),
        oom_incidents: a.incidents,
        exit: a.exit.map(|(_, e)| e),
        restart,
    }
}

#[cfg(test)]
mod tests;
