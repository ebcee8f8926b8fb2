//! Records → lanes: attempts, limit lines, kills, exits and restart gaps
//! per container.
use std::collections::{BTreeSet, HashMap};

use super::{
    model::{
        Attempt, Backoff, ExitMark, Gap, Kill, Lane, LimitKind, LimitLine, MIB, Series, UNLIMITED,
    },
    parse::whose,
    sites::kill_sites,
};
use crate::schema::{
    Alloc, AllocKind, Backoff as BackoffRecord, Body, Breakdown, ContainerExit, ContainerRef,
    ContainerStart, Exit, LimitLevel, OomKill, Part, PodRef, Record, Restart, Verdict,
};

fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

/// Which attempt of a lane a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AttemptKey {
    Id(String),
    Single,
}

/// Pod and container names learnt anywhere in the file, so that a record
/// written before the metadata was known still lands in the right lane.
#[derive(Default)]
struct Names {
    pods: HashMap<String, (Option<String>, Option<String>)>,
    containers: HashMap<String, String>,
}

impl Names {
    fn learn(records: &[Record]) -> Self {
        let mut n = Self::default();
        for r in records {
            let (pod, ctr, _) = whose(&r.body);
            if let Some(p) = pod {
                let e = n.pods.entry(p.uid.clone()).or_default();
                if e.0.is_none() {
                    e.0.clone_from(&p.namespace);
                }
                if e.1.is_none() {
                    e.1.clone_from(&p.name);
                }
            }
            if let Some(ContainerRef {
                name: Some(name),
                id,
                ..
            }) = ctr
            {
                n.containers
                    .entry(id.clone())
                    .or_insert_with(|| name.clone());
            }
        }
        n
    }

    /// Lane key and title of a record's pod and container (or cgroup).
    fn lane(
        &self,
        pod: Option<&PodRef>,
        ctr: Option<&ContainerRef>,
        cgroup: Option<&str>,
    ) -> Option<(String, String)> {
        if pod.is_none() && ctr.is_none() {
            let cg = cgroup?;
            return Some((format!("cgroup:{cg}"), cg.to_owned()));
        }
        let known = pod.and_then(|p| self.pods.get(&p.uid));
        let ns = pod
            .and_then(|p| p.namespace.clone())
            .or_else(|| known.and_then(|k| k.0.clone()));
        let name = pod
            .and_then(|p| p.name.clone())
            .or_else(|| known.and_then(|k| k.1.clone()));
        let pod_part = match (ns, name, pod) {
            (Some(ns), Some(n), _) => format!("{ns}/{n}"),
            (None, Some(n), _) => format!("?/{n}"),
            (_, None, Some(p)) => format!("pod {}", p.uid),
            (_, None, None) => "?".to_owned(),
        };
        let ctr_part = ctr
            .and_then(|c| {
                c.name
                    .clone()
                    .or_else(|| self.containers.get(&c.id).cloned())
                    .or_else(|| Some(c.id.chars().take(12).collect()))
            })
            .unwrap_or_else(|| "?".to_owned());
        Some((
            format!("{pod_part}/{ctr_part}"),
            format!("{pod_part} · {ctr_part}"),
        ))
    }
}

pub(super) fn build(records: &[Record], t0: i64) -> Vec<Lane> {
    let names = Names::learn(records);
    let mut lanes: Vec<LaneBuilder> = Vec::new();
    let mut lane_index: HashMap<String, usize> = HashMap::new();
    for r in records {
        let (pod, ctr, cgroup) = whose(&r.body);
        let Some((key, title)) = names.lane(pod, ctr, cgroup) else {
            continue;
        };
        let t = secs(r.time.micros() - t0);
        let li = *lane_index.entry(key.clone()).or_insert_with(|| {
            lanes.push(LaneBuilder::new(key, title, t));
            lanes.len() - 1
        });
        lanes[li].add(r, t, t0);
    }
    let end = records
        .iter()
        .map(|r| secs(r.time.micros() - t0))
        .fold(0.0, f64::max);
    lanes.into_iter().map(|lb| lb.finish(end)).collect()
}

