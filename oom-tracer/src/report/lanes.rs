//! Typed events → lanes: attempts, limit lines, kills, exits and restart
//! gaps per container.
use std::collections::{BTreeSet, HashMap};

use super::{
    model::{
        Attempt, Backoff, ExitMark, Gap, Kill, Lane, LimitKind, LimitLine, MIB, Series, UNLIMITED,
    },
    parse::{CtrId, Ev, Parsed, PodId},
};

pub(super) fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// Which attempt of a lane a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum AttemptKey {
    Id(String),
    Count(u32),
    Single,
}

struct LaneBuilder {
    lane: Lane,
    attempt_index: HashMap<AttemptKey, usize>,
    explicit_limits: BTreeSet<(LimitKind, u64)>,
    alloc_limits: BTreeSet<u64>,
    restart_records: usize,
}

impl LaneBuilder {
    fn attempt(&mut self, key: AttemptKey, t: f64, restart_count: Option<u32>) -> usize {
        let attempts = &mut self.lane.attempts;
        let i = *self.attempt_index.entry(key.clone()).or_insert_with(|| {
            attempts.push(Attempt {
                id: match &key {
                    AttemptKey::Id(id) => Some(id.clone()),
                    _ => None,
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
            a.restart_count = restart_count;
        }
        i
    }
}

/// Lane key and title of a record. Container names and pod names are taken
/// from any record of the same container id / pod uid, so a record written
/// before the metadata was known still lands in the right lane.
fn lane_id(
    p: &Parsed,
    pods: &HashMap<String, PodId>,
    names: &HashMap<String, String>,
) -> Option<(String, String)> {
    if p.pod.is_none() && p.ctr.is_none() {
        let cg = p.cgroup.as_ref()?;
        return Some((format!("cgroup:{cg}"), cg.clone()));
    }
    let pod = p.pod.clone().unwrap_or_default();
    let known = pod.uid.as_ref().and_then(|u| pods.get(u));
    let ns = pod
        .namespace
        .clone()
        .or_else(|| known.and_then(|k| k.namespace.clone()));
    let name = pod
        .name
        .clone()
        .or_else(|| known.and_then(|k| k.name.clone()));
    let pod_part = match (ns, name, &pod.uid) {
        (Some(ns), Some(n), _) => format!("{ns}/{n}"),
        (None, Some(n), _) => format!("?/{n}"),
        (_, None, Some(uid)) => format!("pod {uid}"),
        (_, None, None) => "?".to_owned(),
    };
    let ctr = p.ctr.clone().unwrap_or_default();
    let ctr_part = ctr
        .name
        .clone()
        .or_else(|| ctr.id.as_ref().and_then(|id| names.get(id).cloned()))
        .or_else(|| ctr.id.as_ref().map(|id| id.chars().take(12).collect()))
        .unwrap_or_else(|| "?".to_owned());
    Some((
        format!("{pod_part}/{ctr_part}"),
        format!("{pod_part} · {ctr_part}"),
    ))
}

pub(super) fn build(parsed: &[Parsed], t0: i64) -> Vec<Lane> {
    // Names learnt anywhere in the file.
    let mut pods: HashMap<String, PodId> = HashMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for p in parsed {
        if let Some(pod) = &p.pod
            && let Some(uid) = &pod.uid
        {
            let e = pods.entry(uid.clone()).or_default();
            if e.namespace.is_none() {
                e.namespace.clone_from(&pod.namespace);
            }
            if e.name.is_none() {
                e.name.clone_from(&pod.name);
            }
        }
        if let Some(CtrId {
            name: Some(n),
            id: Some(id),
            ..
        }) = &p.ctr
        {
            names.entry(id.clone()).or_insert_with(|| n.clone());
        }
    }

    let mut lanes: Vec<LaneBuilder> = Vec::new();
    let mut lane_index: HashMap<String, usize> = HashMap::new();
    for p in parsed {
        let Some((key, title)) = lane_id(p, &pods, &names) else {
            continue;
        };
        let t = secs(p.us - t0);
        let li = *lane_index.entry(key.clone()).or_insert_with(|| {
            lanes.push(LaneBuilder {
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
            });
            lanes.len() - 1
        });
        let lb = &mut lanes[li];
        lb.lane.first_s = lb.lane.first_s.min(t);
        let ctr = p.ctr.clone().unwrap_or_default();
        let akey = match (&ctr.id, ctr.restart_count) {
            (Some(id), _) => AttemptKey::Id(id.clone()),
            (None, Some(n)) => AttemptKey::Count(n),
            (None, None) => AttemptKey::Single,
        };
        let ai = lb.attempt(akey, t, ctr.restart_count);
        match &p.ev {
            Ev::Alloc {
                pid,
                anon_rss,
                limit,
            } => {
                let a = &mut lb.lane.attempts[ai];
                let point = (t, *anon_rss as f64 / MIB);
                match a.series.iter_mut().find(|s| s.pid == *pid) {
                    Some(s) => s.points.push(point),
                    None => a.series.push(Series {
                        pid: *pid,
                        points: vec![point],
                    }),
                }
                if let Some(l) = limit {
                    lb.alloc_limits.insert(*l);
                }
            }
            Ev::OomKill {
                kind,
                pid,
                comm,
                victim_anon,
                usage,
                limit,
                level,
            } => {
                // The memcg's usage, else the victim's RSS, else the last
                // usage seen in the attempt, else the limit.
                let last_seen = lb.lane.attempts[ai]
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
                let mib = usage
                    .or(*victim_anon)
                    .map(|b| b as f64 / MIB)
                    .or(last_seen)
                    .or(limit.map(|b| b as f64 / MIB))
                    .unwrap_or(0.0);
                lb.lane.kills.push(Kill {
                    t,
                    mib,
                    pid: *pid,
                    comm: comm.clone(),
                    kind: kind.clone(),
                    attempt: ai,
                });
                if let Some(l) = limit {
                    let k = match level.as_deref() {
                        Some("container") => LimitKind::Container,
                        Some("pod") => LimitKind::Pod,
                        Some("ancestor") => LimitKind::Ancestor,
                        _ => LimitKind::Unknown,
                    };
                    lb.explicit_limits.insert((k, *l));
                }
            }
            Ev::Exit {
                pid,
                signal,
                exit_code,
                verdict,
            } => {
                let code = exit_code.or(signal.map(|s| 128 + s));
                let mut label = code.map_or_else(|| "exit".to_owned(), |c| c.to_string());
                if let Some(s) = signal {
                    label.push_str(&format!(" signal {s}"));
                }
                push_verdict(&mut label, verdict.as_deref());
                lb.lane.attempts[ai]
                    .process_exits
                    .push((*pid, ExitMark { t, code, label }));
            }
            Ev::ContainerStart {
                pid,
                limit,
                pod_limit,
            } => {
                let a = &mut lb.lane.attempts[ai];
                if a.main_pid.is_none() {
                    a.main_pid = *pid;
                }
                if let Some(l) = limit {
                    lb.explicit_limits.insert((LimitKind::Container, *l));
                }
                if let Some(l) = pod_limit {
                    lb.explicit_limits.insert((LimitKind::Pod, *l));
                }
            }
            Ev::ContainerExit {
                exit_code,
                reason,
                verdict,
            } => {
                let mut label = exit_code.map_or_else(|| "exit".to_owned(), |c| c.to_string());
                if let Some(r) = reason {
                    label.push(' ');
                    label.push_str(r);
                }
                push_verdict(&mut label, verdict.as_deref());
                lb.lane.attempts[ai].container_exit = Some(ExitMark {
                    t,
                    code: *exit_code,
                    label,
                });
            }
            Ev::Backoff {
                backoff_ms,
                next_restart_us,
            } => {
                lb.lane.attempts[ai].backoff = Some(Backoff {
                    at_s: t,
                    backoff_ms: *backoff_ms,
                    next_restart_s: next_restart_us.map(|u| secs(u - t0)),
                });
            }
            Ev::Restart {
                restart_count,
                backoff_ms,
            } => {
                lb.restart_records += 1;
                let a = &mut lb.lane.attempts[ai];
                a.restart_backoff_ms = *backoff_ms;
                if a.restart_count.is_none() {
                    a.restart_count = *restart_count;
                }
            }
        }
    }
    let end = parsed.iter().map(|p| secs(p.us - t0)).fold(0.0, f64::max);
    lanes.into_iter().map(|lb| finish(lb, end)).collect()
}

/// `(sigkill_other)` after an exit's code: why a SIGKILL/137 happened, when
/// it was not the container's own OOM kill.
fn push_verdict(label: &mut String, verdict: Option<&str>) {
    if let Some(v) = verdict
        && v != "memcg_oom"
    {
        label.push_str(&format!(" ({v})"));
    }
}

fn finish(lb: LaneBuilder, end_s: f64) -> Lane {
    let LaneBuilder {
        mut lane,
        explicit_limits,
        alloc_limits,
        restart_records,
        ..
    } = lb;

    // Attempts in time order; kills follow their attempt's new index.
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
    lane.attempts = order.iter().map(|&i| old[i].take().unwrap()).collect();
    for k in &mut lane.kills {
        k.attempt = new_index[k.attempt];
    }
    lane.kills.sort_by(|a, b| a.t.total_cmp(&b.t));

    for a in &mut lane.attempts {
        for s in &mut a.series {
            s.points.sort_by(|x, y| x.0.total_cmp(&y.0));
        }
        a.series.sort_by(|x, y| {
            let first = |s: &Series| s.points.first().map_or(0.0, |p| p.0);
            first(x).total_cmp(&first(y))
        });
        // The container's exit, else its main process's, else (no main
        // process known) every exit the kernel explained.
        let marks: Vec<ExitMark> = if let Some(e) = a.container_exit.take() {
            vec![e]
        } else if let Some(main) = a.main_pid {
            a.process_exits
                .iter()
                .filter(|(pid, _)| *pid == main)
                .map(|(_, m)| m.clone())
                .take(1)
                .collect()
        } else {
            a.process_exits
                .iter()
                .filter(|(_, m)| m.code == Some(137))
                .map(|(_, m)| m.clone())
                .collect()
        };
        a.end_s = marks.iter().map(|m| m.t).reduce(f64::max);
        a.process_exits.clear();
        lane.exits.extend(marks);
    }
    lane.exits.sort_by(|a, b| a.t.total_cmp(&b.t));

    // Down time between attempts.
    for i in 0..lane.attempts.len() {
        let a = &lane.attempts[i];
        let Some(exit) = a.end_s else { continue };
        let announced = a.backoff.and_then(|b| b.backoff_ms);
        match lane.attempts.get(i + 1) {
            Some(next) if next.start_s > exit => lane.gaps.push(Gap {
                start_s: exit,
                end_s: next.start_s,
                backoff_ms: announced.or(next.restart_backoff_ms),
                open: false,
            }),
            Some(_) => {}
            None => {
                if let Some(b) = a.backoff {
                    let planned = b
                        .next_restart_s
                        .or_else(|| b.backoff_ms.map(|ms| b.at_s + ms as f64 / 1e3));
                    let until = planned.unwrap_or(end_s).min(end_s);
                    if until > exit {
                        lane.gaps.push(Gap {
                            start_s: exit,
                            end_s: until,
                            backoff_ms: announced,
                            open: true,
                        });
                    }
                }
            }
        }
    }

    // Limit lines: what the records name, then alloc limits that match none.
    let mut limits: Vec<LimitLine> = explicit_limits
        .iter()
        .filter(|(_, b)| *b > 0 && *b < UNLIMITED)
        .map(|&(kind, bytes)| LimitLine { bytes, kind })
        .collect();
    for &b in &alloc_limits {
        if b > 0 && b < UNLIMITED && !limits.iter().any(|l| l.bytes == b) {
            limits.push(LimitLine {
                bytes: b,
                kind: LimitKind::Unknown,
            });
        }
    }
    limits.sort_by_key(|l| (l.kind, l.bytes));
    lane.limits = limits;

    lane.restarts = if restart_records > 0 {
        restart_records
    } else {
        lane.attempts.len().saturating_sub(1)
    };
    lane
}