struct LaneBuilder {
    lane: Lane,
    attempt_index: HashMap<AttemptKey, usize>,
    explicit_limits: BTreeSet<(LimitKind, u64)>,
    alloc_limits: BTreeSet<u64>,
    restart_records: usize,
}

impl LaneBuilder {
    fn new(key: String, title: String, t: f64) -> Self {
        Self {
            lane: Lane {
                key,
                title,
                attempts: Vec::new(),
                limits: Vec::new(),
                kills: Vec::new(),
                exits: Vec::new(),
                gaps: Vec::new(),
                restarts: 0,
                first_s: t,
            },
            attempt_index: HashMap::new(),
            explicit_limits: BTreeSet::new(),
            alloc_limits: BTreeSet::new(),
            restart_records: 0,
        }
    }

    /// The attempt a record of container `ctr` at `t` belongs to.
    fn attempt(&mut self, ctr: Option<&ContainerRef>, t: f64) -> usize {
        let key = ctr.map_or(AttemptKey::Single, |c| AttemptKey::Id(c.id.clone()));
        let attempts = &mut self.lane.attempts;
        let i = *self.attempt_index.entry(key.clone()).or_insert_with(|| {
            attempts.push(Attempt {
                id: match &key {
                    AttemptKey::Id(id) => Some(id.clone()),
                    AttemptKey::Single => None,
                },
                start_s: t,
                last_s: t,
                ..Attempt::default()
            });
            attempts.len() - 1
        });
        let a = &mut attempts[i];
        a.start_s = a.start_s.min(t);
        a.last_s = a.last_s.max(t);
        if a.restart_count.is_none() {
            a.restart_count = ctr.and_then(|c| c.restart_count);
        }
        i
    }

    fn add(&mut self, r: &Record, t: f64, t0: i64) {
        self.lane.first_s = self.lane.first_s.min(t);
        let (_, ctr, _) = whose(&r.body);
        let ai = self.attempt(ctr, t);
        match &r.body {
            Body::Alloc(a) => self.alloc(ai, t, a),
            Body::OomKill(o) => self.oom_kill(ai, t, o),
            Body::Exit(e) => self.exit(ai, t, e),
            Body::ContainerStart(s) => self.container_start(ai, s),
            Body::ContainerExit(e) => self.container_exit(ai, t, e),
            Body::Backoff(b) => self.backoff(ai, t, t0, b),
            Body::Restart(s) => self.restart(ai, s),
            _ => {}
        }
    }

    /// Anonymous memory per process; page cache and shmem per cgroup.
    fn alloc(&mut self, ai: usize, t: f64, a: &Alloc) {
        let (pid, bytes) = match a.kind {
            AllocKind::Anon => (u64::from(a.proc.pid), a.anon_rss_bytes),
            AllocKind::File | AllocKind::Shmem => (0, a.memcg_bytes.unwrap_or(0)),
        };
        let point = (t, mib(bytes));
        let attempt = &mut self.lane.attempts[ai];
        match attempt
            .series
            .iter_mut()
            .find(|s| s.kind == a.kind && s.pid == pid)
        {
            Some(s) => s.points.push(point),
            None => attempt.series.push(Series {
                kind: a.kind,
                pid,
                points: vec![point],
            }),
        }
        if let Some(l) = a.limit_bytes {
            self.alloc_limits.insert(l);
        }
    }

    fn oom_kill(&mut self, ai: usize, t: f64, o: &OomKill) {
        // The memcg's usage, else the victim's RSS, else the last usage
        // seen in the attempt, else the limit.
        let last_seen = self.lane.attempts[ai]
            .series
            .iter()
            .filter_map(|s| {
                s.points
                    .iter()
                    .filter(|p| p.0 <= t)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
            })
            .map(|p| p.1)
            .reduce(f64::max);
        let memcg = o.memcg.as_ref();
        let at = memcg
            .map(|m| mib(m.usage_bytes))
            .or(o.victim.anon_rss_bytes.map(mib))
            .or(last_seen)
            .unwrap_or(0.0);
        self.lane.kills.push(Kill {
            t,
            mib: at,
            pid: Some(u64::from(o.victim.pid)),
            comm: Some(o.victim.comm.clone()),
            kind: o.kind,
            attempt: ai,
            parts: o.breakdown.as_ref().map(parts).unwrap_or_default(),
            cause: o
                .cause
                .as_ref()
                .map(|c| format!("{} {}%", c.part.as_str(), c.share_of_limit_pct)),
            sites: o.callsites.as_ref().map(kill_sites),
        });
        if let Some(m) = memcg {
            let kind = match m.level {
                Some(LimitLevel::Container) => LimitKind::Container,
                Some(LimitLevel::Pod) => LimitKind::Pod,
                Some(LimitLevel::Ancestor) => LimitKind::Ancestor,
                None => LimitKind::Unknown,
            };
            self.explicit_limits.insert((kind, m.limit_bytes));
        }
    }

    fn exit(&mut self, ai: usize, t: f64, e: &Exit) {
        let code = e
            .exit_code
            .map(i64::from)
            .or(e.signal.map(|s| 128 + i64::from(s)));
        let mut label = code.map_or_else(|| "exit".to_owned(), |c| c.to_string());
        if let Some(s) = e.signal {
            label.push_str(&format!(" signal {s}"));
        }
        push_verdict(&mut label, e.verdict);
        self.lane.attempts[ai]
            .process_exits
            .push((u64::from(e.proc.pid), ExitMark { t, code, label }));
    }

    fn container_start(&mut self, ai: usize, s: &ContainerStart) {
        let a = &mut self.lane.attempts[ai];
        a.main_pid.get_or_insert(u64::from(s.pid));
        if let Some(l) = s.memory_limit_bytes {
            self.explicit_limits.insert((LimitKind::Container, l));
        }
        if let Some(l) = s.pod_memory_limit_bytes {
            self.explicit_limits.insert((LimitKind::Pod, l));
        }
    }

    fn container_exit(&mut self, ai: usize, t: f64, e: &ContainerExit) {
        let mut label = format!("{} {}", e.exit_code, e.reason.as_str());
        push_verdict(&mut label, e.verdict);
        self.lane.attempts[ai].container_exit = Some(ExitMark {
            t,
            code: Some(i64::from(e.exit_code)),
            label,
        });
    }

    fn backoff(&mut self, ai: usize, t: f64, t0: i64, b: &BackoffRecord) {
        self.lane.attempts[ai].backoff = Some(Backoff {
            at_s: t,
            backoff_ms: Some(b.backoff_ms),
            next_restart_s: Some(secs(b.next_restart_at.micros() - t0)),
        });
    }

    fn restart(&mut self, ai: usize, s: &Restart) {
        self.restart_records += 1;
        let a = &mut self.lane.attempts[ai];
        a.restart_backoff_ms = Some(s.backoff_ms);
        a.restart_count.get_or_insert(s.restart_count);
    }

    fn finish(mut self, end_s: f64) -> Lane {
        self.order_attempts();
        let lane = &mut self.lane;
        for a in &mut lane.attempts {
            let marks = exit_marks(a);
            a.end_s = marks.iter().map(|m| m.t).reduce(f64::max);
            lane.exits.extend(marks);
        }
        lane.exits.sort_by(|a, b| a.t.total_cmp(&b.t));
        lane.gaps = gaps(&lane.attempts, end_s);
        lane.limits = limit_lines(&self.explicit_limits, &self.alloc_limits);
        lane.restarts = if self.restart_records > 0 {
            self.restart_records
        } else {
            lane.attempts.len().saturating_sub(1)
        };
        self.lane
    }

    /// Attempts and their series in time order; kills follow their
    /// attempt's new index.
    fn order_attempts(&mut self) {
        let lane = &mut self.lane;
        let mut order: Vec<usize> = (0..lane.attempts.len()).collect();
        order.sort_by(|&a, &b| {
            lane.attempts[a]
                .start_s
                .total_cmp(&lane.attempts[b].start_s)
        });
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let mut old: Vec<Option<Attempt>> = lane.attempts.drain(..).map(Some).collect();
        lane.attempts = order.iter().filter_map(|&i| old[i].take()).collect();
        for k in &mut lane.kills {
            k.attempt = new_index[k.attempt];
        }
        lane.kills.sort_by(|a, b| a.t.total_cmp(&b.t));
        for a in &mut lane.attempts {
            for s in &mut a.series {
                s.points.sort_by(|x, y| x.0.total_cmp(&y.0));
            }
            let first = |s: &Series| s.points.first().map_or(0.0, |p| p.0);
            a.series.sort_by(|x, y| first(x).total_cmp(&first(y)));
        }
    }
}

/// A breakdown's parts in MiB, the ones that are there, largest last.
fn parts(b: &Breakdown) -> Vec<(Part, f64)> {
    let mut parts: Vec<(Part, f64)> = [
        (Part::Anon, Some(b.anon_bytes)),
        (Part::File, Some(b.file_bytes)),
        (Part::Shmem, Some(b.shmem_bytes)),
        (Part::Kernel, Some(b.kernel_bytes)),
        (Part::Sock, b.sock_bytes),
    ]
    .into_iter()
    .filter_map(|(p, bytes)| bytes.filter(|&b| b > 0).map(|b| (p, mib(b))))
    .collect();
    parts.sort_by(|a, b| a.1.total_cmp(&b.1));
    parts
}

/// `(sigkill_other)` after an exit's code: why a SIGKILL/137 happened, when
/// it was not the container's own OOM kill.
fn push_verdict(label: &mut String, verdict: Option<Verdict>) {
    if let Some(v) = verdict
        && v != Verdict::MemcgOom
    {
        label.push_str(&format!(" ({})", v.as_str()));
    }
}

/// Where an attempt ended: the container's exit, else its main process's,
/// else (no main process known) every exit the kernel explained.
fn exit_marks(a: &mut Attempt) -> Vec<ExitMark> {
    let exits = std::mem::take(&mut a.process_exits);
    if let Some(e) = a.container_exit.take() {
        return vec![e];
    }
    match a.main_pid {
        Some(main) => exits
            .into_iter()
            .filter(|(pid, _)| *pid == main)
            .map(|(_, m)| m)
            .take(1)
            .collect(),
        None => exits
            .into_iter()
            .filter(|(_, m)| m.code == Some(137))
            .map(|(_, m)| m)
            .collect(),
    }
}

/// Down time between attempts: from an attempt's exit to the next start,
/// or, after the last one, to its announced restart (or the end).
fn gaps(attempts: &[Attempt], end_s: f64) -> Vec<Gap> {
    let mut gaps = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        let Some(exit) = a.end_s else { continue };
        let announced = a.backoff.and_then(|b| b.backoff_ms);
        match attempts.get(i + 1) {
            Some(next) if next.start_s > exit => gaps.push(Gap {
                start_s: exit,
                end_s: next.start_s,
                backoff_ms: announced.or(next.restart_backoff_ms),
                open: false,
            }),
            Some(_) => {}
            None => {
                let Some(b) = a.backoff else { continue };
                let planned = b
                    .next_restart_s
                    .or_else(|| b.backoff_ms.map(|ms| b.at_s + ms as f64 / 1e3));
                let until = planned.unwrap_or(end_s).min(end_s);
                if until > exit {
                    gaps.push(Gap {
                        start_s: exit,
                        end_s: until,
                        backoff_ms: announced,
                        open: true,
                    });
                }
            }
        }
    }
    gaps
}

/// Limit lines: what the records name, then alloc limits that match none.
fn limit_lines(
    explicit: &BTreeSet<(LimitKind, u64)>,
    from_allocs: &BTreeSet<u64>,
) -> Vec<LimitLine> {
    let drawable = |b: u64| b > 0 && b < UNLIMITED;
    let mut limits: Vec<LimitLine> = explicit
        .iter()
        .filter(|(_, b)| drawable(*b))
        .map(|&(kind, bytes)| LimitLine { bytes, kind })
        .collect();
    for &b in from_allocs {
        if drawable(b) && !limits.iter().any(|l| l.bytes == b) {
            limits.push(LimitLine {
                bytes: b,
                kind: LimitKind::Unknown,
            });
        }
    }
    limits.sort_by_key(|l| (l.kind, l.bytes));
    limits
}
